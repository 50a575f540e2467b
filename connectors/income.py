"""Income proofs: monthly gross income for a requested period from the income register.

Parameters: ``from`` and ``to`` (YYYY-MM, from <= to, at most 24 months); the subject is the
earner's IdNr. The proof lists every month of the period, in order: a month the register holds
no earnings for (e.g. unemployment) appears as ``{"gross_eur": "0.00", "employment": "none"}``,
so a period always has its full length. A person the register does not hold at all (the
self-employed) is a RecordNotFoundError whose message says "not held".
"""

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import msgspec

from connectors._http import RegisterClient
from connectors._params import reject_unknown
from connectors.directory import Directory
from connectors.protocol.headers import requester_headers
from einmal.domain.proofs import ProofType
from einmal.domain.registers import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    ProofData,
    RecordNotFoundError,
    RegisterRejectedError,
    Requester,
)

__all__ = ["MAX_MONTHS", "REGISTER", "IncomeConnector"]

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_EUR = re.compile(r"^\d{1,9}\.\d{2}$")  # non-negative, two decimals; refuses NaN/Infinity
MAX_MONTHS = 24
REGISTER = "einkommensregister"
_NOT_FOUND = 404
_CLIENT_ERROR = 400


class _Month(msgspec.Struct, frozen=True):
    month: str
    gross_eur: str
    employment: Literal["employee", "part_time", "minijob"]


class _Answer(msgspec.Struct, frozen=True):
    status: Literal["found"]
    months: list[_Month]
    idnr: str | None = None


class _Status(msgspec.Struct, frozen=True):
    status: str = ""


_decode = msgspec.json.Decoder(_Answer).decode
_decode_status = msgspec.json.Decoder(_Status).decode


def _index(month: str) -> int:
    year, number = month.split("-")
    return int(year) * 12 + int(number) - 1


def _name(index: int) -> str:
    year, month = divmod(index, 12)
    return f"{year:04d}-{month + 1:02d}"


class IncomeConnector:
    """Asks the (one, central) income register for a person's monthly gross income."""

    proof_type = ProofType.INCOME

    def __init__(self, directory: Directory, client: RegisterClient) -> None:
        self._base = directory.income_register()
        self._client = client

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        reject_unknown(parameters, {"from", "to"}, "income")
        first, last = parameters.get("from"), parameters.get("to")
        if not (isinstance(first, str) and _MONTH.match(first)
                and isinstance(last, str) and _MONTH.match(last)):
            msg = "from, to: the period as months YYYY-MM"
            raise InvalidParametersError(msg)
        span = _index(last) - _index(first) + 1
        if not 1 <= span <= MAX_MONTHS:
            msg = f"from, to: from must not be after to, and the period at most {MAX_MONTHS} months"
            raise InvalidParametersError(msg)

    async def fetch(self, subject: str, parameters: Mapping[str, Any], *,
                    requester: Requester | None = None) -> ProofData:
        self.check_parameters(parameters)
        first, last = parameters["from"], parameters["to"]
        response = await self._client.request(
            "GET", f"{self._base}/persons/{subject}/months", params={"from": first, "to": last},
            register=REGISTER,
            headers={"accept": "application/json", **requester_headers(requester)})
        if response.status_code == _NOT_FOUND:
            if _status_of(response.content) == "not_held":
                msg = ("the income register does not hold income data for this person "
                       "(not held by this register, e.g. self-employed)")
            else:
                msg = "the income register holds no record for the subject"
            raise RecordNotFoundError(msg)
        if response.status_code >= _CLIENT_ERROR:
            msg = f"the income register refused the query ({response.status_code})"
            raise RegisterRejectedError(msg)
        months = _parse(response.content, subject, first, last)
        total = sum((Decimal(m["gross_eur"]) for m in months), Decimal("0.00"))
        data = {"period_from": first, "period_to": last, "months": months,
                "total_gross_eur": f"{total:.2f}"}
        return ProofData(proof_type=self.proof_type, issuer=REGISTER,
                         issuer_name="Einkommensregister (Rentenversicherung)", data=data,
                         concerned=(subject,), route=(REGISTER,))

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(unverified: bytes, subject: str, first: str, last: str) -> list[dict[str, str]]:
    """Validate the answer; return every month of the period (unreported months as "none")."""
    try:
        answer = _decode(unverified)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        msg = "the income register sent an invalid answer"
        raise InvalidRegisterAnswerError(msg) from exc
    if answer.idnr is not None and answer.idnr != subject:
        msg = "the income register answered about another person"
        raise InvalidRegisterAnswerError(msg)
    reported: dict[str, dict[str, str]] = {}
    for month in answer.months:
        if not _MONTH.match(month.month) or not first <= month.month <= last:
            msg = "the income register answered outside the requested period"
            raise InvalidRegisterAnswerError(msg)
        if not _EUR.match(month.gross_eur) or month.month in reported:
            msg = "the income register sent a malformed or repeated month"
            raise InvalidRegisterAnswerError(msg)
        reported[month.month] = msgspec.structs.asdict(month)
    return [reported.get(name, {"month": name, "gross_eur": "0.00", "employment": "none"})
            for name in map(_name, range(_index(first), _index(last) + 1))]


def _status_of(raw: bytes) -> str:
    try:
        return _decode_status(raw).status
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ""
