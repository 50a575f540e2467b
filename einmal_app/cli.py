"""The ``einmal`` command line.

Each command lives in a module of its own (``cli_<name>.py``) and is loaded only when it runs
or its own help is asked for (click's lazy subcommands): ``einmal --help``, ``einmal receipt
verify`` or ``einmal audit verify`` do not import the server, its components and their
libraries, which ``einmal serve`` needs (decision 0036). The listing below names every command
with its one-line summary; ``tests/unit/einmal_app/test_cli_lazy.py`` checks it against the
commands' own.
"""

import importlib
from typing import NamedTuple

import click

__all__ = ["COMMANDS", "main"]


class Lazy(NamedTuple):
    module: str
    attribute: str
    summary: str


#: name -> where the command is, and its summary for ``einmal --help``
COMMANDS: dict[str, Lazy] = {
    "audit": Lazy("einmal_app.cli_audit", "audit",
                  "Auditors: export the transfer log and verify it offline."),
    "broker": Lazy("einmal_app.cli_retention", "broker", "The broker's store: retention."),
    "db": Lazy("einmal_app.cli_db", "db_group", "The stores' schemas (Alembic migrations)."),
    "keys": Lazy("einmal_app.cli_keys", "keys_group", "Signing keys."),
    "log": Lazy("einmal_app.cli_log", "log_group",
                "The cockpit's transfer log (retention, tiles, monitoring)."),
    "policies": Lazy("einmal_app.cli_policies", "policies",
                     "Policy documents: which online service may fetch what, why, on which "
                     "basis."),
    "receipt": Lazy("einmal_app.cli_receipt", "receipt",
                    "Citizens' receipts of transfers (C2SP tlog-proof files)."),
    "scenario": Lazy("einmal_app.cli_scenario", "scenario",
                     "Play a story (elfe, uvo, dsc) against a running demo server; exit 0 "
                     "only if every check held."),
    "serve": Lazy("einmal_app.cli_serve", "serve",
                  "Start broker, cockpit and register simulators (all in one process by "
                  "default)."),
    "witness": Lazy("einmal_app.cli_witness", "witness",
                    "A witness that cosigns a transfer log's checkpoints (C2SP tlog-witness)."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        command = getattr(importlib.import_module(found.module), found.attribute)
        if not isinstance(command, click.Command):
            msg = f"{found.module}.{found.attribute} is not a click command"
            raise TypeError(msg)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing from ``COMMANDS``: no command module is imported for it."""
        rows = [(name, lazy.summary) for name, lazy in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="einmal")
def main() -> None:
    """Einmal: once-only proofs for family services, with a citizen privacy cockpit."""
