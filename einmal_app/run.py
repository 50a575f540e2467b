"""How ``einmal serve`` serves: the HTTP server and its worker processes (decision 0029).

* **Server**: uvicorn with uvloop and httptools (default) or granian (a Rust HTTP/1.1 server,
  the application on a uvloop event loop). Chosen by measurement (docs/benchmarks.md,
  "2026-12-04"): uvicorn spends the least CPU per request, which is what N workers on N cores
  are limited by; granian answers more per process while a core is spare (its HTTP runs on a
  thread of its own) but costs more CPU per request, and always runs its worker below a
  supervisor process.
* **Workers**: ``workers`` processes share the listening socket; the kernel spreads the
  connections. Each worker builds its own app from the same settings (handed over in the
  environment as ``EINMAL_SERVE_OPTIONS``) and runs its own background workers: the outbox
  delivery on PostgreSQL locks its batch ``FOR UPDATE SKIP LOCKED`` (several deliverers are
  allowed), the log's sequencer locks the log's state row (one integrates at a time), web
  sessions and rate limits live in the database (einmal/shared_state.py; a worker takes a busy
  bucket's tokens in small batches, so a service's requests do not queue on its row). Each
  worker has its own connection pools (einmal/store.py: create_engine, up to ``POOL_SIZE``
  connections per component and worker, kept, idle ones pinged).
  On SQLite one process is the rule: its writes go through one in-process writer
  (einmal/store.py: SqliteWriter, a per-process lock), so ``workers > 1`` is refused there -
  also for a process with the register simulators, whose query protocol is a SQLite file.

The parent checks the settings and prepares the stores (schemas, keys) once before any worker
starts, so N workers never race to create them; with several workers it also creates the
transfer log's first state (``before_workers``), so the workers find it made (the store's
insert-or-nothing also makes processes starting together on a fresh database harmless).
"""

import ctypes
import ctypes.util
import json
import os
import signal
import sys
from typing import Any

import click
import uvicorn
from granian.constants import HTTPModes, Interfaces, Loops
from granian.log import LogLevels
from granian.server import Server as Granian
from litestar import Litestar

from einmal.logging import configure_logging
from einmal.settings import Settings, load_settings
from einmal_app.server import build_components, create_app, freeze_startup_heap

__all__ = ["DEFAULT_SERVER", "SERVERS", "before_workers", "check_workers", "default_workers",
           "serve", "worker_app"]

SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"
#: the CLI options of ``einmal serve`` (JSON), read by each worker process
OPTIONS_ENV = "EINMAL_SERVE_OPTIONS"
#: the supervisor's process id, for its workers (see _end_with_parent)
SUPERVISOR_ENV = "EINMAL_SERVE_SUPERVISOR"
_FACTORY = "einmal_app.run:worker_app"
#: seconds a worker gets to finish its requests and stop its components on shutdown
GRACE_S = 10
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def on_sqlite(settings: Settings) -> bool:
    """Does any component of this process keep state in SQLite? (The register simulators
    always do: their query protocol is a SQLite file in the data dir.)"""
    return "registers" in settings.components or any(
        settings.database_url_for(c).startswith("sqlite")
        for c in settings.components & {"broker", "cockpit"})


def default_workers(settings: Settings) -> int:
    """One per core on PostgreSQL; one where SQLite holds state."""
    return 1 if on_sqlite(settings) else os.cpu_count() or 1


def check_workers(settings: Settings, workers: int) -> list[str]:
    """Refuses what cannot work; returns the warnings to print."""
    if workers < 1:
        raise click.BadParameter("at least 1", param_hint="--workers")
    if workers > 1 and on_sqlite(settings):
        why = ("the register simulators keep their query protocol in SQLite: run them in a "
               "process of their own (--components registers) with one worker"
               if "registers" in settings.components else
               "its writes go through one in-process writer. Use --workers 1, or "
               "--database-url postgresql://... for several worker processes")
        msg = f"--workers {workers}: on SQLite one process serves ({why})."
        raise click.ClickException(msg)
    warnings = []
    if workers > 1 and settings.demo and "cockpit" in settings.components:
        warnings.append(f"note: --workers {workers} in demo mode: the demo identity provider "
                        "keeps its login codes in the process that issued them, so a demo "
                        "login may have to be repeated. Use --workers 1 to try the web view.")
    return warnings


async def before_workers(components: list[Any]) -> None:
    """In the parent, once, before several workers start (own event loop): the transfer log's
    first state and signed empty checkpoint, which each worker's cockpit would otherwise try to
    create at the same moment (harmless since the store inserts it or nothing; one is quieter)."""
    for component in components:
        transfer_log = getattr(component, "log", None)
        if transfer_log is None or not hasattr(transfer_log, "initialise"):
            continue
        try:
            await transfer_log.initialise()
        finally:
            await component.engine.dispose()  # the pool only: the workers have their own


def _end_with_parent() -> None:
    """Linux: this worker gets SIGTERM (and shuts down gracefully) when its parent, the
    server's supervisor, dies - also of SIGKILL. Without it a killed ``einmal serve`` left its
    workers serving on the port, unseen by whoever restarts it."""
    if not sys.platform.startswith("linux"):
        return
    # Until the server installs its own handlers (graceful shutdown), SIGTERM ends the worker:
    # a forked worker inherits its supervisor's handler, which only sets a flag there.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and os.getppid() != int(supervisor):  # it died before we asked (start-up)
        os.kill(os.getpid(), signal.SIGTERM)


def worker_app() -> Litestar:
    """The app of one worker process: built from the options its parent handed over."""
    _end_with_parent()
    options = json.loads(os.environ.get(OPTIONS_ENV, "{}"))
    settings = load_settings(os.environ, **options)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    app = create_app(settings, build_components(settings))
    freeze_startup_heap()  # the worker serves from here on
    return app


def serve(settings: Settings, options: dict[str, Any], *, server: str, workers: int,
          app: Litestar | None = None) -> None:
    """Serve until interrupted. ``app``: one already built in this process (uvicorn with one
    worker serves it here); otherwise each worker builds its own from ``options``."""
    if server == "uvicorn" and workers == 1 and app is not None:
        freeze_startup_heap()
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=GRACE_S, loop="uvloop",
                    http="httptools")
        return
    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # uvicorn and granian supervise from here
    os.environ[OPTIONS_ENV] = json.dumps(
        {k: str(v) if not isinstance(v, bool | int) else v
         for k, v in options.items() if v is not None})
    if server == "uvicorn":
        uvicorn.run(_FACTORY, factory=True, host=settings.host, port=settings.port,
                    workers=workers, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=GRACE_S, loop="uvloop", http="httptools")
        return
    Granian(_FACTORY, factory=True, address=settings.host, port=settings.port,
            interface=Interfaces.ASGI, workers=workers, loop=Loops.uvloop,
            http=HTTPModes.http1, websockets=False, log_level=LogLevels.warning,
            log_access=False, workers_kill_timeout=GRACE_S + 5).serve()
