"""Register simulators as Litestar handlers under ``/registers`` (synthetic data, demo only).

* ``POST /registers/standesamt/{ags}/geburt``             XML (messages.py), one per AGS
* ``GET  /registers/sorge/{land}/records/{idnr}?as_of=``   JSON, one Sorgeregister per Land
* ``GET  /registers/income/persons/{idnr}/months?from=&to=`` JSON, the income register
* ``GET|PUT /registers/_knobs``                           latency and failure rate per register
* ``/registers/{standesamt/{ags},sorge/{land},income}/dsc/...`` each register's source interface
  for the Datenschutzcockpit (connectors/protocol/source.py)

Every register handler first applies its knobs: ``latency_ms`` of added delay, then a 503 with
probability ``failure_rate`` (seeded, so a run is repeatable). Every answered query is logged
in the registers' protocol (connectors/protocol: one store, a ``register`` column) before the
answer leaves; a register that cannot log it answers 503 instead.

The population does not change while the registers run: what an answer holds about a person
(its content tree for the protocol, the JSON answer) is made once per distinct query and kept
(bounded, ``_ANSWERS``); what is new on every query - the protocol entry, the XML message's id
and time - is made on every query.
"""

import asyncio
import functools
import random
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from litestar import Litestar, Request, Response, Router, get, post, put
from litestar.params import FromPath, FromQuery

from connectors import xpersonenstand as messages
from connectors.directory import LAND_NAMES, MUNICIPALITIES
from connectors.income import REGISTER as INCOME_REGISTER
from connectors.protocol import (
    ProtocolConfig,
    RegisterProtocol,
    Source,
    source_handlers,
)
from connectors.protocol.headers import requester_from_asgi
from connectors.simulators.population import Child, Family, Population, generate_population
from einmal.asgi import header_values, read_body
from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.problems import ProblemError, problem_response
from einmal.store import StoreError
from einmal_client.sources import ContentGroup, content_groups

__all__ = ["KINDS", "Knobs", "RegisterKind", "RegistersComponent", "SimulatorSettings",
           "create_registers_app", "create_registers_router"]

RegisterKind = Literal["standesamt", "sorge", "income"]
KINDS: tuple[RegisterKind, ...] = ("standesamt", "sorge", "income")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class SimulatorSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of the simulated registers.

    ``today`` is the Sorgeregister's default ``as_of`` when a query names none
    (None: the UTC date at request time; the connectors always send ``as_of``).
    ``protocol``: where the registers keep their protocol (None: in memory, random keys, and
    a source interface that answers nobody).
    """

    seed: int = 1
    families: int = 300
    latency_ms: int = 0
    failure_rate: float = 0.0
    today: date | None = None
    protocol: ProtocolConfig | None = None


class KnobsIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] | None = None
    failure_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    register: RegisterKind | None = None  # None: every register
    #: the source interface's (``<register>/dsc/...``) answer latency, for one source
    #: (``source``, e.g. "standesamt:04011000") or, without it, for every source
    source_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] | None = None
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


#: the key of ``Knobs.values["dsc"]`` that holds every source's latency
ALL_SOURCES = "*"


class Knobs:
    """Per-register latency and failure rate, and the source interface's latency per source,
    changeable at runtime (fault tests, the DSC bench)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.values: dict[str, dict[str, float]] = {
            kind: {"latency_ms": settings.latency_ms, "failure_rate": settings.failure_rate}
            for kind in KINDS}
        self.values["dsc"] = {ALL_SOURCES: 0}
        self._rng = random.Random(settings.seed)  # noqa: S311 - repeatable faults, not secrets

    def change(self, change: KnobsIn) -> None:
        for kind in [change.register] if change.register else KINDS:
            if change.latency_ms is not None:
                self.values[kind]["latency_ms"] = change.latency_ms
            if change.failure_rate is not None:
                self.values[kind]["failure_rate"] = change.failure_rate
        if change.source_latency_ms is not None:
            if change.source is None:  # every source: one value, the per-source ones go
                self.values["dsc"] = {ALL_SOURCES: change.source_latency_ms}
            else:
                self.values["dsc"][change.source] = change.source_latency_ms

    async def delay_source(self, source_id: str) -> None:
        """Sleep the source interface's latency for ``source_id`` (its own, else every
        source's)."""
        latencies = self.values["dsc"]
        latency_ms = latencies.get(source_id, latencies[ALL_SOURCES])
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)

    async def apply(self, kind: RegisterKind) -> Response[bytes] | None:
        """Sleep the latency; return a 503 response with the failure rate, else None."""
        knobs = self.values[kind]
        if knobs["latency_ms"]:
            await asyncio.sleep(knobs["latency_ms"] / 1000)
        if knobs["failure_rate"] and self._rng.random() < knobs["failure_rate"]:
            return Response(content=b'{"status":"unavailable"}', status_code=503,
                            media_type="application/json", headers={"retry-after": "1"})
        return None


