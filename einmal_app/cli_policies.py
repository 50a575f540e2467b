"""``einmal policies check DIR``: validate policy documents before deploying them.

Exit codes: 0 all documents valid, 1 problems found (one line each on stderr), 2 the path is
missing or not a directory (one line). Never a traceback.
"""

from pathlib import Path

import click

from policies import PolicyError, check_directory, load_policies

__all__ = ["check", "policies"]


class _BadDirectoryError(click.ClickException):
    """One line ``Error: ...`` on stderr and exit 2, like a usage error without the usage."""

    exit_code = 2


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
def check(directory: Path) -> None:
    """Check every policy document (*.toml) in DIRECTORY; report all problems, not just one."""
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        msg = f"{directory}: {what}"
        raise _BadDirectoryError(msg)
    problems = check_directory(directory)
    if not problems:
        try:
            policy_set = load_policies(directory)
        except PolicyError as exc:  # changed between the two reads: report, don't trace
            problems = list(exc.problems)
        else:
            permissions = sum(len(document.permissions) for document in policy_set.services())
            click.echo(f"OK: {len(policy_set)} documents, {permissions} permissions")
            return
    for problem in problems:
        click.echo(problem, err=True)
    raise SystemExit(1)


@click.group()
def policies() -> None:
    """Policy documents: which online service may fetch what, why, on which basis."""


policies.add_command(check)

