"""``einmal policies check DIR``."""

from pathlib import Path

import click

__all__ = ["check"]


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
def check(directory: Path) -> None:
    """Validate the policy documents in DIRECTORY; one line per problem, exit 1 if any."""
    from policies import check_directory  # noqa: PLC0415

    documents, problems = check_directory(directory)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)
    permissions = sum(len(d.permissions) for d in documents)
    click.echo(f"OK: {len(documents)} documents, {permissions} permissions")
