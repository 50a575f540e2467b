"""Abuse limits: token buckets per actor (service, citizen, client address), in process.

Each process enforces its own buckets; with N processes behind a balancer the effective limit is
up to N times higher (documented in docs/threat-model.md). Answers 429 problem+json with
``Retry-After``.
"""

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from einmal.problems import ProblemError

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, *, rate_per_s: float, burst: float, what: str,
                 clock: Callable[[], float] = time.monotonic, max_actors: int = 100_000) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._what = what
        self._clock = clock
        self._max = max_actors
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, actor: str) -> None:
        """Take one token for ``actor`` or raise a 429 problem."""
        if self._rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.pop(actor, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1:
            self._buckets[actor] = (tokens, now)
            wait = max(1, math.ceil((1 - tokens) / self._rate))
            raise ProblemError("rate-limited", f"Too many requests for this {self._what}; "
                               f"retry in {wait} s.", headers={"Retry-After": str(wait)})
        self._buckets[actor] = (tokens - 1, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
