"""Markers are applied as declared: the quick run, ``-m "not e2e and not browser"``, collects no
test from tests/e2e or tests/browser (their conftest files mark every test in the folder)."""

import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
NO_TESTS_COLLECTED = 5  # pytest's exit code


def test_the_quick_run_collects_nothing_from_e2e_and_browser() -> None:
    quick = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", "not e2e and not browser", str(TESTS / "e2e"), str(TESTS / "browser")],
        cwd=TESTS.parent, capture_output=True, text=True, timeout=300, check=False)
    selected = [line for line in quick.stdout.splitlines() if "::" in line]
    assert not selected, "collected without the e2e/browser marker:\n" + "\n".join(selected)
    assert quick.returncode == NO_TESTS_COLLECTED, quick.stdout + quick.stderr
    deselected = re.search(r"\((\d+) deselected\)", quick.stdout)
    assert deselected is not None, quick.stdout
    assert int(deselected.group(1)) > 100  # the folders' tests were collected, then left out
