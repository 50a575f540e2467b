"""Prometheus metrics: one registry per app (no process globals), a request middleware, and
gauges that components refresh at scrape time (outbox lag, log size)."""

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "route_of"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("einmal_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("einmal_http_request_duration_seconds", "HTTP latency",
                                 ["route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5))
        self.proofs = Counter("einmal_proof_requests", "Proof requests by outcome",
                              ["proof_type", "outcome"], registry=self.registry)
        self.outbox_pending = Gauge("einmal_outbox_pending", "Transfer records not yet "
                                    "delivered to the cockpit", registry=self.registry)
        self.outbox_lag = Gauge("einmal_outbox_lag_seconds", "Age of the oldest undelivered "
                                "transfer record", registry=self.registry)
        self.log_size = Gauge("einmal_log_tree_size", "Entries in the signed transfer log",
                              registry=self.registry)
        self.log_pending = Gauge("einmal_log_pending", "Entries received but not yet "
                                 "integrated into the log", registry=self.registry)
        self.refreshers: list[Callable[[Metrics], Awaitable[None]]] = []
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._outcomes: dict[tuple[str, str], Any] = {}

    def proof_outcome(self, proof_type: str, outcome: str) -> None:
        # as in observe: the child counter once per (proof type, outcome), a bounded set
        counter = self._outcomes.get((proof_type, outcome))
        if counter is None:
            counter = self._outcomes[proof_type, outcome] = self.proofs.labels(proof_type,
                                                                                outcome)
        counter.inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # labels() costs a lock and a tuple build per call; the children are cached per key
        # (bounded: route templates, not raw paths).
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(method, route, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    async def render(self) -> bytes:
        for refresh in self.refreshers:
            await refresh(self)
        return generate_latest(self.registry)


def route_of(scope: Mapping[str, object]) -> str:
    """The matched route template (bounded label cardinality), never the raw path."""
    template = scope.get("path_template")
    return str(template) if template else "unmatched"


def now() -> float:
    return time.perf_counter()
