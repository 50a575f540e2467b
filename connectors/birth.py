"""Birth proofs from the Standesamt of the place of birth (XML, stA2EGS.Geburt.138010/138011)."""

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import date
from typing import Any

from connectors._http import RegisterClient, raise_for_client_error
from connectors.base import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    ProofData,
    RoutingError,
)
from connectors.directory import Directory
from connectors.simulators import messages
from einmal.domain.proofs import ProofType

__all__ = ["BirthConnector", "is_iso_date"]

_AGS = re.compile(r"^\d{8}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_iso_date(value: object) -> bool:
    """True for a real calendar date written YYYY-MM-DD."""
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
_SEXES = frozenset({"d", "m", "w", "x"})


def _required(element: ET.Element, name: str) -> str:
    value = element.findtext(messages.tag(name))
    if not value or not value.strip():
        msg = f"the Standesamt answer lacks <{name}>"
        raise InvalidRegisterAnswerError(msg)
    return value.strip()


class BirthConnector:
    proof_type = ProofType.BIRTH

    def __init__(self, directory: Directory, client: RegisterClient) -> None:
        self._directory = directory
        self._client = client

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        unknown = set(parameters) - {"place_of_birth", "birth_date", "family_name"}
        if unknown:
            msg = f"unknown parameter(s) for a birth proof: {', '.join(sorted(unknown))}"
            raise InvalidParametersError(msg)
        place = parameters.get("place_of_birth")
        if not isinstance(place, str) or not _AGS.match(place):
            msg = "place_of_birth: the 8-digit municipality key (AGS) of the place of birth"
            raise InvalidParametersError(msg)
        if not is_iso_date(parameters.get("birth_date")):
            msg = "birth_date: the date of birth as YYYY-MM-DD"
            raise InvalidParametersError(msg)
        family_name = parameters.get("family_name")
        if family_name is not None and (not isinstance(family_name, str)
                                        or not 0 < len(family_name) <= 100):  # noqa: PLR2004
            msg = "family_name: optional, 1-100 characters"
            raise InvalidParametersError(msg)

    async def fetch(self, subject: str, parameters: Mapping[str, Any]) -> ProofData:
        self.check_parameters(parameters)
        route = self._directory.standesamt(parameters["place_of_birth"])
        if route is None:
            msg = f"no Standesamt is registered for municipality {parameters['place_of_birth']}"
            raise RoutingError(msg)
        municipality, url = route
        register = f"standesamt:{municipality.ags}"
        body = messages.build_request(idnr=subject, birth_date=parameters["birth_date"],
                                      family_name=parameters.get("family_name"), reader=register)
        response = await self._client.request(
            "POST", url, register=register, content=body,
            headers={"content-type": "application/xml"})
        raise_for_client_error(response, register)
        data, concerned = self._parse(response.content, subject)
        return ProofData(proof_type=self.proof_type, issuer=register,
                         issuer_name=f"Standesamt {municipality.name}", data=data,
                         concerned=concerned, route=(register,))

    @staticmethod
    def _parse(raw: bytes, subject: str) -> tuple[dict[str, Any], tuple[str, ...]]:
        try:
            root = messages.parse_xml(raw)
        except (ET.ParseError, messages.UnsafeXmlError) as exc:
            msg = "the Standesamt answer is not well-formed XML"
            raise InvalidRegisterAnswerError(msg) from exc
        entry = root.find(messages.tag("geburtseintrag"))
        if root.tag != messages.tag(messages.ANSWER) or entry is None:
            msg = "the Standesamt answer is not a stA2EGS.Geburt.138011 message"
            raise InvalidRegisterAnswerError(msg)
        child = entry.find(messages.tag("kind"))
        place = child.find(messages.tag("geburtsort")) if child is not None else None
        if child is None or place is None:
            msg = "the Standesamt answer lacks <kind> or <geburtsort>"
            raise InvalidRegisterAnswerError(msg)
        if _required(child, "idnr") != subject:
            msg = "the Standesamt answered about another person"
            raise InvalidRegisterAnswerError(msg)
        sex = _required(child, "geschlecht")
        birth_date = _required(child, "geburtsdatum")
        try:
            date.fromisoformat(birth_date)
        except ValueError as exc:
            msg = "the Standesamt answer has an invalid <geburtsdatum>"
            raise InvalidRegisterAnswerError(msg) from exc
        if sex not in _SEXES:
            msg = "the Standesamt answer has an invalid <geschlecht>"
            raise InvalidRegisterAnswerError(msg)
        parents = entry.findall(messages.tag("elternteil"))
        if len(parents) > 2:  # noqa: PLR2004
            msg = "the Standesamt answer names more than two parents"
            raise InvalidRegisterAnswerError(msg)
        parent_data = [{"given_names": _required(p, "vornamen"),
                        "family_name": _required(p, "familienname")} for p in parents]
        parent_ids = tuple(_required(p, "idnr") for p in parents)
        data = {
            "register_number": _required(entry, "registernummer"),
            "child_given_names": _required(child, "vornamen"),
            "child_family_name": _required(child, "familienname"),
            "child_sex": sex,
            "birth_date": birth_date,
            "birth_place": _required(place, "name"),
            "birth_place_ags": _required(place, "ags"),
            "parents": parent_data,
        }
        return data, (subject, *parent_ids)

    async def aclose(self) -> None:
        await self._client.aclose()
