"""Summarise py-spy ``--format raw`` output (collapsed stacks: ``frame;frame;... count``)."""

from collections import Counter
from typing import Any

_IGNORE_SELF = ("select (selectors.py", "_run_once (asyncio/base_events.py", "poll (")


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    project = ("broker/", "cockpit/", "connectors/", "einmal/", "policies/")

    def table(counter: Counter[str], only_project: bool = False) -> list[dict[str, Any]]:
        rows = [(f, n) for f, n in counter.most_common()
                if not only_project or any(p in f for p in project)]
        return [{"frame": f, "samples": n, "share": round(n / total, 3) if total else 0}
                for f, n in rows[:top]]

    return {"samples": total, "self_top": table(own),
            "inclusive_top_project": table(inclusive, only_project=True),
            "inclusive_top": table(inclusive)}


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"
