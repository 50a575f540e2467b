"""Fixtures of the connector tests: connectors against a mocked base URL (respx).

The connectors send through aiohttp in production (connectors/_http.py, decision 0029); here
they get respx's router as their httpx transport, so every exchange a test names is mocked
and an unnamed one fails the test (``assert_all_mocked``). The aiohttp send itself is tested
on real sockets in test_http_transport.py.
"""

from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest
import respx

from connectors import xpersonenstand as messages
from connectors.factory import build_connectors
from einmal.domain.proofs import ProofType
from einmal.domain.registers import Connector

BASE = "http://registers.test/registers"
TODAY = date(2026, 11, 28)
CHILD = "19573248168"
MOTHER, FATHER = "40329576010", "87045372919"


def birth_answer(*, parents: list[dict[str, str]] | None = None, **child_overrides: str) -> bytes:
    """A 138011 answer for CHILD born 2026-10-12 in Bremen (overrides make it invalid)."""
    child = {"idnr": CHILD, "vornamen": "Mia", "familienname": "Schmidt", "geschlecht": "w",
             "geburtsdatum": "2026-10-12", **child_overrides}
    if parents is None:
        parents = [{"idnr": MOTHER, "vornamen": "Anna", "familienname": "Schmidt"},
                   {"idnr": FATHER, "vornamen": "Ben", "familienname": "Schmidt"}]
    return messages.build_answer(
        author="standesamt:04011000", register_number="G 1/2026", child=child,
        place_name="Bremen", ags="04011000", parents=parents)


@pytest.fixture(name="connectors")
async def fx_connectors(respx_mock: respx.MockRouter,
                        ) -> AsyncIterator[dict[ProofType, Connector]]:
    built = build_connectors(BASE, timeout_s=0.5, retries=2, backoff_s=0.0, clock=lambda: TODAY,
                             transport=httpx.MockTransport(respx_mock.async_handler))
    yield built
    for connector in built.values():
        await connector.aclose()
