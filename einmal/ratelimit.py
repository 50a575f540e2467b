"""Abuse limits: token buckets per actor (service, citizen, client address).

``Limiter`` is what the HTTP layers call (``await limiter.take(actor)``). Two implementations:
``RateLimiter`` here keeps the buckets in this process (the embedded default: one process);
``einmal.shared_state.SharedRateLimiter`` keeps them in the component's database, so that N
processes behind a balancer allow the limit once, not N times (decision 0032). Both answer
429 problem+json with ``Retry-After``.
"""

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from einmal.problems import ProblemError

__all__ = ["Limiter", "RateLimiter"]


class Limiter(Protocol):
    async def take(self, actor: str) -> None:
        """Take one token for ``actor`` or raise the 429 ``rate-limited`` problem."""
        ...


class RateLimiter:
    """Token buckets in this process (``Limiter``)."""

    def __init__(self, *, rate_per_s: float, burst: float, what: str,
                 clock: Callable[[], float] = time.monotonic, max_actors: int = 100_000) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._what = what
        self._clock = clock
        self._max = max_actors
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, actor: str) -> None:
        self.check(actor)

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
