"""Custody proofs from the federated Sorgeregister: one register per Land, each with an index
of the other Länder's holdings. Ask the home Land, follow the index (a family that moved, or a
declaration certified elsewhere, is still found).

Parameters: ``land`` (the home Land's code), optional ``as_of`` (YYYY-MM-DD, default: today
from the injected clock); the subject is the child's IdNr. ``ProofData.route`` lists the
registers asked, in order.
"""

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

import msgspec

from connectors._http import RegisterClient, raise_for_client_error
from connectors._params import is_idnr_shaped, is_iso_date, reject_unknown
from connectors.directory import LAND_NAMES, Directory
from connectors.protocol.headers import requester_headers
from einmal.domain.proofs import ProofType
from einmal.domain.registers import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    ProofData,
    Requester,
    RoutingError,
)

__all__ = ["MAX_REGISTERS", "CustodyConnector"]

#: Registers asked at most per proof: the home Land plus two index hops.
MAX_REGISTERS = 3

#: How many holders each custody value has.
_HOLDERS = {"joint": 2, "sole": 1, "none": 0}


class _Holder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    idnr: str
    given_names: str
    family_name: str
    role: str


class _Answer(msgspec.Struct, frozen=True):
    status: Literal["found", "held_elsewhere"]
    land: str | None = None
    as_of: str | None = None
    custody: Literal["joint", "sole", "none"] | None = None
    holders: list[_Holder] = []
    basis: Literal["marriage_at_birth", "declaration", "marriage", "court", "law"] | None = None
    since: str | None = None


_decode = msgspec.json.Decoder(_Answer).decode


def _utc_today() -> date:
    return datetime.now(UTC).date()


class CustodyConnector:
    """Asks the home Land's Sorgeregister and follows its index to the holding Land."""

    proof_type = ProofType.CUSTODY

    def __init__(self, directory: Directory, client: RegisterClient,
                 clock: Callable[[], date] = _utc_today) -> None:
        self._directory = directory
        self._client = client
        self._clock = clock

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        reject_unknown(parameters, {"land", "as_of"}, "custody")
        if parameters.get("land") not in LAND_NAMES:
            msg = f"land: the home Land's code, one of {', '.join(sorted(LAND_NAMES))}"
            raise InvalidParametersError(msg)
        if "as_of" in parameters and not is_iso_date(parameters["as_of"]):
            msg = "as_of: optional date YYYY-MM-DD (default: today)"
            raise InvalidParametersError(msg)

    async def fetch(self, subject: str, parameters: Mapping[str, Any], *,
                    requester: Requester | None = None) -> ProofData:
        self.check_parameters(parameters)
        as_of: str = parameters.get("as_of") or self._clock().isoformat()
        land: str = parameters["land"]
        route: list[str] = []
        asked: set[str] = set()
        while len(route) < MAX_REGISTERS:
            base = self._directory.sorgeregister(land)
            if base is None:  # only for the first Land; index answers are checked below
                msg = f"no Sorgeregister for Land {land}"
                raise RoutingError(msg)
            register = f"sorgeregister:{land}"
            route.append(register)
            asked.add(land)
            response = await self._client.request(
                "GET", f"{base}/records/{subject}", params={"as_of": as_of}, register=register,
                headers={"accept": "application/json", **requester_headers(requester)})
            raise_for_client_error(response, register)
            try:
                answer = _decode(response.content)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                msg = f"{register} sent an invalid answer"
                raise InvalidRegisterAnswerError(msg) from exc
            if answer.status == "held_elsewhere":
                if answer.land not in LAND_NAMES or answer.land in asked:
                    msg = f"{register}'s index points nowhere new ({answer.land!r})"
                    raise InvalidRegisterAnswerError(msg)
                land = answer.land
                continue
            _check_record(answer, register, land, as_of)
            data = {
                "as_of": as_of, "custody": answer.custody,
                "holders": [msgspec.structs.asdict(h) for h in answer.holders],
                "basis": answer.basis, "since": answer.since, "register_land": land,
            }
            concerned = (subject, *(h.idnr for h in answer.holders))
            return ProofData(proof_type=self.proof_type, issuer=register,
                             issuer_name=f"Sorgeregister {LAND_NAMES[land]}", data=data,
                             concerned=concerned, route=tuple(route))
        msg = f"the custody index led through {MAX_REGISTERS} registers without a record"
        raise InvalidRegisterAnswerError(msg)

    async def aclose(self) -> None:
        await self._client.aclose()


def _check_record(answer: _Answer, register: str, land: str, as_of: str) -> None:
    """A found record must be about the asked Land and date and be internally consistent."""
    problems = []
    if answer.land not in {None, land}:
        problems.append("names another Land")
    if answer.as_of not in {None, as_of}:
        problems.append("is for another date")
    if answer.custody is None or answer.basis is None:
        problems.append("lacks custody or basis")
    elif len(answer.holders) != _HOLDERS[answer.custody]:
        problems.append(f"has {len(answer.holders)} holder(s) for custody {answer.custody!r}")
    if answer.since is not None and not is_iso_date(answer.since):
        problems.append("has an invalid 'since' date")
    if answer.custody != "none" and answer.since is None:
        problems.append("lacks 'since'")
    if not all(is_idnr_shaped(h.idnr) for h in answer.holders):
        problems.append("has a malformed holder IdNr")
    if problems:
        msg = f"{register} sent a record that {'; '.join(problems)}"
        raise InvalidRegisterAnswerError(msg)
