"""The Standesamt message format: a small XML modelled on XPersonenstand's Elterngeldstelle
retrieval (``stA2EGS.Geburt.138010`` request, ``138011`` answer). Shared by the simulator
(server side) and the birth connector (client side)."""

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

__all__ = ["NS", "UnsafeXmlError", "build_answer", "build_error", "build_request",
           "parse_xml", "tag"]

NS = "urn:einmal:xpersonenstand-sim:1"
REQUEST = "stA2EGS.Geburt.138010"
ANSWER = "stA2EGS.Geburt.138011"
ERROR = "stA2EGS.Fehler.0000"
_ENCODING = re.compile(r"""\s*<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""")


class UnsafeXmlError(ValueError):
    """DOCTYPE/ENTITY declarations are refused (no entity expansion attacks)."""


def tag(name: str) -> str:
    return f"{{{NS}}}{name}"


def parse_xml(raw: bytes) -> ET.Element:
    """Parse untrusted XML: UTF-8 only, no DTDs and no entities (checked before parsing, as
    defusedxml is not available). Another encoding could hide a DOCTYPE from the byte check."""
    if len(raw) > 256 * 1024:
        msg = "XML message too large"
        raise UnsafeXmlError(msg)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        msg = "XML messages must be UTF-8"
        raise UnsafeXmlError(msg) from exc
    lowered = text.lower()
    if "<!doctype" in lowered or "<!entity" in lowered:
        msg = "DOCTYPE and ENTITY declarations are not allowed"
        raise UnsafeXmlError(msg)
    declared = _ENCODING.match(text)
    if declared and declared.group(1).lower() not in {"utf-8", "utf8"}:
        msg = "XML messages must be UTF-8"
        raise UnsafeXmlError(msg)
    return ET.fromstring(raw)  # noqa: S314 - UTF-8 only, DTDs and entities refused above


def _header(parent: ET.Element, author: str, reader: str) -> None:
    head = ET.SubElement(parent, tag("nachrichtenkopf"))
    ET.SubElement(head, tag("nachrichtenID")).text = str(uuid.uuid4())
    ET.SubElement(head, tag("erstellungszeitpunkt")).text = datetime.now(UTC).isoformat()
    ET.SubElement(head, tag("autor")).text = author
    ET.SubElement(head, tag("leser")).text = reader


def _text(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, tag(name)).text = value


def build_request(*, idnr: str, birth_date: str, family_name: str | None, reader: str) -> bytes:
    root = ET.Element(tag(REQUEST))
    _header(root, "einmal-broker", reader)
    search = ET.SubElement(root, tag("suche"))
    _text(search, "idnr", idnr)
    _text(search, "geburtsdatum", birth_date)
    if family_name:
        _text(search, "familienname", family_name)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def build_answer(*, author: str, register_number: str, child: dict[str, str],
                 place_name: str, ags: str, parents: list[dict[str, str]]) -> bytes:
    root = ET.Element(tag(ANSWER))
    _header(root, author, "einmal-broker")
    entry = ET.SubElement(root, tag("geburtseintrag"))
    _text(entry, "registernummer", register_number)
    kind = ET.SubElement(entry, tag("kind"))
    for name in ("idnr", "vornamen", "familienname", "geschlecht", "geburtsdatum"):
        _text(kind, name, child[name])
    place = ET.SubElement(kind, tag("geburtsort"))
    _text(place, "name", place_name)
    _text(place, "ags", ags)
    for parent in parents:
        element = ET.SubElement(entry, tag("elternteil"))
        for name in ("idnr", "vornamen", "familienname"):
            if parent.get(name):  # a parent's IdNr is optional (e.g. a parent abroad)
                _text(element, name, parent[name])
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def build_error(*, author: str, code: str, text: str) -> bytes:
    root = ET.Element(tag(ERROR))
    _header(root, author, "einmal-broker")
    error = ET.SubElement(root, tag("fehler"))
    _text(error, "code", code)
    _text(error, "text", text)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
