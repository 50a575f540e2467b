"""The load generator: raw asyncio streams, HTTP/1.1 keep-alive, one process of its own.

``python -m bench.load SPEC.json`` prints one JSON object (figures) on stdout. The spec names:
host, port, request (the exact request bytes, latin-1), mode (``closed``: N connections each
sending back to back; ``open``: a fixed arrival rate, latency measured from the *scheduled*
send time so queueing is not hidden), concurrency, rate, warmup_s, duration_s, and
server_pids (their CPU use over the measured window is reported).
"""

import asyncio
import json
import os
import resource
import sys
from typing import Any

from bench.cpu import tree_ticks

_TICK = os.sysconf("SC_CLK_TCK")


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send one request; return (status, body, keep_alive)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        keep = b"\r\nconnection: close" not in lower
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            body = await self.reader.readexactly(int(lower[at + 17:end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = b""
        return status, body, keep

    def close(self) -> None:
        self.writer.close()


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of the server process and its worker processes."""
    try:
        return tree_ticks(pid)
    except (OSError, IndexError, ValueError):
        return None


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


class Recorder:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.latencies: list[float] = []
        self.errors = 0
        self.statuses: dict[str, int] = {}
        self.error_sample: str | None = None
        self.start = 0.0
        self.measure_from = 0.0
        self.measure_to = 0.0
        self.cpu_self_start = 0.0
        self.cpu_servers_start: dict[int, int | None] = {}

    def mark_window_start(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_self_start = usage.ru_utime + usage.ru_stime
        self.cpu_servers_start = {p: _cpu_ticks(p) for p in self.spec.get("server_pids", [])}

    def record(self, scheduled: float, finished: float, status: int | None, body: bytes) -> None:
        if not self.measure_from <= scheduled < self.measure_to:
            return
        key = str(status) if status is not None else "exception"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if status != 200:
            self.errors += 1
            if self.error_sample is None:
                self.error_sample = f"{key}: {body[:300]!r}"
            return
        self.latencies.append(finished - scheduled)

    def result(self, window_s: float) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_self = usage.ru_utime + usage.ru_stime - self.cpu_self_start
        servers = {}
        for pid, before in self.cpu_servers_start.items():
            after = _cpu_ticks(pid)
            if before is not None and after is not None:
                servers[str(pid)] = round((after - before) / _TICK / window_s, 2)
        values = sorted(self.latencies)
        ok = len(values)
        return {
            "requests_ok": ok, "errors": self.errors, "statuses": self.statuses,
            "error_sample": self.error_sample, "window_s": round(window_s, 3),
            "rps": round(ok / window_s, 1),
            "p50_ms": _ms(percentile(values, 50)), "p90_ms": _ms(percentile(values, 90)),
            "p99_ms": _ms(percentile(values, 99)), "max_ms": _ms(values[-1] if values else None),
            "mean_ms": _ms(sum(values) / ok if ok else None),
            "loadgen_cpu_cores": round(cpu_self / window_s, 2),
            "server_cpu_cores": servers,
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


async def _one(conn: Connection | None, spec: dict[str, Any], request: bytes,
               ) -> tuple[Connection | None, int | None, bytes]:
    try:
        if conn is None:
            conn = await Connection.open(spec["host"], spec["port"])
        status, body, keep = await conn.send(request)
        if not keep:
            conn.close()
            conn = None
        return conn, status, body
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        if conn is not None:
            conn.close()
        return None, None, repr(exc).encode()


async def closed_loop(spec: dict[str, Any], rec: Recorder) -> float:
    request = spec["request"].encode("latin-1")
    loop = asyncio.get_running_loop()
    end = rec.measure_to

    async def worker() -> None:
        conn: Connection | None = None
        while True:
            started = loop.time()
            if started >= end:
                break
            conn, status, body = await _one(conn, spec, request)
            rec.record(started, loop.time(), status, body)
        if conn is not None:
            conn.close()

    async def window() -> None:
        await asyncio.sleep(max(0.0, rec.measure_from - loop.time()))
        rec.mark_window_start()

    await asyncio.gather(window(), *(worker() for _ in range(spec["concurrency"])))
    return rec.measure_to - rec.measure_from


async def open_loop(spec: dict[str, Any], rec: Recorder) -> float:
    request = spec["request"].encode("latin-1")
    loop = asyncio.get_running_loop()
    pool: asyncio.Queue[Connection | None] = asyncio.Queue()
    for _ in range(spec["concurrency"]):
        pool.put_nowait(None)  # connections are opened lazily
    interval = 1.0 / spec["rate"]
    tasks: set[asyncio.Task[None]] = set()
    marked = False

    async def fire(scheduled: float) -> None:
        conn = await pool.get()
        conn, status, body = await _one(conn, spec, request)
        pool.put_nowait(conn)
        rec.record(scheduled, loop.time(), status, body)

    i = 0
    while True:
        scheduled = rec.start + i * interval
        if scheduled >= rec.measure_to:
            break
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not marked and scheduled >= rec.measure_from:
            rec.mark_window_start()
            marked = True
        task = asyncio.create_task(fire(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    return rec.measure_to - rec.measure_from


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    rec = Recorder(spec)
    loop = asyncio.get_running_loop()
    rec.start = loop.time()
    rec.measure_from = rec.start + spec["warmup_s"]
    rec.measure_to = rec.measure_from + spec["duration_s"]
    if spec["mode"] == "closed":
        window = await closed_loop(spec, rec)
    else:
        window = await open_loop(spec, rec)
    out = rec.result(window)
    out["settings"] = {k: spec.get(k) for k in ("mode", "concurrency", "rate", "warmup_s",
                                                 "duration_s")}
    return out


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    result = asyncio.run(run(spec))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
