"""Tile reads against today's proof endpoint (issue 16 §7): ``python -m bench.tiles_bench``.

One ``einmal serve --demo`` process (SQLite, one worker, granian or uvicorn), its log
filled by proof requests; then the load generator (``bench.load``, the one ``bench.run``
uses: raw asyncio streams, HTTP/1.1 keep-alive, its own process) runs closed-loop rounds,
interleaved - proof, full tile, partial tile, entry bundle, checkpoint; proof, ... - so a
change in the machine's other load hits every endpoint alike; each round gives its own
ratio to the proof endpoint (``GET /v1/log/proof/inclusion``), the aim is >= 5x for a tile.

Results: ``bench/results/tiles.json`` and a Markdown summary.
"""

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import cpu
from bench.run import (
    EINMAL,
    PYTHON,
    RESULTS,
    Server,
    free_port,
    machine,
    proof_request_bytes,
    run_load,
)
from einmal_client import tlog
from einmal_client.tiles import Tile, tile_width

AIM = 5.0


def _get(port: int, path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"host: 127.0.0.1:{port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _size(base_url: str) -> int:
    note = httpx.get(f"{base_url}/log/checkpoint", timeout=10).text
    return tlog.parse_checkpoint(note[:note.index("\n\n") + 1]).size


def fill(server: Server, entries: int, workdir: Path) -> int:
    """Proof requests until a published checkpoint holds ``entries``; its size."""
    request, _ = proof_request_bytes(server.base_url, server.port)
    spec = {"host": "127.0.0.1", "port": server.port, "request": request.decode("latin-1"),
            "server_pids": [server.proc.pid], "mode": "closed", "concurrency": 16,
            "warmup_s": 0, "duration_s": 2}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        size = _size(server.base_url)
        if size >= entries:
            return size
        made = run_load(spec, workdir)["requests_ok"]
        print(f"  filling the log: {size} published, {made} more proof requests", flush=True)
        if made == 0:
            time.sleep(1)  # the log integrates and cosigns within about a second
    msg = f"the log did not reach {entries} entries"
    raise RuntimeError(msg)


def requests(server: Server, size: int) -> dict[str, bytes]:
    """The requests measured, each checked to answer 200 first."""
    edge = size // 256
    width = tile_width(size, 0, edge)
    partial = Tile(0, edge, width) if 0 < width < 256 else Tile(0, edge - 1)
    chosen = {
        "proof": _get(server.port, f"/v1/log/proof/inclusion?index={size // 2}"
                                   f"&tree_size={size}"),
        "tile_full": _get(server.port, "/log/tile/0/000"),
        "tile_partial": _get(server.port, f"/log/{partial.path}"),
        "tile_level1": _get(server.port, f"/log/{Tile(1, 0, max(1, size >> 8)).path}"
                            if size < 65_536 else "/log/tile/1/000"),
        "bundle": _get(server.port, "/log/tile/entries/000"),
        "checkpoint": _get(server.port, "/log/checkpoint"),
    }
    for name, request in chosen.items():
        path = request.split(b" ")[1].decode()
        status = httpx.get(f"{server.base_url}{path}", timeout=10).status_code
        if status != 200:
            msg = f"{name}: GET {path} answered {status}"
            raise RuntimeError(msg)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1000,
                        help="log entries before measuring (proof requests)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian",
                        help="the HTTP server of einmal serve (default granian, as bench.run)")
    parser.add_argument("--output", type=Path, default=RESULTS / "tiles.json")
    args = parser.parse_args()
    started = time.monotonic()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(PYTHON).name, "-m", "bench.tiles_bench"]),
        "machine": machine(),
        "settings": {"concurrency": args.concurrency, "warmup_s": args.warmup,
                     "duration_s": args.duration, "rounds": args.rounds,
                     "server": f"einmal serve --demo --server {args.server}, SQLite, "
                               "1 worker"},
    }
    print(f"machine: {report['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="einmal-tiles-bench-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        argv = [EINMAL, "serve", "--demo", "--port", str(port), "--data-dir",
                str(workdir / "data"), "--server", args.server]
        server = Server("einmal", argv, port, workdir / "server.log")
        try:
            server.wait_ready()
            size = fill(server, args.entries, workdir)
            report["tree_size"] = size
            chosen = requests(server, size)
            report["requests"] = {k: v.split(b"\r\n")[0].decode() for k, v in chosen.items()}
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
            names = list(chosen)
            for round_no in range(args.rounds):
                order = names[round_no % len(names):] + names[:round_no % len(names)]
                for name in order:
                    cpu.wait_idle([server.proc.pid])  # and its workers
                    result = run_load({
                        "host": "127.0.0.1", "port": port,
                        "request": chosen[name].decode("latin-1"),
                        "server_pids": cpu.descendants(server.proc.pid), "mode": "closed",
                        "concurrency": args.concurrency, "warmup_s": args.warmup,
                        "duration_s": args.duration}, workdir)
                    runs[name].append(result)
                    print(f"  round {round_no + 1}/{args.rounds} {name:13} {result['rps']:>9} "
                          f"req/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                          f"errors {result['errors']}", flush=True)
        finally:
            server.stop()
    report["endpoints"] = {name: {
        "rps_runs": [r["rps"] for r in found],
        "rps_median": statistics.median(r["rps"] for r in found),
        "p50_ms_median": statistics.median(r["p50_ms"] or 0 for r in found),
        "p99_ms_median": statistics.median(r["p99_ms"] or 0 for r in found),
        "errors": sum(r["errors"] for r in found)} for name, found in runs.items()}
    proof = [r["rps"] for r in runs["proof"]]
    report["ratios_to_proof"] = {name: {
        "per_round": [round(r["rps"] / p, 2) if p else None for r, p in zip(found, proof,
                                                                            strict=True)],
        "median": round(statistics.median(r["rps"] / p for r, p in zip(found, proof,
                                                                       strict=True) if p), 2),
    } for name, found in runs.items() if name != "proof"}
    tiles = [report["ratios_to_proof"][n]["median"] for n in ("tile_full", "tile_partial")]
    report["aim"] = {"tile reads >= 5x the proof endpoint's requests/s": min(tiles) >= AIM,
                     "full": tiles[0], "partial": tiles[1]}
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.output}\n")
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [f"tree size {report['tree_size']}, {report['settings']['rounds']} interleaved "
             f"rounds of {report['settings']['duration_s']} s, "
             f"{report['settings']['concurrency']} connections",
             "", "| endpoint | request | req/s (median) | p50 ms | p99 ms | x proof (median; "
             "per round) |", "|---|---|---|---|---|---|"]
    for name, found in report["endpoints"].items():
        ratio = report["ratios_to_proof"].get(name)
        shown = ("1" if ratio is None else
                 f"{ratio['median']} ({', '.join(str(r) for r in ratio['per_round'])})")
        lines.append(f"| {name} | `{report['requests'][name]}` | {found['rps_median']:,.0f} | "
                     f"{found['p50_ms_median']} | {found['p99_ms_median']} | {shown} |")
    met = "met" if next(iter(report["aim"].values())) else "NOT met"
    lines += ["", f"Aim (tile reads >= 5x the proof endpoint): {met} - full "
              f"{report['aim']['full']}x, partial {report['aim']['partial']}x."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