def _json(content: Any, status: int = 200) -> Response[bytes]:
    return Response(content=msgspec.json.encode(content), status_code=status,
                    media_type="application/json")


def _xml(content: bytes, status: int = 200) -> Response[bytes]:
    return Response(content=content, status_code=status, media_type="application/xml")


_INCOME_NAME = "Einkommensregister (Rentenversicherung)"
_SEX = {"d": "divers", "m": "männlich", "w": "weiblich", "x": "ohne Angabe"}
_CUSTODY = {"joint": "gemeinsame Sorge", "sole": "alleinige Sorge", "none": "keine Sorge"}
_BASIS = {"marriage_at_birth": "Ehe bei Geburt", "declaration": "Sorgeerklärung",
          "marriage": "Eheschließung nach der Geburt", "court": "gerichtliche Entscheidung",
          "law": "Gesetz"}
_EMPLOYMENT = {"employee": "Beschäftigung", "part_time": "Teilzeit", "minijob": "Minijob"}
_UNLOGGED = Response(content=b'{"status":"unavailable","detail":"protocol unavailable"}',
                     status_code=503, media_type="application/json")
#: the data categories a protocol entry names, per proof
_CATEGORIES = {proof: tuple(sorted(fields)) for proof, fields in PROOF_FIELDS.items()}
#: distinct answers kept per register kind (people x dates x periods asked)
_ANSWERS = 4096
_CONTENT_LENGTH = frozenset({b"content-length"})


class _Answer(NamedTuple):
    """What a register answers about one person, made once per distinct query: the protocol
    entry's content, the others it names (IdNrs), and the JSON answer (the XML one is made
    per query: a message has its own id and time)."""

    content: tuple[ContentGroup, ...]
    concerned: tuple[str, ...]
    body: bytes = b""


async def _body(request: Request[Any, Any, Any]) -> bytes:
    """``await request.body()`` - the same limit and errors (413, 400) - read straight from
    ASGI (einmal/asgi.py), without the ``Headers`` and the stream Litestar builds for it."""
    return await read_body(request, header_values(request.scope["headers"],
                                                  _CONTENT_LENGTH).get(b"content-length"))


async def _logged(protocol: RegisterProtocol, request: Request[Any, Any, Any], *,
                  register: str, name: str, subject: str, answer: _Answer,
                  proof: ProofType) -> bool:
    """Log the answer about to be sent (§ 9 IDNrG); False if it could not be logged."""
    try:
        await protocol.record(register=register, source_name=name, subject=subject,
                              concerned=answer.concerned, content=answer.content,
                              requester=requester_from_asgi(request.scope["headers"]),
                              data_categories=_CATEGORIES[proof])
    except StoreError:
        return False
    return True


def _custody_as_of(family: Family, child: Child, as_of: date) -> dict[str, Any]:
    """The custody in force on ``as_of`` (the history: marriage after birth, court orders)."""
    if as_of < child.birth_date:
        return {"custody": "none", "holders": [], "basis": "law", "since": None}
    period = [p for p in child.custody if p.since <= as_of][-1]
    holders = [{"idnr": family.parents[i].idnr, "given_names": family.parents[i].given_names,
                "family_name": family.parents[i].family_name, "role": family.parents[i].role}
               for i in period.holders]
    return {"custody": period.custody, "holders": holders, "basis": period.basis,
            "since": period.since.isoformat()}


