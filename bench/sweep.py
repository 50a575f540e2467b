"""CPU time per request and latency across arrival rates: one variant, open loop at each rate,
then the closed loop (its peak).

``python -m bench.sweep --variant cs --rates 100,200,400,725 [--duration 5] [--rounds 1]``

Why (decision 0043): on the 2-vCPU machines we measure on, a request costs several times more
CPU at a low arrival rate than at the peak - the echo too (each request wakes an idle process on
another vCPU and finds its caches cold) - so "half the peak rate" is not half the CPU, and the
open loop at half the peak can queue. This shows by how much, per process: the figure is the
process's on-CPU time (``utime + stime`` of all its threads) over the measured window, divided
by the requests answered in it. Variants and their servers as in ``bench.run``.
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import cpu
from bench.run import ECHOES, RESULTS, VARIANTS, Running, build_request, run_load, split_variant


def sweep(variant: str, rates: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="einmal-sweep-"))
    stand_in = build_request(0, "x" * 300, {"idnr": "12345678901", "place_of_birth": "04011000",
                                            "birth_date": "2025-01-01"})
    print(f"[{variant}] starting ...", file=sys.stderr, flush=True)
    running = Running(variant, workdir, stand_in, args)
    rows: list[dict[str, Any]] = []
    try:
        names = {str(s.proc.pid): s.name for s in running.servers}
        for round_no in range(args.rounds):
            for rate in [*rates, None]:
                cpu.wait_idle(running.pids)
                spec = (running.spec(args, mode="closed", concurrency=args.closed)
                        if rate is None else running.spec(args, mode="open", rate=rate))
                r = run_load(spec, workdir)
                by_process = {names[pid]: round(cores / r["rps"] * 1e6)
                              for pid, cores in r["server_cpu_cores"].items()} if r["rps"] else {}
                row = {"round": round_no + 1,
                       "load": f"closed {args.closed}" if rate is None else f"open {rate}/s",
                       "rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                       "errors": r["errors"], "cpu_us_per_request": by_process,
                       "cpu_us_per_request_total": sum(by_process.values())}
                rows.append(row)
                print(f"  {row['load']:>12}: {row['rps']:8,.0f} req/s  p50 {row['p50_ms']} ms  "
                      f"p99 {row['p99_ms']} ms  CPU-us/req {row['cpu_us_per_request_total']:,} "
                      f"{by_process}", file=sys.stderr, flush=True)
    finally:
        running.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cs",
                        help=f"one of {', '.join(VARIANTS)} (default cs)")
    parser.add_argument("--rates", default="100,200,400,725",
                        help="open-loop arrival rates, req/s (default 100,200,400,725)")
    parser.add_argument("--closed", type=int, default=64,
                        help="connections of the closed loop run last (default 64)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--server", default="uvicorn")
    parser.add_argument("--output", type=Path, default=RESULTS / "sweep.json")
    args = parser.parse_args()
    try:
        rates = [int(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--rates: whole numbers separated by commas, not {args.rates!r}")
    if not rates or min(rates) < 1:
        parser.error("--rates: at least one rate, each >= 1")
    kind = split_variant(args.variant, args.server)[0]
    if kind == "cpg":
        parser.error("--variant: cpgN needs bench.run's --postgres; sweep the SQLite variants")
    args.levels, args.postgres, args.pg_shared_state = [args.closed], None, "auto"
    rows = sweep(args.variant, rates, args)
    summary: dict[str, Any] = {}
    for load in dict.fromkeys(r["load"] for r in rows):
        mine = [r for r in rows if r["load"] == load]
        summary[load] = {"rps": statistics.median(r["rps"] for r in mine),
                         "p99_ms": statistics.median(r["p99_ms"] for r in mine),
                         "cpu_us_per_request_total": statistics.median(
                             r["cpu_us_per_request_total"] for r in mine)}
    args.output.write_text(json.dumps({"variant": args.variant, "echo_like": kind in ECHOES,
                                       "rows": rows, "summary": summary}, indent=2) + "\n")
    print(f"| load | req/s | p99 ms | CPU-µs per request (all {args.variant}'s processes) |")
    print("|---|---|---|---|")
    for load, s in summary.items():
        print(f"| {load} | {s['rps']:,.0f} | {s['p99_ms']} | {s['cpu_us_per_request_total']:,} |")
    print(f"\nwritten {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
