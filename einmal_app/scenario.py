"""Stories played against a running demo server, as the online services and parents would.

``einmal scenario elfe``: a family has a baby; Elterngeld and Kindergeld fetch proofs with the
parents' consent; one fetch without consent is refused; a revoked consent stops the next fetch;
each parent's cockpit log shows exactly those transfers.
``einmal scenario uvo``: a single parent proves sole custody for Unterhaltsvorschuss; the
custody proof asks for a preview (EU OOTS): she sees it first, refuses once, then releases it.
``einmal scenario dsc``: a parent's session in the Datenschutzcockpit, source model (§ 10
OZG): the Namensdienst fetches the child's birth proof; the parent asks every source live
(the cockpit relays the answers encrypted to her own key); the Standesamt and the broker both
report that transfer under one transfer id; she asks for the content data and sees exactly
what the service received; the transfer is in the signed log (receipt).
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from einmal_client.client import (
    CitizenClient,
    ConsentRequiredError,
    EinmalError,
    NotFoundError,
    PreviewRefusedError,
    PreviewRequired,
    ServiceClient,
    SourceAnswer,
    TransportError,
    VerifiedProof,
)

__all__ = ["SCENARIOS", "run_scenario"]

ELTERNGELD = "elterngeldstelle-bremen"
FAMILIENKASSE = "familienkasse"
UVO = "unterhaltsvorschussstelle-hamburg"
NAMENSDIENST = "standesamt-namensdienst-bremen"
LOG_WAIT_S = 15.0
#: Only log entries newer than (run start - this) are read: bounds paging on a busy server.
LOG_WINDOW = timedelta(minutes=10)

#: The fields each service's policy lets through (mirrors policies/documents): a proof must
#: carry no other field.
ALLOWED_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    (ELTERNGELD, "birth"): frozenset({"register_number", "child_given_names",
                                      "child_family_name", "birth_date", "parents"}),
    (ELTERNGELD, "custody"): frozenset({"as_of", "custody", "holders", "since"}),
    (ELTERNGELD, "income"): frozenset({"period_from", "period_to", "months", "total_gross_eur"}),
    (FAMILIENKASSE, "birth"): frozenset({"child_given_names", "child_family_name", "birth_date",
                                         "parents"}),
    (UVO, "birth"): frozenset({"child_given_names", "child_family_name", "birth_date",
                               "parents"}),
    (UVO, "custody"): frozenset({"as_of", "custody", "holders", "basis", "since"}),
}


@dataclass
class Story:
    console: Console
    base_url: str
    credentials: dict[str, Any]
    http: httpx.AsyncClient
    results: list[tuple[str, bool]] = field(default_factory=list)
    step_no: int = 0

    def step(self, text: str) -> None:
        self.step_no += 1
        self.console.print(f"\n[bold]{self.step_no}. {text}[/bold]")

    def check(self, label: str, ok: bool, detail: str = "") -> bool:
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        self.console.print(f"   {mark} {escape(label)}"
                           + (f" [dim]({escape(detail)})[/dim]" if detail else ""))
        self.results.append((label, ok))
        return ok

    def person(self, family: str, role: str, index: int = 0) -> dict[str, Any]:
        people = [c for c in self.credentials["citizens"]
                  if c.get("family") == family and c.get("role") == role]
        if len(people) <= index:
            msg = f"the demo credentials have no {role} #{index + 1} in family {family!r}"
            raise EinmalError(msg)
        return people[index]

    def service(self, client_id: str) -> ServiceClient:
        entry = next((s for s in self.credentials["services"] if s["client_id"] == client_id),
                     None)
        if entry is None:
            msg = f"the demo credentials have no service {client_id!r}"
            raise EinmalError(msg)
        return ServiceClient(self.credentials.get("broker_url", self.base_url), client_id,
                             entry["private_jwk"], http=self.http,
                             token_endpoint=self.credentials.get("token_endpoint"))

    async def login(self, person: dict[str, Any]) -> CitizenClient:
        return await CitizenClient.demo_login(self.credentials.get("cockpit_url", self.base_url),
                                              person["idnr"], http=self.http)

    async def expect_refusal(self, label: str, call: Awaitable[Any]) -> str | None:
        try:
            await call
        except ConsentRequiredError as exc:
            self.check(label, bool(exc.transfer_id),
                       f"403 {exc.code}, recorded as {exc.transfer_id}")
            return str(exc.transfer_id)
        self.check(label, False, "the proof was released")
        return None

    def minimal(self, service: str, proof: VerifiedProof) -> bool:
        """Check that a proof carries only the fields the service's policy allows."""
        allowed = ALLOWED_FIELDS[(service, proof.proof_type)]
        extra = sorted(set(proof.data) - allowed)
        return self.check(f"{proof.proof_type} proof holds only the allowed fields",
                          bool(proof.data) and not extra,
                          f"extra: {', '.join(extra)}" if extra else
                          f"{len(proof.data)} of {len(allowed)} allowed")

    async def log_check(self, who: str, citizen: CitizenClient, expected: dict[str, str],
                        since: datetime, secrets: list[str]) -> None:
        """The citizen's cockpit shows exactly ``expected`` (id -> outcome) among this run's
        transfers, and no proof value appears anywhere in it.

        The scenario may run again and again against one server: "this run" starts at the
        earliest ``occurred_at`` of the expected ids as the server recorded it (no clock skew
        between this machine and the server matters); ``since`` only bounds the paging.
        """
        window = since - LOG_WINDOW
        deadline = time.monotonic() + LOG_WAIT_S
        while True:
            log = await citizen.transfers(since=window)
            if set(expected) <= {t.id for t in log} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        seen = [t.occurred_at for t in log if t.id in expected]
        start = min(seen) if seen else since
        mine = {t.id: t for t in log if t.id in expected or t.occurred_at >= start}
        missing = set(expected) - set(mine)
        unexpected = set(mine) - set(expected)
        self.check(f"{who}'s cockpit shows exactly the {len(expected)} transfers of this story",
                   not missing and not unexpected,
                   f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
                   if missing or unexpected else "")
        wrong = [i for i, outcome in expected.items() if i in mine and mine[i].outcome != outcome]
        self.check(f"{who}'s log has the right outcome for each", not wrong,
                   f"wrong outcome for {wrong}" if wrong else
                   ", ".join(sorted({o for o in expected.values()})))
        raw = json.dumps([t for t in await citizen.raw_transfers(since=window)
                          if t.get("id") in mine], ensure_ascii=False)
        leaked = [s for s in secrets if s and s in raw]
        self.check(f"{who}'s log holds no proof values", not leaked,
                   f"found {leaked}" if leaked else "only categories, purposes, bases")