class _Sorgeregister:
    """The federated Sorgeregister: per Land its own records, plus an index (IdNr -> Land)
    of what every other Land holds (the target design of the slides)."""

    def __init__(self, population: Population) -> None:
        self.index: dict[str, str] = {idnr: child.custody_land
                                      for idnr, (_, child) in population.children.items()}
        self.records = population.children


def _standesamt_handler(population: Population, knobs: Knobs,
                        protocol: RegisterProtocol) -> Any:
    @functools.lru_cache(maxsize=_ANSWERS)
    def birth(ags: str, idnr: str) -> _Answer:
        family, child = population.children[idnr]
        municipality = MUNICIPALITIES[ags]
        return _Answer(content_groups({
            "Geburtseintrag": {"Registernummer": child.register_number,
                               "Standesamt": f"Standesamt {municipality.name}"},
            "Lebensdaten": {"Identifikationsnummer": child.idnr, "Vornamen": child.given_names,
                            "Familienname": child.family_name,
                            "Geschlecht": _SEX.get(child.sex, child.sex),
                            "Geburtsdatum": child.birth_date,
                            "Geburtsort": f"{municipality.name} ({ags})"},
            "Eltern": {"Elternteil": [{"Identifikationsnummer": p.idnr,
                                       "Vornamen": p.given_names,
                                       "Familienname": p.family_name}
                                      for p in family.parents]}}),
            tuple(p.idnr for p in family.parents))

    @post("/standesamt/{ags:str}/geburt", include_in_schema=False, status_code=200)
    async def standesamt(ags: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        author = f"standesamt:{ags}"
        if (failure := await knobs.apply("standesamt")) is not None:
            return failure
        municipality = MUNICIPALITIES.get(ags)
        if municipality is None:
            return _xml(messages.build_error(author=author, code="unbekannt",
                                             text="Kein Standesamt unter diesem Schlüssel."), 404)
        try:
            root = messages.parse_xml(await _body(request))
            search = root.find(messages.tag("suche"))
            if root.tag != messages.tag(messages.REQUEST) or search is None:
                raise ValueError("not a 138010 request")
            idnr = search.findtext(messages.tag("idnr"), "").strip()
            birth_date = search.findtext(messages.tag("geburtsdatum"), "").strip()
            family_name = search.findtext(messages.tag("familienname"))
            if not idnr or not birth_date:
                raise ValueError("idnr and geburtsdatum are required")
        except (ValueError, SyntaxError):  # ET.ParseError is a SyntaxError
            return _xml(messages.build_error(author=author, code="ungueltig",
                                             text="Die Anfrage ist ungültig."), 400)
        found = population.children.get(idnr)
        if (found is None or found[1].place_of_birth != ags  # held by another Standesamt
                or found[1].birth_date.isoformat() != birth_date
                or (family_name and family_name.strip() != found[1].family_name)):
            return _xml(messages.build_error(author=author, code="nicht-gefunden",
                                             text="Kein Geburtseintrag gefunden."), 404)
        family, child = found
        if not await _logged(protocol, request, register=author,
                             name=f"Standesamt {municipality.name}", subject=idnr,
                             answer=birth(ags, idnr), proof=ProofType.BIRTH):
            return _UNLOGGED
        return _xml(messages.build_answer(
            author=author, register_number=child.register_number,
            child={"idnr": child.idnr, "vornamen": child.given_names,
                   "familienname": child.family_name, "geschlecht": child.sex,
                   "geburtsdatum": child.birth_date.isoformat()},
            place_name=municipality.name, ags=ags,
            parents=[{"idnr": p.idnr, "vornamen": p.given_names, "familienname": p.family_name}
                     for p in family.parents]))

    return standesamt


def _sorge_handler(register: _Sorgeregister, knobs: Knobs, settings: SimulatorSettings,
                   protocol: RegisterProtocol) -> Any:
    @functools.lru_cache(maxsize=_ANSWERS)
    def custody(land: str, idnr: str, when: date) -> _Answer:
        family, child = register.records[idnr]
        record = _custody_as_of(family, child, when)
        content = content_groups({
            "Sorgerecht": {"Stichtag": when, "Sorge": _CUSTODY[record["custody"]],
                           "Grundlage": _BASIS.get(record["basis"], record["basis"]),
                           "Seit": record["since"],
                           "Register": f"Sorgeregister {LAND_NAMES[land]}"},
            "Kind": {"Identifikationsnummer": idnr},
            "Sorgeberechtigte": {"Person": [
                {"Identifikationsnummer": h["idnr"], "Vornamen": h["given_names"],
                 "Familienname": h["family_name"], "Rolle": h["role"]}
                for h in record["holders"]]}})
        return _Answer(content, tuple(h["idnr"] for h in record["holders"]),
                       msgspec.json.encode({"status": "found", "land": land, "idnr": idnr,
                                            "as_of": when.isoformat(), **record}))

    @get("/sorge/{land:str}/records/{idnr:str}", include_in_schema=False)
    async def sorgeregister(land: FromPath[str], idnr: FromPath[str],
                            request: Request[Any, Any, Any],
                            as_of: FromQuery[str | None] = None) -> Response[bytes]:
        if (failure := await knobs.apply("sorge")) is not None:
            return failure
        if land not in LAND_NAMES:
            return _json({"status": "unknown_register"}, 404)
        try:
            when = (date.fromisoformat(as_of) if as_of
                    else settings.today or datetime.now(UTC).date())
        except ValueError:
            return _json({"status": "invalid_request", "detail": "as_of: YYYY-MM-DD"}, 400)
        holder = register.index.get(idnr)
        if holder is None:
            return _json({"status": "not_found"}, 404)
        if holder != land:  # this Land's index of the other Länder's holdings
            return _json({"status": "held_elsewhere", "land": holder})
        answer = custody(land, idnr, when)
        if not await _logged(protocol, request, register=f"sorgeregister:{land}",
                             name=f"Sorgeregister {LAND_NAMES[land]}", subject=idnr,
                             answer=answer, proof=ProofType.CUSTODY):
            return _UNLOGGED
        return Response(content=answer.body, media_type="application/json")

    return sorgeregister


def _income_handler(population: Population, knobs: Knobs, protocol: RegisterProtocol) -> Any:
    @functools.lru_cache(maxsize=_ANSWERS)
    def months_of(idnr: str, first: str, last: str) -> _Answer:
        parent = population.parents[idnr][1]
        months = [{"month": month, "gross_eur": eur, "employment": kind}
                  for month, (eur, kind) in sorted(parent.income.items())
                  if first <= month <= last]
        content = content_groups({
            "Zeitraum": {"Identifikationsnummer": idnr, "Von": first, "Bis": last},
            "Monatsverdienste": {"Monat": [
                {"Monat": m["month"], "Bruttoentgelt (EUR)": m["gross_eur"],
                 "Art": _EMPLOYMENT.get(m["employment"], m["employment"])} for m in months]}})
        return _Answer(content, (), msgspec.json.encode(
            {"status": "found", "idnr": idnr, "months": months}))

    @get("/income/persons/{idnr:str}/months", include_in_schema=False)
    async def income(idnr: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        if (failure := await knobs.apply("income")) is not None:
            return failure
        first, last = request.query_params.get("from", ""), request.query_params.get("to", "")
        if not _MONTH.match(first) or not _MONTH.match(last) or first > last:
            return _json({"status": "invalid_request",
                          "detail": "from and to: months YYYY-MM, from <= to"}, 400)
        found = population.parents.get(idnr)
        if found is None:
            return _json({"status": "not_found"}, 404)
        parent = found[1]
        if parent.income_profile == "self_employed":
            return _json({"status": "not_held",
                          "detail": "not held by this register: Einkommen Selbständiger führt "
                                    "dieses Register nicht."}, 404)
        answer = months_of(idnr, first, last)
        if not await _logged(protocol, request, register=INCOME_REGISTER, name=_INCOME_NAME,
                             subject=idnr, answer=answer, proof=ProofType.INCOME):
            return _UNLOGGED
        return Response(content=answer.body, media_type="application/json")

    return income


def _knob_handlers(knobs: Knobs) -> list[Any]:
    @get("/_knobs", include_in_schema=False)
    async def read_knobs() -> Response[bytes]:
        return _json(knobs.values)

    @put("/_knobs", include_in_schema=False)
    async def set_knobs(request: Request[Any, Any, Any]) -> Response[bytes]:
        try:
            change = msgspec.json.decode(await _body(request), type=KnobsIn)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _json({"status": "invalid_request", "detail": str(exc)}, 400)
        knobs.change(change)
        return _json(knobs.values)

    return [read_knobs, set_knobs]


def _standesamt_source(params: Mapping[str, Any]) -> Source | None:
    municipality = MUNICIPALITIES.get(str(params.get("ags")))
    if municipality is None:
        return None
    return Source(id=f"standesamt:{municipality.ags}", name=f"Standesamt {municipality.name}")


def _sorge_source(params: Mapping[str, Any]) -> Source | None:
    land = str(params.get("land"))
    if land not in LAND_NAMES:
        return None
    return Source(id=f"sorgeregister:{land}", name=f"Sorgeregister {LAND_NAMES[land]}")


def _income_source(_params: Mapping[str, Any]) -> Source | None:
    return Source(id=INCOME_REGISTER, name=_INCOME_NAME)


def _problem(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for ProblemError only
    return problem_response(exc, request)


def create_registers_router(settings: SimulatorSettings,
                            population: Population | None = None,
                            protocol: RegisterProtocol | None = None) -> Router:
    """All simulated registers under ``/registers``, sharing one population, one knob set and
    one protocol (``protocol``, or one made from ``settings.protocol``), each with its source
    interface under ``<register>/dsc``."""
    people = population or generate_population(settings.seed, settings.families)
    knobs = Knobs(settings)
    log = protocol or RegisterProtocol(settings.protocol)
    resolvers = (_standesamt_source, _sorge_source, _income_source)

    async def source_latency(request: Request[Any, Any, Any]) -> None:
        """The knob ``source_latency_ms`` of the source asked (before its handler runs)."""
        for resolve in resolvers:
            source = resolve(request.path_params)
            if source is not None:
                await knobs.delay_source(source.id)
                return

    sources = Router(path="/", before_request=source_latency, route_handlers=[
        *source_handlers(log, "/standesamt/{ags:str}/dsc", _standesamt_source),
        *source_handlers(log, "/sorge/{land:str}/dsc", _sorge_source),
        *source_handlers(log, "/income/dsc", _income_source)])
    handlers = [_standesamt_handler(people, knobs, log),
                _sorge_handler(_Sorgeregister(people), knobs, settings, log),
                _income_handler(people, knobs, log), *_knob_handlers(knobs), sources]
    return Router(path="/registers", route_handlers=handlers,
                  exception_handlers={ProblemError: _problem})


class RegistersComponent:
    """The simulated registers as a component of the process (``einmal_app``): the router,
    and the protocol's start (tables, retention sweeper) and stop."""

    name = "registers"

    def __init__(self, settings: SimulatorSettings, population: Population | None = None,
                 protocol: RegisterProtocol | None = None) -> None:
        self.protocol = protocol or RegisterProtocol(settings.protocol)
        self.router = create_registers_router(settings, population, self.protocol)

    async def start(self) -> None:
        await self.protocol.start()

    async def stop(self) -> None:
        await self.protocol.stop()


def create_registers_app(settings: SimulatorSettings | None = None,
                         population: Population | None = None,
                         protocol: RegisterProtocol | None = None) -> Litestar:
    """The registers alone (tests, or ``uvicorn --factory`` style standalone use)."""
    component = RegistersComponent(settings or SimulatorSettings(), population, protocol)
    return Litestar([component.router], logging_config=None, openapi_config=None,
                    on_startup=[component.start], on_shutdown=[component.stop])
