"""Custody proofs from the federated Sorgeregister: one register per Land, each with an index
of the other Länder's holdings. Ask the home Land, follow the index (a family that moved is
still found)."""

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from connectors._http import RegisterClient, raise_for_client_error
from connectors.base import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    ProofData,
    RecordNotFoundError,
    RoutingError,
)
from connectors.birth import is_iso_date
from connectors.directory import LAND_NAMES, Directory
from einmal.domain.proofs import ProofType

__all__ = ["CustodyConnector"]

MAX_HOPS = 3


class _Holder(msgspec.Struct, frozen=True):
    idnr: str
    given_names: str
    family_name: str
    role: str


class _Answer(msgspec.Struct, frozen=True):
    status: str
    land: str | None = None
    as_of: str | None = None
    custody: str | None = None
    holders: list[_Holder] = []
    basis: str | None = None
    since: str | None = None


_decode = msgspec.json.Decoder(_Answer).decode


class CustodyConnector:
    proof_type = ProofType.CUSTODY

    def __init__(self, directory: Directory, client: RegisterClient,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        self._directory = directory
        self._client = client
        self._today = today

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        unknown = set(parameters) - {"land", "as_of"}
        if unknown:
            msg = f"unknown parameter(s) for a custody proof: {', '.join(sorted(unknown))}"
            raise InvalidParametersError(msg)
        if parameters.get("land") not in LAND_NAMES:
            msg = f"land: the home Land's code, one of {', '.join(sorted(LAND_NAMES))}"
            raise InvalidParametersError(msg)
        if "as_of" in parameters and not is_iso_date(parameters["as_of"]):
            msg = "as_of: optional date YYYY-MM-DD (default: today)"
            raise InvalidParametersError(msg)

    async def fetch(self, subject: str, parameters: Mapping[str, Any]) -> ProofData:
        self.check_parameters(parameters)
        as_of = parameters.get("as_of") or self._today().isoformat()
        land: str = parameters["land"]
        route: list[str] = []
        while len(route) < MAX_HOPS:
            base = self._directory.sorgeregister(land)
            if base is None:
                msg = f"no Sorgeregister for Land {land}"
                raise RoutingError(msg)
            register = f"sorgeregister:{land}"
            route.append(register)
            response = await self._client.request(
                "GET", f"{base}/records/{subject}", params={"as_of": as_of}, register=register)
            raise_for_client_error(response, register)
            try:
                answer = _decode(response.content)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                msg = f"{register} sent an invalid answer"
                raise InvalidRegisterAnswerError(msg) from exc
            if answer.status == "held_elsewhere":
                if not answer.land or answer.land in {r.split(":")[1] for r in route}:
                    msg = f"{register}'s index points nowhere new ({answer.land})"
                    raise InvalidRegisterAnswerError(msg)
                land = answer.land
                continue
            if answer.status != "found" or answer.custody not in {"joint", "sole", "none"}:
                msg = f"{register} sent an answer with an unknown status"
                raise InvalidRegisterAnswerError(msg)
            data = {
                "as_of": as_of, "custody": answer.custody,
                "holders": [msgspec.structs.asdict(h) for h in answer.holders],
                "basis": answer.basis, "since": answer.since, "register_land": land,
            }
            concerned = (subject, *(h.idnr for h in answer.holders))
            return ProofData(proof_type=self.proof_type, issuer=register,
                             issuer_name=f"Sorgeregister {LAND_NAMES[land]}", data=data,
                             concerned=concerned, route=tuple(route))
        msg = f"the custody index led through {MAX_HOPS} registers without a record"
        raise RecordNotFoundError(msg)

    async def aclose(self) -> None:
        await self._client.aclose()
