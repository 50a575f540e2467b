"""The outbound HTTP client alone: client CPU time per request at N requests in flight.

``python -m bench.client [--seconds 3] [--rounds 3] [--concurrency 16] [--loops asyncio,uvloop]``

A local Litestar server (its own process, uvicorn with uvloop + httptools, so the server is not
the limit) answers every ``POST /registers/x`` with 380 bytes of XML, like a Standesamt. Each
client stack runs in a fresh process of its own: ``concurrency`` tasks send back to back for
``seconds``; the figure is the client process's CPU time (``getrusage``: user + system, all
threads) divided by the answers it got. Stacks run interleaved round by round (a change in the
machine's other load hits them alike); the table gives the median round and the spread.

Stacks:
  httpx          one ``httpx.AsyncClient`` (httpcore pool; the connectors before decision 0029)
  httpx-4pools   four clients used in turn (the connectors from 2026-11-29 to decision 0029)
  httpx-aiohttp  ``httpx.AsyncClient`` over ``httpx_aiohttp.AiohttpTransport`` (package)
  httpx-ours     ``httpx.AsyncClient`` over ``AiohttpTransport`` below (a lean transport of our own)
  register       ``connectors._http.RegisterClient`` as the broker builds it (aiohttp, slots,
                 retries; before decision 0029: four httpx pools)
  aiohttp        ``aiohttp.ClientSession`` alone (no httpx)
"""

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvicorn
from litestar import Litestar, Response, post

from bench.run import ROOT, Server, free_port
from connectors._http import RegisterClient

STACKS = ["httpx", "httpx-4pools", "httpx-aiohttp", "httpx-ours", "register", "aiohttp"]
ANSWER = (b'<?xml version="1.0" encoding="UTF-8"?>\n<antwort xmlns="urn:bench">'
          + b"<eintrag>" + b"x" * 280 + b"</eintrag></antwort>\n")
BODY = b'<?xml version="1.0"?><anfrage><idnr>12345678901</idnr></anfrage>'