def _fields_ok(proof: VerifiedProof, required: set[str]) -> bool:
    return required <= set(proof.data) and all(proof.data[k] not in (None, "", [])
                                                for k in required)


async def _elfe(story: Story) -> None:
    p1, p2 = story.person("elfe", "parent", 0), story.person("elfe", "parent", 1)
    child = story.person("elfe", "child")
    since = datetime.now(UTC) - timedelta(seconds=1)
    birth_params = {"place_of_birth": child["place_of_birth"], "birth_date": child["birth_date"]}
    born = date.fromisoformat(child["birth_date"])
    last = date(born.year, born.month, 1) - timedelta(days=1)
    first = date(last.year - 1, last.month, 1) + timedelta(days=32)
    income_params = {"from": f"{first:%Y-%m}", "to": f"{last:%Y-%m}"}
    until = datetime.now(UTC) + timedelta(days=90)

    story.step(f"{child['given_names']} {child['family_name']} is born on {child['birth_date']} "
               f"(municipality {child['place_of_birth']}); parents {p1['given_names']} and "
               f"{p2['given_names']} {p1['family_name']} apply for Elterngeld and Kindergeld")
    parent1, parent2 = await story.login(p1), await story.login(p2)
    story.check("both parents logged in (demo eID)", True)

    story.step("The parents consent in the cockpit")
    c_child = await parent1.grant_consent(ELTERNGELD, ["birth", "custody"], "elterngeld-antrag",
                                          until, subject=child["idnr"])
    c_income1 = await parent1.grant_consent(ELTERNGELD, ["income"], "elterngeld-antrag", until)
    c_kindergeld = await parent1.grant_consent(FAMILIENKASSE, ["birth"], "kindergeld-antrag",
                                               until, subject=child["idnr"], max_uses=1)
    c_income2 = await parent2.grant_consent(ELTERNGELD, ["income"], "elterngeld-antrag", until)
    story.check("four consents granted and active",
                all(c.status == "active" for c in (c_child, c_income1, c_kindergeld, c_income2)))

    elterngeld, kindergeld = story.service(ELTERNGELD), story.service(FAMILIENKASSE)
    story.step("Elterngeld fetches the birth, custody and income proofs")
    birth = await elterngeld.fetch_proof("birth", child["idnr"], "elterngeld-antrag",
                                         consent_id=c_child.id, parameters=birth_params)
    story.check("birth proof signed by the broker, from the Standesamt",
                birth.register_id == f"standesamt:{child['place_of_birth']}", birth.register_name)
    story.check("birth proof carries the child and both parents",
                _fields_ok(birth, {"child_given_names", "birth_date", "parents"})
                and len(birth.data["parents"]) == 2
                and birth.data["birth_date"] == child["birth_date"])
    story.minimal(ELTERNGELD, birth)
    custody = await elterngeld.fetch_proof("custody", child["idnr"], "elterngeld-antrag",
                                           consent_id=c_child.id,
                                           parameters={"land": child["home_land"]})
    holders = {h.get("idnr") for h in custody.data.get("holders", [])}
    story.check("custody: joint, both parents hold it",
                custody.data.get("custody") == "joint" and holders == {p1["idnr"], p2["idnr"]},
                custody.register_name)
    story.minimal(ELTERNGELD, custody)
    income1 = await elterngeld.fetch_proof("income", p1["idnr"], "elterngeld-antrag",
                                           consent_id=c_income1.id, parameters=income_params)
    income2 = await elterngeld.fetch_proof("income", p2["idnr"], "elterngeld-antrag",
                                           consent_id=c_income2.id, parameters=income_params)
    story.check("income of both parents for the 12 months before the birth",
                len(income1.data["months"]) == 12 and len(income2.data["months"]) == 12,
                f"{income_params['from']} to {income_params['to']}")
    story.minimal(ELTERNGELD, income1)
    story.minimal(ELTERNGELD, income2)

    story.step("The Familienkasse fetches the birth proof for Kindergeld")
    kg_birth = await kindergeld.fetch_proof("birth", child["idnr"], "kindergeld-antrag",
                                            consent_id=c_kindergeld.id, parameters=birth_params)
    story.check("Kindergeld gets only what its policy allows",
                "register_number" not in kg_birth.data and "child_sex" not in kg_birth.data,
                ", ".join(sorted(kg_birth.data)))
    story.minimal(FAMILIENKASSE, kg_birth)

    story.step("A fetch without consent is refused")
    refused_kg = await story.expect_refusal(
        "Familienkasse, used-up consent: refused (its consent allowed one use)",
        kindergeld.fetch_proof("birth", child["idnr"], "kindergeld-antrag",
                               consent_id=c_kindergeld.id, parameters=birth_params))
    refused_none = await story.expect_refusal(
        "Familienkasse without any consent: refused",
        kindergeld.fetch_proof("birth", child["idnr"], "kindergeld-antrag",
                               parameters=birth_params))

    story.step(f"{p2['given_names']} revokes the income consent; the next fetch stops")
    revoked = await parent2.revoke_consent(c_income2.id)
    story.check("consent revoked", revoked.status == "revoked")
    refused_income = await story.expect_refusal(
        "Elterngeld's next income fetch is refused",
        elterngeld.fetch_proof("income", p2["idnr"], "elterngeld-antrag",
                               consent_id=c_income2.id, parameters=income_params))

    story.step("Each parent's cockpit shows exactly these transfers")
    about_child = {birth.transfer_id: "delivered", custody.transfer_id: "delivered",
                   kg_birth.transfer_id: "delivered"}
    about_child.update({i: "refused" for i in (refused_kg, refused_none) if i})
    secrets = [child["given_names"], income1.data["total_gross_eur"],
               income2.data["total_gross_eur"], child["idnr"], p1["idnr"]]
    await story.log_check(p1["given_names"], parent1,
                          {**about_child, income1.transfer_id: "delivered"}, since, secrets)
    p2_expected = {**about_child, income2.transfer_id: "delivered"}
    if refused_income:
        p2_expected[refused_income] = "refused"
    await story.log_check(p2["given_names"], parent2, p2_expected, since, secrets)
    for client in (parent1, parent2, elterngeld, kindergeld):
        await client.aclose()


