"""Builds one connector per proof type, once, at start-up (the broker's composition root calls
this; every connector owns one ``httpx.AsyncClient``: close them with ``aclose()``)."""

from collections.abc import Callable
from datetime import date

import httpx

from connectors._http import RegisterClient
from connectors.birth import BirthConnector
from connectors.custody import CustodyConnector
from connectors.directory import Directory
from connectors.income import IncomeConnector
from einmal.domain.proofs import ProofType
from einmal.domain.registers import Connector

__all__ = ["build_connectors"]


def build_connectors(registers_url: str, *, timeout_s: float = 5.0, retries: int = 2,
                     connect_timeout_s: float | None = None,
                     clock: Callable[[], date] | None = None,
                     transport: httpx.AsyncBaseTransport | None = None,
                     backoff_s: float = 0.05,
                     today: Callable[[], date] | None = None,
                     max_concurrency: int = 32, queue_timeout_s: float = 1.0,
                     ) -> dict[ProofType, Connector]:
    """One connector per proof type, routed through ``Directory.from_base_url(registers_url)``.

    Args:
        registers_url: base of every register URL, e.g. ``http://127.0.0.1:8000/registers``.
        timeout_s: read/write/pool timeout per attempt.
        retries: extra attempts after a timeout, connection error or 5xx (0 = no retry).
        connect_timeout_s: connect timeout (default: ``min(timeout_s, 2.0)``).
        clock: today's date for custody's default ``as_of`` (default: the UTC date).
        transport: an httpx transport (tests: ``httpx.MockTransport``/``ASGITransport``).
        backoff_s: linear backoff step between attempts.
        today: older name of ``clock``.
        max_concurrency: calls in flight per register, at most (connectors/_http.py).
        queue_timeout_s: how long a call waits for a free slot before RegisterBusyError.
    """
    directory = Directory.from_base_url(registers_url)

    def client() -> RegisterClient:
        return RegisterClient(timeout_s=timeout_s, retries=retries,
                              connect_timeout_s=connect_timeout_s, backoff_s=backoff_s,
                              transport=transport, max_concurrency=max_concurrency,
                              queue_timeout_s=queue_timeout_s)

    when = clock or today
    custody = (CustodyConnector(directory, client(), when) if when
               else CustodyConnector(directory, client()))
    return {ProofType.BIRTH: BirthConnector(directory, client()),
            ProofType.CUSTODY: custody,
            ProofType.INCOME: IncomeConnector(directory, client())}
