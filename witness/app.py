"""The witness as a component (``router``, ``start``, ``stop``, ``health``) and as a stand-alone
Litestar app (``create_app``: what ``einmal witness serve`` runs).

    POST <prefix>add-checkpoint    C2SP tlog-witness
      200  text/plain          the cosignature line(s), each ending in a newline
      409  text/x.tlog.size    "<size of the latest cosigned checkpoint>\\n"
      400, 403, 404, 409 (fork), 413, 422, 503: application/problem+json
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from litestar import Litestar, Request, Response, Router, get, post

from einmal.openapi import problems, text_body, with_request_body
from einmal.problems import ProblemError, exception_handlers
from einmal.store import StoreError, create_engine
from witness.errors import StaleSizeError, WitnessConfigError, WitnessError
from witness.identity import load_or_create_identity
from witness.protocol import parse_log_keys
from witness.service import Witness
from witness.store import WitnessStore, async_url

__all__ = ["MAX_BODY_BYTES", "SIZE_MEDIA_TYPE", "WitnessComponent", "WitnessConfig",
           "create_app", "create_witness_router"]

log = structlog.get_logger()

SIZE_MEDIA_TYPE = "text/x.tlog.size"
#: 63 proof lines are ~3 KB; the rest is the checkpoint with its signatures (signed-note: at
#: least 16 must be accepted, post-quantum ones are up to ~3.3 KB each).
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessConfig:
    data_dir: Path
    #: the logs it follows: their note verifier keys, ``<origin>+<hex key id>+<base64 key>``
    log_keys: tuple[str, ...]
    #: its name (a schema-less URL); None: the one stored in ``data_dir``, or a default
    name: str | None = None
    #: None: SQLite ``<data_dir>/witness.db``; or a sqlite/postgresql URL
    database_url: str | None = None
    #: the submission prefix: ``/`` serves ``/add-checkpoint``
    prefix: str = "/"
    max_body_bytes: int = MAX_BODY_BYTES


_REQUEST = ("'old <size>', the consistency proof (one base64 hash a line), an empty line, "
            "then the checkpoint note signed by the log")


def create_witness_router(witness: Witness, *, prefix: str = "/",
                          max_body_bytes: int = MAX_BODY_BYTES) -> Router:
    @post("/add-checkpoint", status_code=200, request_max_body_size=max_body_bytes,
          summary="Cosign a checkpoint consistent with the last one (C2SP tlog-witness)",
          tags=["witness"],
          responses=text_body(description="The cosignature line(s), each ending in a newline")
          | text_body(SIZE_MEDIA_TYPE, 409, description="The old size is not the latest "
                      "cosigned one: that size and a newline; a fork: a problem document")
          | problems(400, 403, 404, 413, 422, 503),
          operation_class=with_request_body({"type": "string", "description": _REQUEST},
                                            "text/plain"))
    async def add_checkpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
        try:
            lines = await witness.add_checkpoint(await request.body())
        except StaleSizeError as exc:
            log.info("witness.refused", status=exc.status, error=type(exc).__name__)
            # exactly this content type (clients compare it as a string: no charset)
            return Response(f"{exc.latest}\n".encode(), status_code=409,
                            headers={"content-type": SIZE_MEDIA_TYPE})
        except WitnessError as exc:
            log.info("witness.refused", status=exc.status, error=type(exc).__name__)
            raise ProblemError(exc.slug, str(exc), status=exc.status) from exc
        except StoreError as exc:
            log.error("witness.store_failed", error=str(exc))
            msg = "The witness cannot reach its store."
            raise ProblemError("store-unavailable", msg) from exc
        return Response(lines.encode(), media_type="text/plain")

    return Router(path=prefix, route_handlers=[add_checkpoint])


class WitnessComponent:
    """Built once at start-up from its config; ``vkey`` is what logs and verifiers pin."""

    name = "witness"

    def __init__(self, config: WitnessConfig, *, clock: Callable[[], float] = time.time,
                 ) -> None:
        identity = load_or_create_identity(config.data_dir, config.name)
        logs = parse_log_keys(config.log_keys)
        own = identity.private_key.public_key()
        for keys in logs.values():
            if any(key.public_key == own for key in keys):
                msg = "the witness's own key is given as a log key: a witness has a key of its own"
                raise WitnessConfigError(msg)
        url = config.database_url or f"sqlite:///{config.data_dir / 'witness.db'}"
        self.engine = create_engine(async_url(url))
        self.store = WitnessStore(self.engine)
        self.witness = Witness(name=identity.name, private_key=identity.private_key, logs=logs,
                               store=self.store, clock=clock)
        self.vkey = identity.vkey
        self.max_body_bytes = config.max_body_bytes
        self.router = create_witness_router(self.witness, prefix=config.prefix,
                                            max_body_bytes=config.max_body_bytes)

    async def prepare(self) -> None:
        """Before serving (own event loop): create the table if it is missing."""
        try:
            await self.store.create_schema()
        finally:
            await self.engine.dispose()  # the pool only: serving runs in another event loop

    async def start(self) -> None:
        await self.store.create_schema()
        log.info("witness.started", witness=self.vkey, logs=self.witness.origins)

    async def stop(self) -> None:
        await self.store.aclose()

    async def health(self) -> dict[str, Any]:
        try:
            await self.store.ping()
        except StoreError as exc:
            return {"witness_store": f"error: {exc}"}
        return {"witness_store": "ok"}


def create_app(component: WitnessComponent) -> Litestar:
    """The witness on its own: add-checkpoint, ``/health/live`` and ``/health/ready``."""

    @get("/health/live", summary="Liveness", tags=["operations"])
    async def live() -> Response[bytes]:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @get("/health/ready", summary="Readiness: the witness's store", tags=["operations"])
    async def ready() -> Response[bytes]:
        checks = await component.health()
        if any(str(v).startswith("error") for v in checks.values()):
            raise ProblemError("store-unavailable", "Not ready: the witness's store fails.")
        return Response(b'{"status":"ok"}', media_type="application/json")

    # Litestar's mapping type is invariant in its keys (status codes or exception types)
    handlers: dict[int | type[Exception], Any] = dict(exception_handlers().items())
    return Litestar(
        route_handlers=[component.router, live, ready],
        on_startup=[component.start],
        on_shutdown=[component.stop],
        exception_handlers=handlers,
        request_max_body_size=component.max_body_bytes,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
