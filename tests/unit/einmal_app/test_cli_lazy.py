"""The lazy command line (decision 0036): the listing names every command with its own summary,
each name loads its command, and ``einmal --help`` imports no command module."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from einmal_app.cli import COMMANDS, LazyGroup, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_name_loads_its_command_whose_own_summary_is_listed(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    own = " ".join((command.help or "").split("\n\n")[0].split())
    assert own == COMMANDS[name].summary


def test_an_unknown_command_is_a_usage_error_naming_it() -> None:
    result = CliRunner().invoke(main, ["nope"])
    assert result.exit_code == 2
    assert "No such command 'nope'" in result.output


def test_the_listing_is_complete() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("    ")]
    assert listed == sorted(COMMANDS)
    assert isinstance(main, LazyGroup)


def test_help_imports_no_command_module() -> None:
    """Run in a fresh interpreter: which of our modules did ``einmal --help`` import?"""
    probe = ("import sys\nfrom einmal_app.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'einmal_app', 'einmal', 'broker', 'cockpit', 'connectors', 'witness', "
             "'policies', 'litestar', 'sqlalchemy'}))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip().splitlines()[-1]
    assert found == "['einmal_app', 'einmal_app.cli']"
