"""The only structlog configuration. Citizen data never goes into logs (``redact`` below)."""

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["REDACTED_KEYS", "configure_logging", "quiet_libraries"]

#: Standard-library loggers that log request URLs at INFO: the broker's register calls carry
#: the IdNr in the path (``/records/{idnr}``), so they never log below WARNING.
_URL_LOGGERS = ("httpx", "httpcore", "uvicorn.access")


def quiet_libraries() -> None:
    """Keep libraries that log URLs or SQL parameters at WARNING, whatever the root level."""
    for name in (*_URL_LOGGERS, "aiosqlite", "sqlalchemy.engine", "asyncpg"):
        logging.getLogger(name).setLevel(logging.WARNING)

#: Keys whose values are dropped from every log line, whatever logs them.
REDACTED_KEYS = frozenset({
    "idnr", "subject", "token", "access_token", "client_assertion", "authorization",
    "proof", "data", "private_jwk", "password",
})


def redact(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    for key in REDACTED_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def configure_logging(*, fmt: str = "console", level: str = "info", cache: bool = True,
                      stream: TextIO | None = None) -> None:
    """Configure structlog once, at process start (called by the CLI, not at import)."""
    quiet_libraries()
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            # NOTE: never show locals in tracebacks: they hold citizen data.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ) if fmt == "json" else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=cache,
    )
