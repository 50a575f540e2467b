"""Register simulators as Litestar handlers under ``/registers``.

* ``POST /registers/standesamt/{ags}/geburt``           XML (messages.py), one Standesamt per AGS
* ``GET  /registers/sorge/{land}/records/{idnr}?as_of``  JSON, one Sorgeregister per Land + index
* ``GET  /registers/income/persons/{idnr}/months?from&to`` JSON, the income register
* ``GET|PUT /registers/_knobs``                          latency and failure rate, per register
"""

import asyncio
import random
from datetime import UTC, date, datetime
from typing import Any, Literal

import msgspec
from litestar import Litestar, Request, Response, Router, get, post, put
from litestar.params import FromPath, FromQuery

from connectors.directory import LAND_NAMES, MUNICIPALITIES
from connectors.simulators import messages
from connectors.simulators.population import Child, Family, Population, generate_population

__all__ = ["Knobs", "SimulatorSettings", "create_registers_app", "create_registers_router"]

RegisterKind = Literal["standesamt", "sorge", "income"]
KINDS: tuple[RegisterKind, ...] = ("standesamt", "sorge", "income")


class SimulatorSettings(msgspec.Struct, frozen=True, kw_only=True):
    seed: int = 1
    families: int = 300
    latency_ms: int = 0
    failure_rate: float = 0.0


class KnobsIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    latency_ms: int | None = None
    failure_rate: float | None = None
    register: RegisterKind | None = None


class Knobs:
    """Per-register latency and failure rate, changeable at runtime (fault tests)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.values: dict[str, dict[str, float]] = {
            kind: {"latency_ms": settings.latency_ms, "failure_rate": settings.failure_rate}
            for kind in KINDS}
        self._rng = random.Random(settings.seed)

    async def apply(self, kind: RegisterKind) -> Response[bytes] | None:
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


def _custody_as_of(family: Family, child: Child, as_of: date) -> dict[str, Any]:
    if as_of < child.birth_date:
        return {"custody": "none", "holders": [], "basis": "not_born", "since": None}
    period = [p for p in child.custody if p.since <= as_of][-1]
    holders = [{"idnr": family.parents[i].idnr, "given_names": family.parents[i].given_names,
                "family_name": family.parents[i].family_name, "role": family.parents[i].role}
               for i in period.holders]
    return {"custody": period.custody, "holders": holders, "basis": period.basis,
            "since": period.since.isoformat()}


def _handlers(population: Population, knobs: Knobs) -> list[Any]:
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
            root = messages.parse_xml(await request.body())
            search = root.find(messages.tag("suche"))
            if root.tag != messages.tag(messages.REQUEST) or search is None:
                raise ValueError("not a 138010 request")  # noqa: TRY301
            idnr = search.findtext(messages.tag("idnr"), "")
            birth_date = search.findtext(messages.tag("geburtsdatum"), "")
            family_name = search.findtext(messages.tag("familienname"))
        except (ValueError, SyntaxError):
            return _xml(messages.build_error(author=author, code="ungueltig",
                                             text="Die Anfrage ist ungültig."), 400)
        found = population.children.get(idnr)
        if (found is None or found[1].place_of_birth != ags
                or found[1].birth_date.isoformat() != birth_date
                or (family_name and family_name != found[1].family_name)):
            return _xml(messages.build_error(author=author, code="nicht-gefunden",
                                             text="Kein Geburtseintrag gefunden."), 404)
        family, child = found
        answer = messages.build_answer(
            author=author, register_number=child.register_number,
            child={"idnr": child.idnr, "vornamen": child.given_names,
                   "familienname": child.family_name, "geschlecht": child.sex,
                   "geburtsdatum": child.birth_date.isoformat()},
            place_name=municipality.name, ags=ags,
            parents=[{"idnr": p.idnr, "vornamen": p.given_names, "familienname": p.family_name}
                     for p in family.parents])
        return _xml(answer)

    @get("/sorge/{land:str}/records/{idnr:str}", include_in_schema=False)
    async def sorgeregister(land: FromPath[str], idnr: FromPath[str],
                            as_of: FromQuery[str | None] = None) -> Response[bytes]:
        if (failure := await knobs.apply("sorge")) is not None:
            return failure
        if land not in LAND_NAMES:
            return _json({"status": "unknown_register"}, 404)
        try:
            when = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
        except ValueError:
            return _json({"status": "invalid_request", "detail": "as_of: YYYY-MM-DD"}, 400)
        found = population.children.get(idnr)
        if found is None:
            return _json({"status": "not_found"}, 404)
        family, child = found
        if child.custody_land != land:  # this register's index of the other Länder
            return _json({"status": "held_elsewhere", "land": child.custody_land})
        return _json({"status": "found", "land": land, "idnr": idnr, "as_of": when.isoformat(),
                      **_custody_as_of(family, child, when)})

    @get("/income/persons/{idnr:str}/months", include_in_schema=False)
    async def income(idnr: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        if (failure := await knobs.apply("income")) is not None:
            return failure
        first, last = request.query_params.get("from"), request.query_params.get("to")
        if not first or not last:
            return _json({"status": "invalid_request", "detail": "from and to (YYYY-MM)"}, 400)
        found = population.parents.get(idnr)
        if found is None:
            return _json({"status": "not_found"}, 404)
        parent = found[1]
        if parent.income_profile == "self_employed":
            return _json({"status": "not_held",
                          "detail": "Einkommen Selbständiger führt dieses Register nicht."}, 404)
        months = [{"month": month, "gross_eur": eur, "employment": kind}
                  for month, (eur, kind) in sorted(parent.income.items()) if first <= month <= last]
        return _json({"status": "found", "idnr": idnr, "months": months})

    @get("/_knobs", include_in_schema=False)
    async def read_knobs() -> Response[bytes]:
        return _json(knobs.values)

    @put("/_knobs", include_in_schema=False)
    async def set_knobs(request: Request[Any, Any, Any]) -> Response[bytes]:
        try:
            change = msgspec.json.decode(await request.body(), type=KnobsIn)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _json({"status": "invalid_request", "detail": str(exc)}, 400)
        for kind in [change.register] if change.register else KINDS:
            if change.latency_ms is not None:
                knobs.values[kind]["latency_ms"] = max(0, change.latency_ms)
            if change.failure_rate is not None:
                knobs.values[kind]["failure_rate"] = min(1.0, max(0.0, change.failure_rate))
        return _json(knobs.values)

    return [standesamt, sorgeregister, income, read_knobs, set_knobs]


def create_registers_router(settings: SimulatorSettings,
                            population: Population | None = None) -> Router:
    people = population or generate_population(settings.seed, settings.families)
    knobs = Knobs(settings)
    return Router(path="/registers", route_handlers=_handlers(people, knobs))


def create_registers_app(settings: SimulatorSettings | None = None) -> Litestar:
    return Litestar([create_registers_router(settings or SimulatorSettings())],
                    logging_config=None)
