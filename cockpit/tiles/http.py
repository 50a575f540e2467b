"""The tile API under ``/log/`` (C2SP tlog-tiles): ``checkpoint``, ``tile/<L>/<N>[.p/<W>]``,
``tile/entries/<N>[.p/<W>]``, and ``verifier-key`` (ours: a monitor pins it on first use).

Caching: a full hash tile never changes (a year, ``immutable``); a partial tile and the
checkpoint are short-lived. A full entry bundle never changes either, but retention shreds its
entries one day, so shared caches keep it a day at most. A malformed path is a 400 problem, a
tile beyond the latest checkpoint's tree a 404 problem, neither cached.
"""

import gzip
from typing import Any
from urllib.parse import unquote

from litestar import Request, Response, Router, get
from litestar.params import FromPath

from cockpit.errors import CockpitError
from cockpit.http import EXCEPTION_HANDLERS, problem_for
from cockpit.tiles.reader import LogTiles
from einmal.openapi import binary_body, problems
from einmal.problems import ProblemError
from einmal_client.tiles import TilePathError, parse_tile_path

__all__ = ["BUNDLE_CACHE", "CHECKPOINT_CACHE", "FULL_TILE_CACHE", "PARTIAL_TILE_CACHE",
           "create_tiles_router"]

FULL_TILE_CACHE = "public, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "public, max-age=60"
#: a full entry bundle: unchanging until retention shreds it (decision in the module docstring)
BUNDLE_CACHE = "public, max-age=86400"
CHECKPOINT_CACHE = "no-cache"
_OCTETS = "application/octet-stream"
#: Litestar appends "; charset=utf-8" to text/* itself
_TEXT = "text/plain"
#: gzip entry bundles from this size on (a bundle of one short entry is not worth it)
_GZIP_FROM = 512


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (RFC 9110 §12.5.3: ``q=0`` refuses it)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        weight = params.strip()
        try:
            weights[coding.strip()] = float(weight[2:]) if weight.startswith("q=") else 1.0
        except ValueError:
            weights[coding.strip()] = 0.0
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def _as_sent(request: Request[Any, Any, Any], rest: str) -> str:
    """The path parameter as the client sent it: Litestar matched a normalised path (a
    trailing or doubled slash removed), and such a path is not the canonical one."""
    raw = request.scope.get("raw_path")
    if raw is None:
        return rest
    sent = unquote(raw.partition(b"?")[0].decode("latin-1"))
    return rest if sent.endswith("/tile" + rest) else sent.rpartition("/tile")[2]


def _uncached(exc: CockpitError) -> ProblemError:
    """The problem of a refused tile, not to be cached (the tile may exist a second later)."""
    problem = problem_for(exc)
    problem.headers = {**problem.headers, "cache-control": "no-store"}
    return problem


def create_tiles_router(tiles: LogTiles) -> Router:
    @get("/checkpoint", summary="The latest signed checkpoint (C2SP tlog-tiles)",
         tags=["transfer log"], media_type=_TEXT, responses=problems(404))
    async def checkpoint() -> Response[str]:
        _, note = await tiles.checkpoint()
        return Response(content=note, media_type=_TEXT,
                        headers={"cache-control": CHECKPOINT_CACHE})

    @get("/verifier-key", summary="The log's verifier key (C2SP signed-note)",
         tags=["transfer log"], media_type=_TEXT)
    async def verifier_key() -> Response[str]:
        return Response(content=tiles.verifier_key + "\n", media_type=_TEXT,
                        headers={"cache-control": CHECKPOINT_CACHE})

    @get("/tile/{rest:path}", summary="A hash tile or an entry bundle (C2SP tlog-tiles)",
         tags=["transfer log"], media_type=_OCTETS,
         responses=binary_body(_OCTETS, description="The tile's bytes (an entry bundle may "
                               "come with Content-Encoding: gzip if the client accepts it)")
         | problems(400, 404),
         description="`/log/tile/<L>/<N>[.p/<W>]` (256 hashes of 32 bytes in a full tile) "
                     "and `/log/tile/entries/<N>[.p/<W>]` (uint16 big-endian length-prefixed "
                     "leaves); `<N>` in groups of three digits (`x001/x234/067`).")
    async def tile(request: Request[Any, Any, Any], rest: FromPath[str]) -> Response[bytes]:
        try:
            wanted = parse_tile_path("tile" + _as_sent(request, rest))
        except TilePathError as exc:
            raise ProblemError("invalid-request", f"{exc}.", status=400,
                               headers={"cache-control": "no-store"}) from exc
        try:
            data = await tiles.read(wanted)
        except CockpitError as exc:
            if problem_for(exc).status >= 500:
                raise
            raise _uncached(exc) from exc
        headers = {"cache-control": PARTIAL_TILE_CACHE}
        if wanted.level is None:
            headers["vary"] = "accept-encoding"
            if wanted.full:
                headers["cache-control"] = BUNDLE_CACHE
            if len(data) >= _GZIP_FROM and _accepts_gzip(
                    request.headers.get("accept-encoding", "")):
                data = gzip.compress(data, compresslevel=6, mtime=0)
                headers["content-encoding"] = "gzip"
        elif wanted.full:
            headers["cache-control"] = FULL_TILE_CACHE
        return Response(content=data, media_type=_OCTETS, headers=headers)

    return Router(path="/log", route_handlers=[checkpoint, verifier_key, tile],
                  exception_handlers=EXCEPTION_HANDLERS)