class AiohttpTransport(httpx.AsyncBaseTransport):
    """The leanest httpx transport on aiohttp we could write: the answer read whole, no
    stream wrapper. Measured, not used: httpx's own request/response layer stays above it."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept",
                                                                     "Accept-Encoding"))
        timeout = request.extensions.get("timeout", {})
        async with self._session.request(
                request.method, str(request.url), headers=request.headers,
                data=await request.aread() or None, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(connect=timeout.get("pool"),
                                              sock_connect=timeout.get("connect"),
                                              sock_read=timeout.get("read"))) as answer:
            body = await answer.read()
        return httpx.Response(answer.status, headers=answer.raw_headers, content=body,
                              request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def answer_app() -> Litestar:
    @post("/registers/x", status_code=200)
    async def answer() -> Response[bytes]:
        return Response(content=ANSWER, media_type="application/xml")

    return Litestar(route_handlers=[answer], logging_config=None, openapi_config=None)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(send: Any, concurrency: int, seconds: float) -> tuple[int, float, float]:
    for _ in range(50):  # warm-up: connections open, code paths hot
        await send()
    count = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop:
            await send()
            count += 1

    cpu0, t0 = _cpu(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count, _cpu() - cpu0, time.monotonic() - t0


async def _client(stack: str, url: str, concurrency: int, seconds: float,
                  ) -> tuple[int, float, float]:
    headers = {"content-type": "application/xml", "accept": "application/xml"}
    if stack == "aiohttp":
        async with aiohttp.ClientSession() as session:
            async def send_aiohttp() -> None:
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    assert response.status == 200  # noqa: S101 - a benchmark's sanity check
            return await _drive(send_aiohttp, concurrency, seconds)
    if stack == "register":
        client = RegisterClient(timeout_s=5.0, retries=2)

        async def send_register() -> None:
            response = await client.request("POST", url, register="bench", content=BODY,
                                            headers=headers)
            assert response.status_code == 200  # noqa: S101 - a benchmark's sanity check
        try:
            return await _drive(send_register, concurrency, seconds)
        finally:
            await client.aclose()
    transports: dict[str, Any] = {"httpx": None, "httpx-4pools": None,
                                  "httpx-aiohttp": "package", "httpx-ours": AiohttpTransport}
    shards = 4 if stack == "httpx-4pools" else 1
    clients = []
    for _ in range(shards):
        transport = transports[stack]
        if transport == "package":
            # optional: only this benchmark uses the package (decision 0029 compares it)
            from httpx_aiohttp import AiohttpTransport as PackageTransport  # noqa: PLC0415 - optional dependency (bench extra)

            transport = PackageTransport()
        elif transport is not None:
            transport = transport()
        clients.append(httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0),
                                         transport=transport,
                                         limits=httpx.Limits(max_connections=100 // shards)))
    turn = 0

    async def send_httpx() -> None:
        nonlocal turn
        turn = (turn + 1) % shards
        response = await clients[turn].request("POST", url, content=BODY, headers=headers)
        assert response.status_code == 200  # noqa: S101 - a benchmark's sanity check
    try:
        return await _drive(send_httpx, concurrency, seconds)
    finally:
        for c in clients:
            await c.aclose()


def one(stack: str, url: str, concurrency: int, seconds: float, loop: str) -> dict[str, Any]:
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 - optional: only for the uvloop rows

        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    count, cpu_s, wall_s = runner(_client(stack, url, concurrency, seconds))
    return {"stack": stack, "loop": loop, "requests": count,
            "cpu_us_per_request": round(cpu_s / count * 1e6, 1),
            "rps": round(count / wall_s), "cpu_cores": round(cpu_s / wall_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--loops", default="asyncio")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the answer server
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one client run: stack,loop,url
    args = parser.parse_args()
    if args.serve:
        uvicorn.run(answer_app(), host="127.0.0.1", port=args.serve, log_level="warning",
                    access_log=False, loop="uvloop", http="httptools")
        return
    if args.one:
        stack, loop, url = args.one.split(",", 2)
        print(json.dumps(one(stack, url, args.concurrency, args.seconds, loop)))
        return
    port = free_port()
    log = Path(f"/tmp/bench-client-server-{port}.log")  # noqa: S108 - a local throw-away log
    server = Server("answer", [sys.executable, "-m", "bench.client", "--serve", str(port)],
                    port, log)
    stacks = [s for s in args.stacks.split(",") if s]
    loops = [s for s in args.loops.split(",") if s]
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        _wait(server)
        url = f"{server.base_url}/registers/x"
        for round_no in range(args.rounds):
            for loop in loops:
                for stack in stacks:
                    out = subprocess.run(
                        [sys.executable, "-m", "bench.client", "--one", f"{stack},{loop},{url}",
                         "--concurrency", str(args.concurrency), "--seconds", str(args.seconds)],
                        cwd=ROOT, capture_output=True, text=True, check=True)
                    r = json.loads(out.stdout)
                    runs.setdefault(f"{stack} ({loop})", []).append(r)
                    print(f"round {round_no + 1}: {stack:14} {loop:8} "
                          f"{r['cpu_us_per_request']:8.1f} CPU-us/req  {r['rps']:6} req/s  "
                          f"client {r['cpu_cores']} cores", flush=True)
    finally:
        server.stop()
    summary = {}
    print(f"\n| client ({args.concurrency} in flight) | CPU-us per request, median (rounds) "
          "| req/s median |\n|---|---|---|")
    for name, rs in runs.items():
        cpu = [r["cpu_us_per_request"] for r in rs]
        rps = [r["rps"] for r in rs]
        summary[name] = {"cpu_us_median": statistics.median(cpu), "cpu_us_rounds": cpu,
                         "rps_median": statistics.median(rps), "rps_rounds": rps}
        print(f"| {name} | {statistics.median(cpu):,.0f} ({', '.join(f'{c:,.0f}' for c in cpu)})"
              f" | {statistics.median(rps):,.0f} |")
    if args.output:
        args.output.write_text(json.dumps({"concurrency": args.concurrency,
                                           "seconds": args.seconds, "runs": runs,
                                           "summary": summary}, indent=2) + "\n")


def _wait(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.post(f"{server.base_url}/registers/x", content=BODY).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    msg = f"the answer server did not start; see {server.log_path}"
    raise RuntimeError(msg)


if __name__ == "__main__":
    main()
