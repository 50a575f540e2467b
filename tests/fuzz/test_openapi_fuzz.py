"""Schemathesis over the live app's OpenAPI document: every operation, a bounded, reproducible
number of generated requests (positive and negative), with valid auth per operation, plus
valid requests ("happy paths") so that every operation's success answers are checked too.

One demo server and one fuzzing run per module; the tests below each assert one property of
that run:

- no 5xx (schemathesis ``not_a_server_error``);
- every 4xx is a problem+json (``type`` = ``urn:einmal:problem:*``, ``title``, matching
  ``status``) — our own check, the API's one error shape;
- every status code is declared for its operation (schemathesis ``status_code_conformance``;
  each route lists its problem statuses and a ``default`` problem+json covers the rest);
- the content type is a declared one for that status (``content_type_conformance``), and the
  Content-Type header names each parameter once;
- every answer matches the schema documented for its status and media type
  (``response_schema_conformance``): routes declare their success answers with
  ``json_body(Struct)`` / ``text_body`` / ``binary_body`` (einmal/openapi.py), so a JSON
  answer documented wrongly fails here. Bodies schemathesis cannot parse (text/plain, NDJSON,
  octet-stream) are checked for their media type only;
- every operation answered at least once with a 2xx, so the success schemas were checked;
- the published document declares the request bodies the handlers decode by hand
  (einmal/openapi.py: ``with_request_body``), so schemathesis generates real bodies.
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from einmal.settings import load_settings
from einmal_client.audit import auditor_token
from einmal_client.client import CitizenClient
from einmal_client.sources import SessionKey
from tests.conftest import TEST_DATABASE_URL, LiveServer, free_port, start_server
from tests.e2e.conftest import Demo, bearer, in_days
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, UVO, birth_request
from tests.e2e.security_support import channel_token
from tests.waiting import wait_until

#: Generated examples per operation and generation mode (positive, negative).
MAX_EXAMPLES = 50
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Run time (~20-45 s on 2 cores, more under load) is reported in the run summary, not
# asserted: timing asserts fail on a loaded machine and belong in bench/.

pytestmark = pytest.mark.e2e


@dataclass
class Finding:
    check: str
    operation: str
    status: int
    detail: str
    curl: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.operation} -> {self.status}: {self.detail}\n    {self.curl}"


@dataclass
class Run:
    operations: list[str] = field(default_factory=list)
    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    undeclared: Counter[tuple[str, int]] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    bodies: dict[str, str] = field(default_factory=dict)
    #: operation -> status -> media type -> schema, of every 2xx answer the document declares
    answers: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0

    def of(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def summary(self) -> str:
        return (f"schemathesis {schemathesis.__version__}: {len(self.operations)} operations, "
                f"{sum(self.examples.values())} requests "
                f"({MAX_EXAMPLES} max examples x {len(MODES)} modes per operation, plus "
                f"happy paths) in {self.seconds:.1f} s; findings: "
                f"{dict(Counter(f.check for f in self.findings))}")


#: Operations whose request body the published document must declare (handlers decode them
#: by hand; einmal/openapi.py: with_request_body).
BODIES = {"POST /v1/proof-requests": "application/json", "POST /v1/consents": "application/json",
          "POST /demo/citizen-token": "application/json",
          "POST /v1/token": "application/x-www-form-urlencoded",
          "POST /v1/transfer-records": "application/json",
          "POST /witness/add-checkpoint": "text/plain"}


#: Error answers whose shape a protocol fixes, documented as such (not problem+json):
#: C2SP tlog-witness answers a stale old size with 409 and the latest cosigned size.
NOT_PROBLEMS = {("POST /witness/add-checkpoint", 409, "text/x.tlog.size")}


def _auth(live: LiveServer, demo: Demo) -> dict[str, dict[str, str]]:
    """Operation label -> headers: the right actor's valid token for each protected operation."""
    service = bearer(demo.service_token(NAMENSDIENST))
    citizen = bearer(demo.citizen_token(demo.citizen("elfe", "parent")["idnr"]))
    auditor = bearer(auditor_token(demo.credentials["auditors"][0]["private_jwk"]))
    channel = bearer(channel_token(live))
    return {"GET /health/ready": bearer(demo.credentials["ops_token"]),
            "POST /v1/proof-requests": service,
            "GET /v1/consents": citizen, "POST /v1/consents": citizen,
            "DELETE /v1/consents/{consent_id}": citizen,
            "GET /v1/me/transfers": citizen,
            "GET /v1/me/transfers/{transfer_id}/receipt": citizen,
            "GET /v1/audit/export": auditor,
            "POST /v1/transfer-records": channel,
            "GET /v1/proof-requests/{request_id}": service,
            "GET /v1/me/previews": citizen, "GET /v1/me/previews/{request_id}": citizen,
            "POST /v1/me/previews/{request_id}": citizen,
            "GET /v1/me/sources": citizen, "POST /v1/me/source-queries": citizen,
            "POST /v1/me/source-queries/content": citizen}


