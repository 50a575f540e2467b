"""The Standesamt message format: a small XML modelled on XPersonenstand's Elterngeldstelle
retrieval (``stA2EGS.Geburt.138010`` request, ``138011`` answer). Shared by the simulator
(server side) and the birth connector (client side).

The messages are written from string templates, byte for byte what ``ElementTree.tostring``
wrote before (declaration, ``ns0`` prefix, ``<x />`` for an empty text, ``&amp; &lt; &gt;``
in texts, lone surrogates as character references): building the tree and serialising it
cost about 8 times the template (bench/xml_bench.py). Parsing stays ElementTree's (C over
expat): expat with Python handlers is slower, and lxml, though it parses in half the time,
is slower once the answer's dozen elements are read (each one a new proxy object).
"""

import os
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

__all__ = ["NS", "UnsafeXmlError", "build_answer", "build_error", "build_request",
           "parse_xml", "tag"]

NS = "urn:einmal:xpersonenstand-sim:1"
REQUEST = "stA2EGS.Geburt.138010"
ANSWER = "stA2EGS.Geburt.138011"
ERROR = "stA2EGS.Fehler.0000"
_MAX_BYTES = 256 * 1024
_ENCODING = re.compile(rb"""\s*<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""")
_DECLARATION = "<?xml version='1.0' encoding='utf-8'?>\n"


class UnsafeXmlError(ValueError):
    """DOCTYPE/ENTITY declarations are refused (no entity expansion attacks)."""


def tag(name: str) -> str:
    return f"{{{NS}}}{name}"


def parse_xml(raw: bytes) -> ET.Element:
    """Parse untrusted XML: UTF-8 only, no DTDs and no entities (checked before parsing, as
    defusedxml is not a dependency).

    The checks read the bytes expat will read. A NUL byte is refused first: XML allows no
    U+0000, and without one expat cannot take the bytes for UTF-16 (it does so from a leading
    ``<\\0`` even when told UTF-8), where a DOCTYPE would hide from the byte checks. A DOCTYPE
    or ENTITY needs a ``!``: the case-insensitive search runs only when there is one (on the
    bytes: in UTF-8 an ASCII byte is always that ASCII character)."""
    if len(raw) > _MAX_BYTES:
        msg = "XML message too large"
        raise UnsafeXmlError(msg)
    if b"\x00" in raw:
        msg = "XML messages must be UTF-8 without NUL characters"
        raise UnsafeXmlError(msg)
    try:
        raw.decode("utf-8")  # a leading UTF-8 BOM is valid UTF-8; UTF-16's BOMs are not
    except UnicodeDecodeError as exc:
        msg = "XML messages must be UTF-8"
        raise UnsafeXmlError(msg) from exc
    if b"!" in raw:
        lowered = raw.lower()
        if b"<!doctype" in lowered or b"<!entity" in lowered:
            msg = "DOCTYPE and ENTITY declarations are not allowed"
            raise UnsafeXmlError(msg)
    declared = _ENCODING.match(raw.removeprefix(b"\xef\xbb\xbf"))
    if declared and declared.group(1).lower() not in {b"utf-8", b"utf8"}:
        msg = "XML messages must be UTF-8"
        raise UnsafeXmlError(msg)
    return ET.fromstring(raw)  # noqa: S314 - UTF-8 only, DTDs and entities refused above


def _escape(text: str) -> str:
    """A text's escaping as ElementTree's ``_escape_cdata``: ``&``, ``<`` and ``>`` only."""
    try:
        if "&" in text:
            text = text.replace("&", "&amp;")
        if "<" in text:
            text = text.replace("<", "&lt;")
        if ">" in text:
            text = text.replace(">", "&gt;")
    except (TypeError, AttributeError) as exc:
        msg = f"cannot serialize {text!r} (type {type(text).__name__})"
        raise TypeError(msg) from exc
    return text


def _text(name: str, value: str | None) -> str:
    """One element with a text; ElementTree's short form for an empty one."""
    if not value:
        return f"<ns0:{name} />"
    return f"<ns0:{name}>{_escape(value)}</ns0:{name}>"


def _message_id() -> str:
    """A random (version 4) UUID in its canonical form, as ``str(uuid.uuid4())`` gives, in
    less than half its time."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _message(root: str, author: str, reader: str, body: str) -> bytes:
    return (f'{_DECLARATION}<ns0:{root} xmlns:ns0="{NS}"><ns0:nachrichtenkopf>'
            f"{_text('nachrichtenID', _message_id())}"
            f"{_text('erstellungszeitpunkt', datetime.now(UTC).isoformat())}"
            f"{_text('autor', author)}{_text('leser', reader)}</ns0:nachrichtenkopf>"
            f"{body}</ns0:{root}>").encode("utf-8", "xmlcharrefreplace")


def build_request(*, idnr: str, birth_date: str, family_name: str | None, reader: str) -> bytes:
    name = _text("familienname", family_name) if family_name else ""
    return _message(REQUEST, "einmal-broker", reader,
                    f"<ns0:suche>{_text('idnr', idnr)}{_text('geburtsdatum', birth_date)}"
                    f"{name}</ns0:suche>")


def _parent(parent: dict[str, str]) -> str:
    fields = "".join([_text(name, parent[name]) for name in ("idnr", "vornamen", "familienname")
                      if parent.get(name)])  # a parent's IdNr is optional (a parent abroad)
    return f"<ns0:elternteil>{fields}</ns0:elternteil>" if fields else "<ns0:elternteil />"


def build_answer(*, author: str, register_number: str, child: dict[str, str],
                 place_name: str, ags: str, parents: list[dict[str, str]]) -> bytes:
    kind = "".join([_text(name, child[name]) for name in
                    ("idnr", "vornamen", "familienname", "geschlecht", "geburtsdatum")])
    return _message(ANSWER, author, "einmal-broker",
                    f"<ns0:geburtseintrag>{_text('registernummer', register_number)}"
                    f"<ns0:kind>{kind}<ns0:geburtsort>{_text('name', place_name)}"
                    f"{_text('ags', ags)}</ns0:geburtsort></ns0:kind>"
                    f"{''.join([_parent(parent) for parent in parents])}</ns0:geburtseintrag>")


def build_error(*, author: str, code: str, text: str) -> bytes:
    return _message(ERROR, author, "einmal-broker",
                    f"<ns0:fehler>{_text('code', code)}{_text('text', text)}</ns0:fehler>")