async def _uvo(story: Story) -> None:
    parent, child = story.person("uvo", "parent"), story.person("uvo", "child")
    since = datetime.now(UTC) - timedelta(seconds=1)
    today = datetime.now(UTC).date().isoformat()
    story.step(f"{parent['given_names']} {parent['family_name']}, single parent in "
               f"{parent['home_land']}, applies for Unterhaltsvorschuss for "
               f"{child['given_names']} (born {child['birth_date']} in {child['place_of_birth']})")
    citizen = await story.login(parent)
    consent = await citizen.grant_consent(UVO, ["birth", "custody"], "unterhaltsvorschuss-antrag",
                                          datetime.now(UTC) + timedelta(days=30),
                                          subject=child["idnr"])
    story.check("consent for birth and custody granted", consent.status == "active")

    uvo = story.service(UVO)
    story.step("The UVO office fetches the birth proof")
    birth = await uvo.fetch_proof(
        "birth", child["idnr"], "unterhaltsvorschuss-antrag", consent_id=consent.id,
        parameters={"place_of_birth": child["place_of_birth"], "birth_date": child["birth_date"]})
    story.check("birth proof names one parent", len(birth.data.get("parents", [])) == 1,
                birth.register_name)
    story.minimal(UVO, birth)

    story.step("…and a custody proof as of today, instead of a 'negative certificate'; "
               "the office's policy asks for a preview")
    custody_args: dict[str, Any] = {
        "consent_id": consent.id, "parameters": {"land": parent["home_land"], "as_of": today}}
    first = await uvo.request_proof("custody", child["idnr"], "unterhaltsvorschuss-antrag",
                                    **custody_args)
    story.check("the broker holds the proof for the parent's preview (202, nothing released)",
                isinstance(first, PreviewRequired),
                f"{first.code}, until {first.expires_at:%H:%M} UTC"
                if isinstance(first, PreviewRequired) else "released at once")
    if not isinstance(first, PreviewRequired):
        return
    shown = await citizen.preview(first.request_id)
    allowed = ALLOWED_FIELDS[(UVO, "custody")]
    story.check(f"{parent['given_names']} sees the held values in her cockpit",
                shown.status == "pending" and bool(shown.data)
                and set(shown.data or {}) <= allowed, shown.service_name)
    await citizen.refuse_preview(first.request_id)
    try:
        await uvo.collect(first)
        story.check("refused: the office gets a clear refusal and no data", False,
                    "the proof was released")
        refused_id = None
    except PreviewRefusedError as exc:
        refused_id = exc.transfer_id
        story.check("refused: the office gets a clear refusal and no data",
                    exc.status == 403 and refused_id == first.request_id,
                    f"403 {exc.slug}")
    second = await uvo.request_proof("custody", child["idnr"], "unterhaltsvorschuss-antrag",
                                     **custody_args)
    if not isinstance(second, PreviewRequired):
        story.check("asked again: held for the preview again", False, "released at once")
        return
    shown = await citizen.preview(second.request_id)
    await citizen.accept_preview(second.request_id)
    custody = await uvo.wait_for_preview(second, timeout=10, interval=0.2)
    story.check("released: the office collects exactly what she saw",
                custody.data == shown.data, f"transfer {custody.transfer_id}")
    holders = [h.get("idnr") for h in custody.data.get("holders", [])]
    story.check("sole custody of the applying parent, as of today",
                custody.data.get("custody") == "sole" and holders == [parent["idnr"]]
                and custody.data.get("as_of") == today, f"since {custody.data.get('since')}")
    story.minimal(UVO, custody)
    story.check("found through the index: the record is held where the child was born",
                not custody.register_id.endswith(f":{parent['home_land']}"),
                f"asked {parent['home_land']}, answered by {custody.register_name}")

    story.step("The cockpit shows the transfers, the refused preview too")
    expected = {birth.transfer_id: "delivered", custody.transfer_id: "delivered"}
    if refused_id:
        expected[refused_id] = "refused"
    await story.log_check(parent["given_names"], citizen, expected, since,
                          [child["given_names"], child["idnr"]])
    await citizen.aclose()
    await uvo.aclose()


