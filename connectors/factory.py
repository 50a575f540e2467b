"""Builds one connector per proof type, once, at start-up."""

from collections.abc import Callable
from datetime import date

import httpx

from connectors._http import RegisterClient
from connectors.base import Connector
from connectors.birth import BirthConnector
from connectors.custody import CustodyConnector
from connectors.directory import Directory
from connectors.income import IncomeConnector
from einmal.domain.proofs import ProofType

__all__ = ["build_connectors"]


def build_connectors(registers_url: str, *, timeout_s: float = 5.0, retries: int = 2,
                     today: Callable[[], date] | None = None,
                     transport: httpx.AsyncBaseTransport | None = None,
                     ) -> dict[ProofType, Connector]:
    directory = Directory.from_base_url(registers_url)

    def client() -> RegisterClient:
        return RegisterClient(timeout_s=timeout_s, retries=retries, transport=transport)

    custody = (CustodyConnector(directory, client(), today) if today
               else CustodyConnector(directory, client()))
    return {ProofType.BIRTH: BirthConnector(directory, client()),
            ProofType.CUSTODY: custody,
            ProofType.INCOME: IncomeConnector(directory, client())}
