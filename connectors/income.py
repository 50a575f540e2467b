"""Income proofs: monthly gross income for a requested period from the income register."""

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from connectors._http import RegisterClient
from connectors.base import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    ProofData,
    RecordNotFoundError,
    RegisterRejectedError,
)
from connectors.directory import Directory
from einmal.domain.proofs import ProofType

__all__ = ["IncomeConnector"]

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
MAX_MONTHS = 24
REGISTER = "einkommensregister"


class _Month(msgspec.Struct, frozen=True):
    month: str
    gross_eur: str
    employment: str


class _Answer(msgspec.Struct, frozen=True):
    status: str
    months: list[_Month] = []


_decode = msgspec.json.Decoder(_Answer).decode


def _index(month: str) -> int:
    year, number = month.split("-")
    return int(year) * 12 + int(number) - 1


class IncomeConnector:
    proof_type = ProofType.INCOME

    def __init__(self, directory: Directory, client: RegisterClient) -> None:
        self._base = directory.income_register()
        self._client = client

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        unknown = set(parameters) - {"from", "to"}
        if unknown:
            msg = f"unknown parameter(s) for an income proof: {', '.join(sorted(unknown))}"
            raise InvalidParametersError(msg)
        first, last = parameters.get("from"), parameters.get("to")
        if not (isinstance(first, str) and _MONTH.match(first)
                and isinstance(last, str) and _MONTH.match(last)):
            msg = "from, to: the period as months YYYY-MM"
            raise InvalidParametersError(msg)
        span = _index(last) - _index(first) + 1
        if not 1 <= span <= MAX_MONTHS:
            msg = f"from, to: from must not be after to, and the period at most {MAX_MONTHS} months"
            raise InvalidParametersError(msg)

    async def fetch(self, subject: str, parameters: Mapping[str, Any]) -> ProofData:
        self.check_parameters(parameters)
        first, last = parameters["from"], parameters["to"]
        response = await self._client.request(
            "GET", f"{self._base}/persons/{subject}/months", params={"from": first, "to": last},
            register=REGISTER)
        if response.status_code == 404:  # noqa: PLR2004
            status = _status_of(response.content)
            if status == "not_held":
                msg = "the income register holds no income data for this person (e.g. self-employed)"
            else:
                msg = "the income register holds no record for the subject"
            raise RecordNotFoundError(msg)
        if response.status_code >= 400:  # noqa: PLR2004
            msg = f"the income register refused the query ({response.status_code})"
            raise RegisterRejectedError(msg)
        try:
            answer = _decode(response.content)
            total = sum((Decimal(m.gross_eur) for m in answer.months), Decimal("0.00"))
        except (msgspec.ValidationError, msgspec.DecodeError, InvalidOperation) as exc:
            msg = "the income register sent an invalid answer"
            raise InvalidRegisterAnswerError(msg) from exc
        if answer.status != "found" or any(not first <= m.month <= last for m in answer.months):
            msg = "the income register answered outside the requested period"
            raise InvalidRegisterAnswerError(msg)
        data = {"period_from": first, "period_to": last,
                "months": [msgspec.structs.asdict(m) for m in answer.months],
                "total_gross_eur": f"{total:.2f}"}
        return ProofData(proof_type=self.proof_type, issuer=REGISTER,
                         issuer_name="Einkommensregister (Rentenversicherung)", data=data,
                         concerned=(subject,), route=(REGISTER,))

    async def aclose(self) -> None:
        await self._client.aclose()


def _status_of(raw: bytes) -> str:
    try:
        return str(msgspec.json.decode(raw).get("status", ""))
    except (msgspec.DecodeError, AttributeError):
        return ""
