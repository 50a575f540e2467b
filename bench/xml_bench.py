"""CPU time per operation of the Standesamt XML (issue 14): the ElementTree builders and
parser as they were (kept below: the same steps, shorter messages) against
connectors/xpersonenstand.py and connectors/birth.py as they are.

    .venv/bin/python -m bench.xml_bench [--rounds 15] [--calls 2000]

Each round times every operation ``--calls`` times for the old and for the new code, in
alternating order, with ``time.process_time`` (CPU time of this process: a figure the other
work on a shared machine hardly disturbs); the figure is the median over the rounds in CPU-us
per call. Before timing, the new builders' output is checked to be byte-identical to the old
ones' (the message id and the time left aside) and the old and new answer readers to agree.
Not part of the test suite; prints a table, and writes it as JSON with ``--out``.
"""

import argparse
import json
import platform
import re
import statistics
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors import birth
from connectors import xpersonenstand as new
from connectors._params import is_idnr_shaped, is_iso_date
from einmal.domain.registers import InvalidRegisterAnswerError

# -- the implementation before issue 14 (commit 84b9ad0) ------------------------------------

_OLD_ENCODING = re.compile(r"""\s*<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""")


def _old_parse_xml(raw: bytes) -> ET.Element:
    if len(raw) > 256 * 1024:
        raise new.UnsafeXmlError("XML message too large")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise new.UnsafeXmlError("XML messages must be UTF-8") from exc
    lowered = text.lower()
    if "<!doctype" in lowered or "<!entity" in lowered:
        raise new.UnsafeXmlError("DOCTYPE and ENTITY declarations are not allowed")
    declared = _OLD_ENCODING.match(text)
    if declared and declared.group(1).lower() not in {"utf-8", "utf8"}:
        raise new.UnsafeXmlError("XML messages must be UTF-8")
    return ET.fromstring(raw)  # noqa: S314 - the old code, measured; checked as above


def _old_header(parent: ET.Element, author: str, reader: str) -> None:
    head = ET.SubElement(parent, new.tag("nachrichtenkopf"))
    ET.SubElement(head, new.tag("nachrichtenID")).text = str(uuid.uuid4())
    ET.SubElement(head, new.tag("erstellungszeitpunkt")).text = datetime.now(UTC).isoformat()
    ET.SubElement(head, new.tag("autor")).text = author
    ET.SubElement(head, new.tag("leser")).text = reader


def _old_text(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, new.tag(name)).text = value


def _old_build_request(*, idnr: str, birth_date: str, family_name: str | None,
                       reader: str) -> bytes:
    root = ET.Element(new.tag(new.REQUEST))
    _old_header(root, "einmal-broker", reader)
    search = ET.SubElement(root, new.tag("suche"))
    _old_text(search, "idnr", idnr)
    _old_text(search, "geburtsdatum", birth_date)
    if family_name:
        _old_text(search, "familienname", family_name)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _old_build_answer(*, author: str, register_number: str, child: dict[str, str],
                      place_name: str, ags: str, parents: list[dict[str, str]]) -> bytes:
    root = ET.Element(new.tag(new.ANSWER))
    _old_header(root, author, "einmal-broker")
    entry = ET.SubElement(root, new.tag("geburtseintrag"))
    _old_text(entry, "registernummer", register_number)
    kind = ET.SubElement(entry, new.tag("kind"))
    for name in ("idnr", "vornamen", "familienname", "geschlecht", "geburtsdatum"):
        _old_text(kind, name, child[name])
    place = ET.SubElement(kind, new.tag("geburtsort"))
    _old_text(place, "name", place_name)
    _old_text(place, "ags", ags)
    for parent in parents:
        element = ET.SubElement(entry, new.tag("elternteil"))
        for name in ("idnr", "vornamen", "familienname"):
            if parent.get(name):
                _old_text(element, name, parent[name])
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _old_required(element: ET.Element, name: str) -> str:
    value = element.findtext(new.tag(name))
    if not value or not value.strip():
        raise InvalidRegisterAnswerError(f"the Standesamt answer lacks <{name}>")
    return value.strip()


