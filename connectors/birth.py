"""Birth proofs from the Standesamt of the place of birth (XML, stA2EGS.Geburt.138010/138011).

Parameters: ``place_of_birth`` (AGS, 8 digits), ``birth_date`` (YYYY-MM-DD), optional
``family_name``; the subject is the child's IdNr. The AGS routes the query through the
directory to the one Standesamt that keeps the record.
"""

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from connectors import xpersonenstand as messages
from connectors._http import RegisterClient, raise_for_client_error
from connectors._params import is_idnr_shaped, is_iso_date, reject_unknown
from connectors.directory import Directory
from connectors.protocol.headers import requester_headers
from einmal.domain.proofs import ProofType
from einmal.domain.registers import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    ProofData,
    Requester,
    RoutingError,
)

__all__ = ["BirthConnector"]

_AGS = re.compile(r"^\d{8}$")
_SEXES = frozenset({"d", "m", "w", "x"})
_MAX_NAME = 100
_MAX_PARENTS = 2
# the answer's qualified tags, written once (``messages.tag`` on each of the ~20 lookups cost
# about 1 of the 26 CPU-us an answer took to read; bench/xml_bench.py)
_ANSWER = messages.tag(messages.ANSWER)
_ENTRY, _CHILD, _PLACE, _PARENT = (messages.tag(name) for name in (
    "geburtseintrag", "kind", "geburtsort", "elternteil"))
_TAGS = {name: messages.tag(name) for name in (
    "registernummer", "idnr", "vornamen", "familienname", "geschlecht", "geburtsdatum", "name",
    "ags")}


def _required(element: ET.Element, name: str) -> str:
    value = element.findtext(_TAGS[name])
    if not value or not value.strip():
        msg = f"the Standesamt answer lacks <{name}>"
        raise InvalidRegisterAnswerError(msg)
    return value.strip()


class BirthConnector:
    """Asks the Standesamt of the place of birth; one XML retrieval per proof."""

    proof_type = ProofType.BIRTH

    def __init__(self, directory: Directory, client: RegisterClient) -> None:
        self._directory = directory
        self._client = client

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        reject_unknown(parameters, {"place_of_birth", "birth_date", "family_name"}, "birth")
        place = parameters.get("place_of_birth")
        if not isinstance(place, str) or not _AGS.match(place):
            msg = "place_of_birth: the 8-digit municipality key (AGS) of the place of birth"
            raise InvalidParametersError(msg)
        if not is_iso_date(parameters.get("birth_date")):
            msg = "birth_date: the date of birth as YYYY-MM-DD"
            raise InvalidParametersError(msg)
        family_name = parameters.get("family_name")
        if family_name is not None and (not isinstance(family_name, str)
                                        or not 0 < len(family_name.strip()) <= _MAX_NAME):
            msg = f"family_name: optional, 1-{_MAX_NAME} characters"
            raise InvalidParametersError(msg)

    async def fetch(self, subject: str, parameters: Mapping[str, Any], *,
                    requester: Requester | None = None) -> ProofData:
        self.check_parameters(parameters)
        ags: str = parameters["place_of_birth"]
        route = self._directory.standesamt(ags)
        if route is None:
            msg = f"no Standesamt is registered for municipality {ags}"
            raise RoutingError(msg)
        municipality, url = route
        register = f"standesamt:{municipality.ags}"
        body = messages.build_request(idnr=subject, birth_date=parameters["birth_date"],
                                      family_name=parameters.get("family_name"), reader=register)
        # NOTE: a POST, but a read-only retrieval: RegisterClient retries it like a GET.
        response = await self._client.request(
            "POST", url, register=register, content=body,
            headers={"content-type": "application/xml", "accept": "application/xml",
                     **requester_headers(requester)})
        raise_for_client_error(response, register)
        data, concerned = _parse(response.content, subject, ags, parameters["birth_date"])
        return ProofData(proof_type=self.proof_type, issuer=register,
                         issuer_name=f"Standesamt {municipality.name}", data=data,
                         concerned=concerned, route=(register,))

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(unverified: bytes, subject: str, ags: str, birth_date: str,
           ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Validate a 138011 answer and map it to the birth proof's fields."""
    try:
        root = messages.parse_xml(unverified)
    except (ET.ParseError, messages.UnsafeXmlError) as exc:
        msg = "the Standesamt answer is not well-formed, safe XML"
        raise InvalidRegisterAnswerError(msg) from exc
    entry = root.find(_ENTRY)
    if root.tag != _ANSWER or entry is None:
        msg = "the Standesamt answer is not a stA2EGS.Geburt.138011 message"
        raise InvalidRegisterAnswerError(msg)
    child = entry.find(_CHILD)
    place = child.find(_PLACE) if child is not None else None
    if child is None or place is None:
        msg = "the Standesamt answer lacks <kind> or <geburtsort>"
        raise InvalidRegisterAnswerError(msg)
    if _required(child, "idnr") != subject:
        msg = "the Standesamt answered about another person"
        raise InvalidRegisterAnswerError(msg)
    answered_date = _required(child, "geburtsdatum")
    if not is_iso_date(answered_date):
        msg = "the Standesamt answer has an invalid <geburtsdatum>"
        raise InvalidRegisterAnswerError(msg)
    if answered_date != birth_date:
        msg = "the Standesamt answered with another date of birth than searched for"
        raise InvalidRegisterAnswerError(msg)
    sex = _required(child, "geschlecht")
    if sex not in _SEXES:
        msg = "the Standesamt answer has an invalid <geschlecht> (d/m/w/x)"
        raise InvalidRegisterAnswerError(msg)
    if _required(place, "ags") != ags:
        msg = "the Standesamt answered for another place of birth"
        raise InvalidRegisterAnswerError(msg)
    parents = entry.findall(_PARENT)
    if len(parents) > _MAX_PARENTS:
        msg = "the Standesamt answer names more than two parents"
        raise InvalidRegisterAnswerError(msg)
    parent_ids: list[str] = []
    for parent in parents:
        idnr = parent.findtext(_TAGS["idnr"])  # optional: not every parent has one
        if idnr is not None:
            if not is_idnr_shaped(idnr.strip()):
                msg = "the Standesamt answer has a malformed parent <idnr>"
                raise InvalidRegisterAnswerError(msg)
            parent_ids.append(idnr.strip())
    data = {
        "register_number": _required(entry, "registernummer"),
        "child_given_names": _required(child, "vornamen"),
        "child_family_name": _required(child, "familienname"),
        "child_sex": sex,
        "birth_date": answered_date,
        "birth_place": _required(place, "name"),
        "birth_place_ags": ags,
        "parents": [{"given_names": _required(p, "vornamen"),
                     "family_name": _required(p, "familienname")} for p in parents],
    }
    return data, (subject, *parent_ids)