def _content_values(groups: Any) -> dict[str, str]:
    """label -> value of every item in a content tree (nested groups flattened)."""
    values: dict[str, str] = {}
    stack = list(groups)
    while stack:
        group = stack.pop()
        values.update((item.label, item.value) for item in group.items)
        stack.extend(group.groups)
    return values


async def _dsc(story: Story) -> None:
    parent, child = story.person("elfe", "parent", 0), story.person("elfe", "child")
    standesamt = f"standesamt:{child['place_of_birth']}"
    citizen = await story.login(parent)  # her eID login (demo), used in step 2

    story.step(f"The Namensdienst fetches {child['given_names']}'s birth proof (on a legal "
               "basis, no consent)")
    namensdienst = story.service(NAMENSDIENST)
    birth = await namensdienst.fetch_proof(
        "birth", child["idnr"], "namensbestimmung",
        parameters={"place_of_birth": child["place_of_birth"],
                    "birth_date": child["birth_date"]})
    story.check("birth proof released and verified", birth.transfer_id != "",
                f"transfer {birth.transfer_id}")

    story.step(f"{parent['given_names']} logs in to the Datenschutzcockpit and asks every "
               "source (the cockpit keeps nothing: the answers are encrypted to her own key)")
    sources = await citizen.sources()
    story.check("the cockpit names its sources, each with the key that signs its answers",
                bool(sources) and all(s.key for s in sources),
                f"{len(sources)} sources: "
                + ", ".join(sorted({s.group for s in sources})))
    started = time.perf_counter()
    answers = await citizen.source_query(known=sources)
    took = time.perf_counter() - started
    by_status: dict[str, list[SourceAnswer]] = {}
    for answer in answers:
        by_status.setdefault(answer.status, []).append(answer)
    story.check("every source is accounted for (answered, late or failed, by name)",
                {a.source.id for a in answers} == {s.id for s in sources},
                f"{len(by_status.get('ok', []))} answered in {took:.2f} s"
                + "".join(f"; {status}: " + ", ".join(a.source.name for a in items)
                          for status, items in by_status.items() if status != "ok"))
    table = Table(title="Sources that reported transfers about her")
    table.add_column("source")
    table.add_column("entries")
    table.add_column("newest")
    for answer in answers:
        if answer.entries:
            newest = max(answer.entries, key=lambda e: e.occurred_at)
            table.add_row(answer.source.name, str(len(answer.entries)),
                          f"{newest.occurred_at:%d.%m.%Y %H:%M} → "
                          f"{newest.recipient.service_name if newest.recipient else '?'}")
    story.console.print(table)

    story.step("The Standesamt and the broker each report the transfer from their own "
               "protocol (§ 9 IDNrG), under the broker's transfer id")
    register = next((a for a in answers if a.source.id == standesamt), None)
    entry = next((e for e in (register.entries if register else ())
                  if e.transfer_id == birth.transfer_id), None)
    story.check(f"{standesamt} lists it (she is concerned as a parent)",
                entry is not None and entry.relation == "concerned"
                and entry.recipient is not None
                and entry.recipient.service_id == NAMENSDIENST
                and entry.purpose == "namensbestimmung",
                entry.legal_basis if entry else
                (register.detail if register else "not asked"))
    broker = next((a for a in answers if a.source.kind == "broker"), None)
    relayed = next((e for e in (broker.entries if broker else ())
                    if e.transfer_id == birth.transfer_id), None)
    story.check("the broker lists it as the intermediary", relayed is not None,
                broker.source.name if broker and relayed else
                (broker.detail if broker else "no broker source"))

    story.step("She asks for the content data (\"Persönliche Daten anfragen\")")
    if register is not None and entry is not None:
        content = await citizen.source_content(register.source, entry.id)
        values = _content_values(content.groups)
        shown = " ".join(values.values())
        story.check("the register shows what it sent: the child's birth date and names",
                    child["birth_date"] in shown
                    and str(birth.data["child_given_names"]).split()[0] in shown,
                    f"{len(values)} values in {len(content.groups)} groups")
    else:
        story.check("the register shows what it sent", False, "no entry to ask about")

    story.step("The transfer is in the signed, cosigned transparency log")
    deadline = time.monotonic() + LOG_WAIT_S
    receipt = ""
    while not receipt:
        try:
            receipt = await citizen.receipt(birth.transfer_id)
        except NotFoundError:  # integrated and cosigned within seconds
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
    story.check("her receipt (entry, inclusion proof, cosigned checkpoint) is ready",
                bool(receipt), f"{len(receipt.splitlines())} lines" if receipt else
                f"none within {LOG_WAIT_S:g} s")