def _old_read_answer(unverified: bytes, subject: str, ags: str, birth_date: str,
                     ) -> tuple[dict[str, Any], tuple[str, ...]]:
    try:
        root = _old_parse_xml(unverified)
    except (ET.ParseError, new.UnsafeXmlError) as exc:
        raise InvalidRegisterAnswerError("not well-formed, safe XML") from exc
    entry = root.find(new.tag("geburtseintrag"))
    if root.tag != new.tag(new.ANSWER) or entry is None:
        raise InvalidRegisterAnswerError("not a stA2EGS.Geburt.138011 message")
    child = entry.find(new.tag("kind"))
    place = child.find(new.tag("geburtsort")) if child is not None else None
    if child is None or place is None:
        raise InvalidRegisterAnswerError("lacks <kind> or <geburtsort>")
    if _old_required(child, "idnr") != subject:
        raise InvalidRegisterAnswerError("another person")
    answered_date = _old_required(child, "geburtsdatum")
    if not is_iso_date(answered_date):
        raise InvalidRegisterAnswerError("invalid <geburtsdatum>")
    if answered_date != birth_date:
        raise InvalidRegisterAnswerError("another date of birth")
    sex = _old_required(child, "geschlecht")
    if sex not in {"d", "m", "w", "x"}:
        raise InvalidRegisterAnswerError("invalid <geschlecht>")
    if _old_required(place, "ags") != ags:
        raise InvalidRegisterAnswerError("another place of birth")
    parents = entry.findall(new.tag("elternteil"))
    if len(parents) > 2:
        raise InvalidRegisterAnswerError("more than two parents")
    parent_ids: list[str] = []
    for parent in parents:
        idnr = parent.findtext(new.tag("idnr"))
        if idnr is not None:
            if not is_idnr_shaped(idnr.strip()):
                raise InvalidRegisterAnswerError("malformed parent <idnr>")
            parent_ids.append(idnr.strip())
    data = {
        "register_number": _old_required(entry, "registernummer"),
        "child_given_names": _old_required(child, "vornamen"),
        "child_family_name": _old_required(child, "familienname"),
        "child_sex": sex,
        "birth_date": answered_date,
        "birth_place": _old_required(place, "name"),
        "birth_place_ags": ags,
        "parents": [{"given_names": _old_required(p, "vornamen"),
                     "family_name": _old_required(p, "familienname")} for p in parents],
    }
    return data, (subject, *parent_ids)


# -- the workload: the Standesamt exchange of the load bench, one birth ---------------------

CHILD, AGS, BORN = "19573248168", "04011000", "2026-10-12"
_CHILD = {"idnr": CHILD, "vornamen": "Mia Sophie", "familienname": "Schmidt",
          "geschlecht": "w", "geburtsdatum": BORN}
_PARENTS = [{"idnr": "40329576010", "vornamen": "Anna", "familienname": "Schmidt"},
            {"idnr": "87045372919", "vornamen": "Ben", "familienname": "Schmidt"}]


def _request(build: Callable[..., bytes]) -> bytes:
    return build(idnr=CHILD, birth_date=BORN, family_name="Schmidt", reader=f"standesamt:{AGS}")


def _answer(build: Callable[..., bytes]) -> bytes:
    return build(author=f"standesamt:{AGS}", register_number="G 2211/2026", child=_CHILD,
                 place_name="Bremen", ags=AGS, parents=_PARENTS)

_HEAD = re.compile(rb"<ns0:nachrichtenID>[^<]*</ns0:nachrichtenID>"
                   rb"<ns0:erstellungszeitpunkt>[^<]*</ns0:erstellungszeitpunkt>")


def _operations() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    request, answer = _request(_old_build_request), _answer(_old_build_answer)
    return {  # operation: (old, new)
        "build_request (broker)": (lambda: _request(_old_build_request),
                                   lambda: _request(new.build_request)),
        "build_answer (registers)": (lambda: _answer(_old_build_answer),
                                     lambda: _answer(new.build_answer)),
        "parse_xml request (registers)": (lambda: _old_parse_xml(request),
                                          lambda: new.parse_xml(request)),
        "parse_xml answer": (lambda: _old_parse_xml(answer), lambda: new.parse_xml(answer)),
        "birth._parse answer (broker)": (lambda: _old_read_answer(answer, CHILD, AGS, BORN),
                                         lambda: birth._parse(answer, CHILD, AGS, BORN)),
    }


def _check() -> None:
    """The new code writes the old bytes and reads an answer to the same proof."""
    pairs = [(_request(_old_build_request), _request(new.build_request)),
             (_answer(_old_build_answer), _answer(new.build_answer))]
    for old_bytes, new_bytes in pairs:
        if _HEAD.sub(b"", old_bytes) != _HEAD.sub(b"", new_bytes):
            sys.exit("the new builder's bytes differ from the old one's")
    answer = pairs[1][1]
    if _old_read_answer(answer, CHILD, AGS, BORN) != birth._parse(answer, CHILD, AGS, BORN):
        sys.exit("the old and the new reader disagree")


def _cpu_us(function: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - started) / calls * 1e6


def main(rounds: int, calls: int) -> dict[str, Any]:
    _check()
    operations = _operations()
    samples: dict[str, tuple[list[float], list[float]]] = {
        name: ([], []) for name in operations}
    for pair in operations.values():  # warm up
        for function in pair:
            _cpu_us(function, calls // 10 or 1)
    for round_no in range(rounds):
        for name, pair in operations.items():
            order = (0, 1) if round_no % 2 == 0 else (1, 0)
            for variant in order:
                samples[name][variant].append(_cpu_us(pair[variant], calls))
    figures = {name: {"old_us": round(statistics.median(old), 2),
                      "new_us": round(statistics.median(now), 2),
                      "ratio": round(statistics.median(old) / statistics.median(now), 2)}
               for name, (old, now) in samples.items()}
    return {"bench": "xml", "rounds": rounds, "calls": calls,
            "python": platform.python_version(), "figures": figures}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    result = main(args.rounds, args.calls)
    print(f"{'CPU-us per call (median of ' + str(args.rounds) + ' rounds)':40s}"
          f"{'old':>9s}{'new':>9s}{'old/new':>9s}")
    for name, figure in result["figures"].items():
        print(f"{name:40s}{figure['old_us']:9.2f}{figure['new_us']:9.2f}{figure['ratio']:9.2f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
