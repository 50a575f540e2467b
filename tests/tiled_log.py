"""A tiled log for tests, built from the C2SP tlog-tiles text with ``einmal_client.tlog`` alone
(not with ``einmal_client.tiles``, which it checks): the files a log serves, as a dict, and a
tiny HTTP server that serves them - one history or, switched, another (a split view)."""

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal_client import tlog

T0 = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)


def entry_leaf(n: int, **changes: Any) -> bytes:
    """A leaf of the log's entry format (decision 0009), written from the decision's text."""
    def when(delta: timedelta) -> str:
        return (T0 + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    entry: dict[str, Any] = {
        "v": 1, "id": f"00000000-0000-4000-8000-{n:012d}", "occurred_at": when(
            timedelta(seconds=n)), "outcome": "delivered", "error_type": None,
        "proof_type": "birth", "data_categories": ["name", "birth_date"],
        "service": {"id": "s", "name": "Service", "authority": "Authority", "land": "HB"},
        "register": {"id": "r", "name": "Register"}, "intermediaries": ["einmal-broker"],
        "purpose": "namensbestimmung", "legal_basis": "§ 1 Test", "consent_id": None,
        "subject": f"{n:064x}", "retention_until": when(timedelta(days=730)),
        "correlation_id": None}
    entry.update(changes)
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def index_path(index: int) -> str:
    """``<N>`` as the spec writes it: zero-padded 3-digit elements, all but the last x-ed."""
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def tile_files(leaves: Sequence[bytes]) -> dict[str, bytes]:
    """Every tile and entry bundle of the tree over ``leaves``: tile ``n`` at level ``l`` holds
    MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]) for each complete i (spec, "Merkle Tree")."""
    files: dict[str, bytes] = {}
    nodes = [tlog.leaf_hash(leaf) for leaf in leaves]  # tree level 0
    level = 0
    while nodes:
        for start in range(0, len(nodes), 256):
            part = nodes[start:start + 256]
            suffix = "" if len(part) == 256 else f".p/{len(part)}"
            files[f"tile/{level}/{index_path(start // 256)}{suffix}"] = b"".join(part)
            if level == 0:
                files[f"tile/entries/{index_path(start // 256)}{suffix}"] = b"".join(
                    len(leaf).to_bytes(2, "big") + leaf for leaf in leaves[start:start + 256])
        for _ in range(8):  # eight tree levels up: the next tile level
            nodes = [tlog.node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
        level += 1
    return files


class CraftedLog:
    """A log whose files are made here: sign a checkpoint over any leaves (a fork too)."""

    def __init__(self, origin: str = "test.example/log") -> None:
        self.origin = origin
        self.key = Ed25519PrivateKey.generate()
        self.verifier_key = tlog.verifier_key(origin, self.key.public_key())

    def note(self, leaves: Sequence[bytes]) -> str:
        root = tlog.mth([tlog.leaf_hash(leaf) for leaf in leaves])
        text = tlog.format_checkpoint(tlog.Checkpoint(self.origin, len(leaves), root))
        return tlog.sign_note(text, self.origin, self.key)

    def files(self, leaves: Sequence[bytes]) -> dict[str, bytes]:
        return {**tile_files(leaves), "checkpoint": self.note(leaves).encode(),
                "verifier-key": (self.verifier_key + "\n").encode()}


class _Handler(BaseHTTPRequestHandler):
    serve: Callable[[str], bytes | None]

    def do_GET(self) -> None:
        body = type(self).serve(self.path.removeprefix("/log/"))
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(files: Callable[[], dict[str, bytes]]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving ``files()`` (asked again on every request, so a test
    switches what it serves) under ``/log/``; yields the prefix URL."""
    handler = type("Handler", (_Handler,), {"serve": staticmethod(
        lambda path: files().get(path))})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/log"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
