"""Server CPU time per request: a figure the other work on a shared machine hardly disturbs.

Wall-clock throughput on a 2-core machine shared with other work is noisy: a run that loses a
core to someone else's test halves its req/s. The CPU time the server process itself spends
per request (``utime + stime`` of every thread, from ``/proc/<pid>/stat``) barely changes
with contention, so the ratio of CPU-us/request of the echo server and of the proof path says
how close the proof path can get to the ceiling on a quiet machine: ``b/a ~= cpu(a) / cpu(b)``
when both are CPU-bound on one core.

Method, per variant (one server start, ``repeats`` measurements):

1. warm up (closed loop, 16 connections, 2 s), then wait until the servers are idle;
2. measure the idle CPU rate of the servers for 2 s (timers: delivery worker, sequencer);
3. per repeat: read the CPU counters, run the closed loop for ``seconds``, wait until the
   servers are idle again (the transfer's deferred work - outbox delivery, cockpit ingest,
   sequencing - is *included*), read the counters, subtract the idle rate over the elapsed
   time and divide by the number of requests answered.

A server's figure covers its process and every process below it (worker processes).

Counters tick every 10 ms (``SC_CLK_TCK`` = 100): a measurement spans >= 2 s of CPU time,
so the resolution is better than 1 %.
"""

import os
import statistics
import time
from typing import Any

_TICK = 100.0


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:  # the process has ended
        return None


def _ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a server's worker processes: granian and uvicorn
    with workers run the app in children of the process started)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def tree_ticks(pid: int) -> int:
    """CPU ticks (user + system) of ``pid`` and its descendants."""
    return sum(_ticks(p) for p in descendants(pid))


def ticks(pids: list[int]) -> dict[int, int]:
    return {pid: tree_ticks(pid) for pid in pids}


def wait_idle(pids: list[int], idle_rate: float = 0.0, window_s: float = 1.0,
              max_s: float = 60.0) -> float:
    """Wait until the servers together used at most their idle rate plus 5 % of a core
    over ``window_s`` (the deferred work of the last requests is done)."""
    deadline = time.monotonic() + max_s
    last = ticks(pids)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        now = ticks(pids)
        busy = sum(now.values()) - sum(last.values())
        last = now
        if busy <= idle_rate * window_s + max(2.0, 0.05 * _TICK * window_s):
            return time.monotonic()
    return time.monotonic()


def measure(pids: list[int], run_load: Any, seconds: float, repeats: int) -> dict[str, Any]:
    """``run_load(spec_overrides)`` runs the closed loop and returns the load generator's
    figures. Returns CPU-us per request (total and per process), median and spread."""
    run_load({"warmup_s": 0, "duration_s": 2})
    wait_idle(pids)
    before = ticks(pids)
    t0 = time.monotonic()
    time.sleep(2.0)
    idle = {pid: (t - before[pid]) / (time.monotonic() - t0) for pid, t in ticks(pids).items()}
    idle_total = sum(idle.values())
    runs = []
    for _ in range(repeats):
        start = ticks(pids)
        t_start = time.monotonic()
        figures = run_load({"warmup_s": 0, "duration_s": seconds})
        t_end = wait_idle(pids, idle_total)
        end = ticks(pids)
        elapsed = t_end - t_start
        n = figures["requests_ok"]
        if not n:
            msg = f"no request succeeded in the CPU run: {figures.get('error_sample')}"
            raise RuntimeError(msg)
        per_pid = {str(pid): round(max(0.0, (end[pid] - start[pid] - idle[pid] * elapsed))
                                   / _TICK / n * 1e6, 1) for pid in pids}
        runs.append({"requests": n, "errors": figures["errors"], "rps": figures["rps"],
                     "cpu_us_per_request": round(sum(per_pid.values()), 1),
                     "cpu_us_per_request_by_pid": per_pid})
    values = [r["cpu_us_per_request"] for r in runs]
    return {"median_us": round(statistics.median(values), 1), "min_us": min(values),
            "max_us": max(values), "idle_ticks_per_s": round(idle_total, 2),
            "repeats": runs}