SCENARIOS: dict[str, Callable[[Story], Awaitable[None]]] = {"elfe": _elfe, "uvo": _uvo,
                                                            "dsc": _dsc}


async def run_scenario(name: str, base_url: str, credentials: dict[str, Any], *,
                       console: Console) -> bool:
    """Play ``name``; True only if every check held."""
    play = SCENARIOS.get(name)
    if play is None:
        msg = f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})"
        raise ValueError(msg)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=3.0)) as http:
        story = Story(console=console, base_url=base_url.rstrip("/"), credentials=credentials,
                      http=http)
        console.print(f"[bold]Scenario {name}[/bold] against {story.base_url}")
        try:
            await play(story)
        except TransportError as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                console.print(f"[red]no Einmal server at {escape(base_url)} - start one with "
                              "`einmal serve --demo`[/red]")
            else:
                console.print(f"[red]lost the connection to {escape(base_url)}: "
                              f"{escape(str(exc))}[/red]")
            return False
        except EinmalError as exc:
            story.check(f"unexpected error: {exc}", False)
    table = Table(title=f"Scenario {name}: {time.perf_counter() - started:.2f} s")
    table.add_column("checks")
    table.add_column("passed")
    table.add_column("failed")
    failed = sum(1 for _, ok in story.results if not ok)
    table.add_row(str(len(story.results)), str(len(story.results) - failed), str(failed))
    console.print()
    console.print(table)
    ok = failed == 0 and bool(story.results)
    console.print("[green]All checks held.[/green]" if ok else "[red]Some checks failed.[/red]")
    return ok
