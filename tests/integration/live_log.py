"""A live cockpit's transfer log filled quickly for tile tests (records ingested straight into
the cockpit's service on the server's own event loop, then waited for until a published
checkpoint holds them), the arguments of ``einmal log publish`` for it, and a plain static web
server (``python -m http.server``'s handler) for a published folder."""

import asyncio
import functools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal_client import tlog
from tests.waiting import wait_until

T0 = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)


def _record(n: int) -> TransferRecord:
    subject = f"{86095742719 + n % 13}"
    return TransferRecord(
        id=str(uuid.uuid4()), occurred_at=T0 + timedelta(seconds=n), outcome=Outcome.DELIVERED,
        proof_type="birth", purpose="namensbestimmung", subject=subject,
        service=ServiceRef(id="s", name="Service", authority="Authority", land="HB"),
        register=RegisterRef(id="r", name="Register"), data_categories=("name",),
        retention_until=T0 + timedelta(days=730),
        concerned=(Concerned(idnr=subject, relation="self"),))


def checkpoint_size(base_url: str) -> int:
    note = httpx.get(f"{base_url}/log/checkpoint", timeout=10).text
    return tlog.parse_checkpoint(note[:note.index("\n\n") + 1]).size


def fill(live: Any, count: int) -> int:
    """Ingest ``count`` records into the live cockpit; the size of the checkpoint that holds
    them (and every entry before)."""
    before = checkpoint_size(live.base_url)
    service = live.component("cockpit").service
    records = [_record(before + n) for n in range(count)]
    for start in range(0, count, 500):
        asyncio.run_coroutine_threadsafe(service.ingest(records[start:start + 500]),
                                         live.loop).result(timeout=60)
    return wait_until(lambda: (size := checkpoint_size(live.base_url)) >= before + count
                      and size, what=f"a checkpoint of {before + count} entries", timeout=60)


def publish_args(live: Any, out: Path) -> list[str]:
    args = ["log", "publish", "--out", str(out), "--data-dir", str(live.data_dir)]
    if live.settings.database_url:
        args += ["--database-url", live.settings.database_url]
    return args


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` as ``python -m http.server`` does; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