@dataclass
class Prepared:
    """What the happy paths need that only a few requests can make."""

    transfer_id: str
    consent_id: str
    #: the UVO's custody requests held for the citizen's preview: pending, released, pending
    pending: str
    released: str
    undecided: str
    uvo: dict[str, str]
    clara: dict[str, str]
    custody: dict[str, Any]
    checkpoint: str


def _prepare(demo: Demo) -> Prepared:
    parent = demo.citizen("elfe", "parent")
    first = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
    assert first.status_code == 200, first.text
    transfer_id = first.json()["transfer_id"]
    consent_id = demo.grant(parent["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag")["id"]
    # The UVO's custody proof asks for the citizen's preview (demo policy): 202, held.
    mother, child = demo.citizen("uvo", "parent"), demo.citizen("uvo", "child")
    uvo_consent = demo.grant(mother["idnr"], UVO, ["birth", "custody"],
                             "unterhaltsvorschuss-antrag", subject=child["idnr"])["id"]
    custody = {"proof_type": "custody", "subject": child["idnr"],
               "purpose": "unterhaltsvorschuss-antrag", "consent_id": uvo_consent,
               "parameters": {"land": mother["home_land"],
                              "as_of": datetime.now(UTC).date().isoformat()}}
    uvo = bearer(demo.service_token(UVO))
    clara = bearer(demo.citizen_token(mother["idnr"]))

    def held() -> str:
        response = demo.http.post("/v1/proof-requests", json=custody, headers=uvo)
        assert response.status_code == 202, response.text
        return str(response.json()["request_id"])

    pending, released, undecided = held(), held(), held()
    accepted = demo.http.post(f"/v1/me/previews/{released}", json={"decision": "accept"},
                              headers=clara)
    assert accepted.status_code == 200, accepted.text
    # A receipt needs the transfer in a cosigned checkpoint (the demo's witness).
    citizen = bearer(demo.citizen_token(parent["idnr"]))
    wait_until(lambda: demo.http.get(f"/v1/me/transfers/{transfer_id}/receipt",
                                     headers=citizen).status_code == 200,
               what="the first transfer's receipt", timeout=30)
    checkpoint = demo.http.get("/v1/log/checkpoint")
    assert checkpoint.status_code == 200, checkpoint.text
    return Prepared(transfer_id=transfer_id, consent_id=consent_id, pending=pending,
                    released=released, undecided=undecided, uvo=uvo, clara=clara,
                    custody=custody, checkpoint=checkpoint.text)


def _cosign_again(demo: Demo) -> dict[str, Any]:
    """The latest published checkpoint from its own size: the witness cosigns it again (200)
    once it has cosigned it at all (the log may still grow from earlier requests)."""

    def settled() -> str | None:
        note = demo.http.get("/v1/log/checkpoint").text
        size = note.split("\n")[1]
        probe = demo.http.post("/witness/add-checkpoint", content=f"old 0\n\n{note}",
                               headers={"content-type": "text/plain"})
        latest = {200: size, 409: probe.text.strip()}.get(probe.status_code)
        return note if latest == size else None

    note = wait_until(settled, what="the witness to cosign the latest checkpoint")
    size = note.split("\n")[1]
    return {"body": f"old {size}\n\n{note}", "media_type": "text/plain"}


HappyPath = dict[str, Any] | Callable[[], dict[str, Any]]


def _happy_paths(demo: Demo, ready: Prepared) -> dict[str, list[HappyPath]]:
    """Valid requests per operation, so each operation's success answers are checked too
    (``headers``: instead of the operation's usual credentials; a callable is asked for its
    request when the operation's turn comes)."""
    parent = demo.citizen("elfe", "parent")
    size = int(ready.checkpoint.split("\n")[1])
    return {
        "POST /v1/proof-requests": [{"body": birth_request(demo, "namensbestimmung")},
                                    {"body": ready.custody, "headers": ready.uvo}],
        "GET /v1/proof-requests/{request_id}": [
            {"path_parameters": {"request_id": ready.pending}, "headers": ready.uvo},
            {"path_parameters": {"request_id": ready.released}, "headers": ready.uvo}],
        "GET /v1/me/previews": [{"query": {"status": "all"}, "headers": ready.clara}],
        "GET /v1/me/previews/{request_id}": [
            {"path_parameters": {"request_id": ready.pending}, "headers": ready.clara}],
        "POST /v1/me/previews/{request_id}": [
            {"path_parameters": {"request_id": ready.undecided},
             "body": {"decision": "accept"}, "headers": ready.clara}],
        "POST /v1/consents": [{"body": {"service_id": ELTERNGELD,
                                        "proof_types": ["birth"], "purpose": "elterngeld-antrag",
                                        "valid_until": in_days(30)}}],
        "DELETE /v1/consents/{consent_id}": [
            {"path_parameters": {"consent_id": ready.consent_id}}],
        "POST /demo/citizen-token": [{"body": {"idnr": parent["idnr"]}}],
        "POST /v1/token": [{"body": demo.token_form(NAMENSDIENST),
                            "media_type": "application/x-www-form-urlencoded"}],
        "GET /v1/log/proof/inclusion": [{"query": {"index": 0, "tree_size": 1}}],
        "GET /v1/log/proof/consistency": [{"query": {"from": 1, "to": 1}}],
        "GET /v1/log/entries/{transfer_id}": [
            {"path_parameters": {"transfer_id": ready.transfer_id}}],
        "GET /v1/me/transfers": [{"query": {"limit": 5}}],
        "GET /v1/me/transfers/{transfer_id}/receipt": [
            {"path_parameters": {"transfer_id": ready.transfer_id}}],
        "GET /v1/audit/export": [{"query": {}}],
        # the cosigned checkpoint again (200), and from an old size (409 text/x.tlog.size)
        "POST /witness/add-checkpoint": [
            lambda: _cosign_again(demo),
            {"body": f"old 0\n\n{ready.checkpoint}", "media_type": "text/plain"}],
        "GET /log/tile/{rest}": [{"path_parameters": {"rest": f"0/000.p/{size}"}}],
        "GET /v1/me/sources": [{"query": {}}],
        "POST /v1/me/source-queries": [{"body": {"session_key": SessionKey().public_jwk,
                                                 "sources": [_standesamt(demo)]}}],
        "POST /v1/me/source-queries/content": [lambda: _content_query(demo, ready)],
    }


def _standesamt(demo: Demo) -> str:
    return f"standesamt:{demo.citizen('elfe', 'child')['place_of_birth']}"


def _content_query(demo: Demo, ready: Prepared) -> dict[str, Any]:
    """The content query of the parent's entry at the Standesamt for the prepared transfer
    (its id: from the source's list, opened with the parent's own key)."""
    parent = demo.citizen("elfe", "parent")["idnr"]

    async def entry_id() -> str:
        async with CitizenClient(demo.base_url, demo.citizen_token(parent),
                                 idnr=parent) as citizen:
            [answer] = await citizen.source_query([_standesamt(demo)])
        return next(e.id for e in answer.entries if e.transfer_id == ready.transfer_id)
    return {"body": {"session_key": SessionKey().public_jwk, "source": _standesamt(demo),
                     "entry_id": asyncio.run(entry_id())}}


def _is_problem(response: schemathesis.Response) -> str | None:
    """Why a 4xx/5xx response is not our problem+json, or None."""
    content_type = next(iter(response.headers.get("content-type", [])), "")
    text = response.content[:200].decode(errors="replace")
    if not content_type.startswith("application/problem+json"):
        return f"content-type {content_type!r}, body {text!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"not JSON: {text!r}"
    if not (isinstance(body, dict) and str(body.get("type", "")).startswith("urn:einmal:problem:")
            and isinstance(body.get("title"), str) and body.get("status") == response.status_code):
        return f"not a problem document: {text!r}"
    return None


def _fuzz(live: LiveServer, demo: Demo, raw_schema: dict[str, Any]) -> Run:
    schema = schemathesis.openapi.from_dict(raw_schema)
    auth = _auth(live, demo)
    happy = _happy_paths(demo, _prepare(demo))
    run = Run()
    session = requests.Session()
    started = time.monotonic()

    def check(case: Any, headers: dict[str, str]) -> None:
        label = case.operation.label
        response = case.call(base_url=live.base_url, session=session, headers=headers,
                             timeout=20)
        run.examples[label] += 1
        run.statuses[(label, response.status_code)] += 1
        declared = case.operation.responses.status_codes
        if str(response.status_code) not in declared:
            run.undeclared[(label, response.status_code)] += 1

        def found(name: str, detail: str) -> None:
            curl = case.as_curl_command(headers=headers)
            for token in headers.values():  # keep credentials out of the report
                curl = curl.replace(token, "Bearer <token>")
            run.findings.append(Finding(name, label, response.status_code, detail[:500], curl))

        for name, fn in (("not_a_server_error", not_a_server_error),
                         ("status_code_conformance", status_code_conformance),
                         ("content_type_conformance", content_type_conformance),
                         ("response_schema_conformance", response_schema_conformance)):
            try:
                case.validate_response(response, checks=[fn], headers=headers)
            except FailureGroup as group:
                found(name, " / ".join(f"{f.title}: {f.message}".replace("\n", " ")
                                       for f in group.exceptions))
            except Failure as failure:
                found(name, f"{failure.title}: {failure.message}".replace("\n", " "))
        content_type = next(iter(response.headers.get("content-type", [])), "")
        names = [part.split("=", 1)[0].strip().lower() for part in content_type.split(";")[1:]]
        if len(names) != len(set(names)):
            found("content_type_header", f"repeated parameter in {content_type!r}")
        if response.status_code >= 400 and (
                label, response.status_code, content_type.split(";")[0]) not in NOT_PROBLEMS:
            why = _is_problem(response)
            if why is not None:
                found("problem_json", why)

    def fuzzer(strategy: Any, headers: dict[str, str]) -> Any:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            check(case, headers)

        return fuzz

    for path, methods in raw_schema["paths"].items():
        for method, spec in methods.items():
            for media_type in spec.get("requestBody", {}).get("content", {}):
                run.bodies[f"{method.upper()} {path}"] = media_type
            run.answers[f"{method.upper()} {path}"] = {
                status: {media: body.get("schema") for media, body in
                         (response.get("content") or {}).items()}
                for status, response in spec["responses"].items() if status.startswith("2")}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        run.operations.append(label)
        headers = auth.get(label, {})
        for happy_path in happy.get(label, []):
            values = dict(happy_path() if callable(happy_path) else happy_path)
            own_headers = values.pop("headers", headers)
            check(operation.Case(**values), own_headers)
        for mode in MODES:
            try:
                fuzzer(operation.as_strategy(generation_mode=mode), headers)()
            except Unsatisfiable:
                # Nothing to negate: no parameters and no body (e.g. GET /health/live).
                assert mode is GenerationMode.NEGATIVE, label
    run.seconds = time.monotonic() - started
    session.close()
    return run


@pytest.fixture(name="run", scope="module")
def fx_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    # The citizen bucket (60 burst) would turn most citizen operations into 429s; the run
    # is about input handling, the limits have their own tests.
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    live = start_server(load_settings(
        {}, data_dir=data_dir, demo=True, simulator_families=60, delivery_interval_s=0.2,
        database_url=TEST_DATABASE_URL, port=free_port(), rate_limit_citizen_per_s=0))
    try:
        credentials = json.loads((data_dir / "demo-credentials.json").read_text())
        with httpx.Client(base_url=live.base_url, timeout=20) as http:
            demo = Demo(base_url=live.base_url, credentials=credentials, http=http)
            raw = http.get("/schema/openapi.json").json()
            run = _fuzz(live, demo, raw)
        print("\n" + run.summary())
        for (label, status), count in sorted(run.statuses.items()):
            undeclared = " (undeclared)" if (label, status) in run.undeclared else ""
            print(f"  {label} -> {status}{undeclared}: {count}")
        for (check, label, status, detail), count in sorted(Counter(
                (f.check, f.operation, f.status, f.detail[:120]) for f in run.findings).items()):
            print(f"  FINDING [{check}] {label} -> {status}: {detail} (x{count})")
        yield run
    finally:
        live.stop()


def test_every_operation_was_fuzzed(run: Run) -> None:
    assert len(run.operations) >= 23, run.operations
    assert all(run.examples[label] > 0 for label in run.operations), run.examples


def test_every_operation_answered_successfully(run: Run) -> None:
    succeeded = {label for label, status in run.statuses if 200 <= status < 300}
    missing = [label for label in run.operations if label not in succeeded]
    assert not missing, missing


def test_no_json_answer_is_documented_as_a_string(run: Run) -> None:
    """What Litestar publishes for ``Response[bytes]`` unless the route declares its body
    (einmal/openapi.py: ``json_body``)."""
    unsaid = ({"type": "string"}, {}, None)
    strings = [(label, status) for label, answers in run.answers.items()
               for status, media in answers.items()
               for media_type, schema in media.items()
               if media_type.endswith(("/json", "+json")) and schema in unsaid]
    assert not strings, strings
    assert run.answers["GET /health/live"]["200"]["application/json"] == {
        "$ref": "#/components/schemas/Liveness"}


def test_the_published_schema_declares_request_bodies(run: Run) -> None:
    for label, media_type in BODIES.items():
        assert run.bodies.get(label) == media_type, (label, run.bodies.get(label))


def test_status_codes_are_declared(run: Run) -> None:
    findings = run.of("status_code_conformance")
    assert not findings, "\n".join(map(str, findings[:10]))


def test_no_server_errors(run: Run) -> None:
    findings = run.of("not_a_server_error")
    assert not findings, "\n".join(map(str, findings[:10]))


def test_errors_are_problem_json(run: Run) -> None:
    findings = run.of("problem_json")
    assert not findings, "\n".join(map(str, findings[:10]))


def test_declared_content_types(run: Run) -> None:
    findings = run.of("content_type_conformance")
    assert not findings, "\n".join(map(str, findings[:10]))


def test_content_type_headers_are_well_formed(run: Run) -> None:
    findings = run.of("content_type_header")
    assert not findings, "\n".join(map(str, findings[:10]))


def test_answers_match_their_documented_schema(run: Run) -> None:
    findings = run.of("response_schema_conformance")
    assert not findings, "\n".join(map(str, findings[:10]))
