"""einmal_client.client without a server: problem mapping, token caching, proof verification."""

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import einmal_client.client
from einmal.keys import private_jwk, public_jwk
from einmal_client.client import (
    AuthenticationError,
    CitizenClient,
    ConsentRequiredError,
    EinmalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PreviewPendingError,
    PreviewRequired,
    PreviewRequiredError,
    ProblemError,
    ProofVerificationError,
    RegisterTimeoutError,
    RegisterUnavailableError,
    RoutingFailedError,
    ServiceClient,
    SourceAnswer,
    StoreUnavailableError,
    TransportError,
    VerifiedProof,
)
from einmal_client.sources import ListAnswer, SourceEntry, seal_answer

BASE = "http://einmal.test"
SERVICE = "elterngeldstelle-bremen"
CHILD = "86095742719"
TRANSFER = "0193aaaa-0000-7000-8000-000000000001"


def problem_response(slug: str | None, status: int, **extra: Any) -> httpx.Response:
    body = {"title": "t", "status": status, "detail": "d", **extra}
    if slug is not None:
        body["type"] = f"urn:einmal:problem:{slug}"
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class Broker:
    """A fake broker behind httpx.MockTransport: counts calls, signs proofs as told."""

    def __init__(self) -> None:
        self.service_key = Ed25519PrivateKey.generate()
        self.signing_key = Ed25519PrivateKey.generate()
        self.signing_kid = "broker-1"
        self.calls: dict[str, int] = {}
        self.claims: dict[str, Any] = {}
        self.header: dict[str, Any] = {"kid": self.signing_kid, "typ": "proof+jwt"}
        self.sign_with: Ed25519PrivateKey | None = None
        self.jws: str | None = None
        self.expires_in = 300
        self.proof_error: httpx.Response | None = None

    @property
    def service_jwk(self) -> dict[str, Any]:
        return private_jwk(self.service_key, "svc-1")

    def default_claims(self) -> dict[str, Any]:
        return {"iss": BASE, "aud": SERVICE, "sub": CHILD, "iat": int(time.time()),
                "jti": TRANSFER, "proof_type": "birth", "purpose": "elterngeld-antrag",
                "register": {"id": "standesamt:04011000", "name": "Standesamt Bremen"},
                "data": {"birth_date": "2026-10-12"}}

    def sign(self) -> str:
        claims = {**self.default_claims(), **self.claims}
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.sign_with or self.signing_key, algorithm="EdDSA",
                          headers=self.header)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] = self.calls.get(path, 0) + 1
        if path == "/v1/token":
            form = dict(item.split("=", 1) for item in request.content.decode().split("&"))
            assertion = jwt.decode(form["client_assertion"], self.service_key.public_key(),
                                   algorithms=["EdDSA"], audience=f"{BASE}/v1/token",
                                   options={"verify_exp": False, "verify_iat": False})
            assert assertion["iss"] == assertion["sub"] == SERVICE
            assert assertion["exp"] - assertion["iat"] <= 300
            return httpx.Response(200, json={"access_token": f"tok-{uuid.uuid4()}",
                                             "token_type": "Bearer",
                                             "expires_in": self.expires_in})
        if path == "/.well-known/jwks.json":
            return httpx.Response(200, json={"keys": [
                public_jwk(self.signing_key.public_key(), self.signing_kid)]})
        if path == "/v1/proof-requests":
            assert request.headers["authorization"].startswith("Bearer tok-")
            if self.proof_error is not None:
                return self.proof_error
            return httpx.Response(200, json={"transfer_id": TRANSFER,
                                             "proof": self.jws or self.sign()})
        return httpx.Response(404)


@pytest.fixture(name="broker")
def fx_broker() -> Broker:
    return Broker()


@pytest.fixture(name="service")
async def fx_service(broker: Broker) -> Any:
    http = httpx.AsyncClient(transport=httpx.MockTransport(broker.handler))
    async with http, ServiceClient(BASE, SERVICE, broker.service_jwk, http=http) as client:
        yield client


@pytest.fixture(name="make_service")
async def fx_make_service(broker: Broker) -> Any:
    http = httpx.AsyncClient(transport=httpx.MockTransport(broker.handler))

    def make(**kwargs: Any) -> ServiceClient:
        return ServiceClient(BASE, SERVICE, broker.service_jwk, http=http, **kwargs)

    async with http:
        yield make


def fetch(service: ServiceClient) -> Any:
    return service.fetch_proof("birth", CHILD, "elterngeld-antrag", consent_id="c-1",
                               parameters={"place_of_birth": "04011000",
                                           "birth_date": "2026-10-12"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TestProblemMapping:
    """problem+json -> the exception subclass chosen by the type, one row per type."""

    @pytest.mark.parametrize(("slug", "status", "expected"), [
        ("consent-required", 403, ConsentRequiredError),
        ("permission-denied", 403, PermissionDeniedError),
        ("forbidden", 403, PermissionDeniedError),
        ("not-found", 404, NotFoundError),
        ("invalid-request", 422, InvalidRequestError),
        ("routing-failed", 422, RoutingFailedError),
        ("invalid-client", 401, AuthenticationError),
        ("unauthenticated", 401, AuthenticationError),
        ("register-unavailable", 502, RegisterUnavailableError),
        ("register-timeout", 504, RegisterTimeoutError),
        ("store-unavailable", 503, StoreUnavailableError),
        ("internal", 500, ProblemError),
        ("something-new", 418, ProblemError),
    ])
    async def test_problem_type_selects_exception_class(
            self, broker: Broker, service: ServiceClient, slug: str, status: int,
            expected: type[ProblemError]) -> None:
        broker.proof_error = problem_response(slug, status, code="EDM:ERR:0002",
                                              transfer_id=TRANSFER)
        with pytest.raises(expected) as info:
            await fetch(service)
        assert type(info.value) is expected
        assert info.value.status == status
        assert info.value.type == f"urn:einmal:problem:{slug}"
        assert info.value.code == "EDM:ERR:0002"
        assert info.value.transfer_id == TRANSFER
        assert (info.value.title, info.value.detail) == ("t", "d")

    async def test_register_timeout_is_a_register_unavailable_error(
            self, broker: Broker, service: ServiceClient) -> None:
        broker.proof_error = problem_response("register-timeout", 504)
        with pytest.raises(RegisterUnavailableError):
            await fetch(service)

    async def test_non_problem_error_body_becomes_problem_error(
            self, broker: Broker, service: ServiceClient) -> None:
        broker.proof_error = httpx.Response(502, text="<html>Bad Gateway</html>")
        with pytest.raises(ProblemError) as info:
            await fetch(service)
        assert type(info.value) is ProblemError
        assert info.value.status == 502
        assert info.value.type == "about:blank"
        assert info.value.title == "Bad Gateway"
        assert "Bad Gateway" in info.value.detail
        assert info.value.transfer_id is None

    async def test_problem_without_transfer_id_has_none(
            self, broker: Broker, service: ServiceClient) -> None:
        broker.proof_error = problem_response("permission-denied", 403)
        with pytest.raises(PermissionDeniedError) as info:
            await fetch(service)
        assert info.value.transfer_id is None
        assert info.value.code is None

    async def test_citizen_errors_use_the_same_mapping(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            return problem_response("not-found", 404)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            citizen = CitizenClient(BASE, "token", http=http)
            with pytest.raises(NotFoundError):
                await citizen.revoke_consent("nope")

    async def test_problem_errors_are_einmal_errors(self) -> None:
        assert issubclass(ProblemError, EinmalError)
        assert issubclass(ProofVerificationError, EinmalError)
        assert issubclass(TransportError, EinmalError)


class TestTransport:
    async def test_connection_refused_becomes_transport_error_chained(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            msg = "connection refused"
            raise httpx.ConnectError(msg, request=request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            with pytest.raises(TransportError) as info:
                await CitizenClient.demo_login(BASE, CHILD, http=http)
        assert isinstance(info.value.__cause__, httpx.ConnectError)
        assert info.value.url == f"{BASE}/demo/citizen-token"


class TestTokenCaching:
    async def test_second_fetch_reuses_the_access_token(
            self, broker: Broker, service: ServiceClient) -> None:
        await fetch(service)
        await fetch(service)
        assert broker.calls["/v1/token"] == 1
        assert broker.calls["/v1/proof-requests"] == 2

    async def test_jwks_is_fetched_once(self, broker: Broker, service: ServiceClient) -> None:
        await fetch(service)
        await fetch(service)
        assert broker.calls["/.well-known/jwks.json"] == 1

    async def test_token_is_renewed_shortly_before_expiry(
            self, broker: Broker, make_service: Callable[..., ServiceClient]) -> None:
        now = [1_000_000.0]
        service = make_service(clock=lambda: now[0])
        await fetch(service)
        now[0] += 300 - 31
        await fetch(service)
        assert broker.calls["/v1/token"] == 1
        now[0] += 2
        await fetch(service)
        assert broker.calls["/v1/token"] == 2

    async def test_token_is_renewed_once_when_refused(
            self, broker: Broker, service: ServiceClient) -> None:
        await fetch(service)
        responses = [problem_response("unauthenticated", 401)]

        def once(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/proof-requests" and responses:
                return responses.pop()
            return broker.handler(request)

        service._http.client._transport = httpx.MockTransport(once)
        await fetch(service)
        assert broker.calls["/v1/token"] == 2

    async def test_assertion_claims(self, broker: Broker, service: ServiceClient) -> None:
        assertion = service.client_assertion()
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, broker.service_key.public_key(), algorithms=["EdDSA"],
                            audience=f"{BASE}/v1/token")
        assert header["alg"] == "EdDSA"
        assert header["kid"] == "svc-1"
        assert claims["iss"] == claims["sub"] == SERVICE
        assert claims["exp"] - claims["iat"] == 60
        assert claims["jti"] != jwt.decode(service.client_assertion(),
                                           options={"verify_signature": False})["jti"]


class TestProofVerification:
    """Every way a proof can be wrong raises the same opaque ProofVerificationError."""

    async def assert_rejected(self, service: ServiceClient) -> None:
        with pytest.raises(ProofVerificationError) as info:
            await fetch(service)
        assert str(info.value) == "the proof could not be verified"

    async def test_wrong_key_is_rejected(self, broker: Broker, service: ServiceClient) -> None:
        broker.sign_with = Ed25519PrivateKey.generate()
        await self.assert_rejected(service)

    async def test_wrong_audience_is_rejected(self, broker: Broker,
                                              service: ServiceClient) -> None:
        broker.claims = {"aud": "familienkasse"}
        await self.assert_rejected(service)

    async def test_alg_none_is_rejected(self, broker: Broker, service: ServiceClient) -> None:
        header = _b64(json.dumps({"alg": "none", "kid": broker.signing_kid}).encode())
        payload = _b64(json.dumps(broker.default_claims()).encode())
        broker.jws = f"{header}.{payload}."
        await self.assert_rejected(service)

    async def test_other_algorithm_is_rejected(self, broker: Broker,
                                               service: ServiceClient) -> None:
        broker.jws = jwt.encode(broker.default_claims(), "secret-secret-secret-secret-32b!",
                                algorithm="HS256", headers={"kid": broker.signing_kid})
        await self.assert_rejected(service)

    async def test_tampered_payload_is_rejected(self, broker: Broker,
                                                service: ServiceClient) -> None:
        header, _, signature = broker.sign().split(".")
        forged = {**broker.default_claims(), "data": {"birth_date": "2020-01-01"}}
        broker.jws = f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"
        await self.assert_rejected(service)

    async def test_unknown_kid_is_rejected_after_one_refetch(
            self, broker: Broker, service: ServiceClient) -> None:
        broker.header = {"kid": "unknown", "typ": "proof+jwt"}
        await self.assert_rejected(service)
        assert broker.calls["/.well-known/jwks.json"] == 1
        await self.assert_rejected(service)
        assert broker.calls["/.well-known/jwks.json"] == 2

    async def test_rotated_key_is_found_by_refetching_jwks(
            self, broker: Broker, service: ServiceClient) -> None:
        await fetch(service)
        broker.signing_key, broker.signing_kid = Ed25519PrivateKey.generate(), "broker-2"
        broker.header = {"kid": "broker-2", "typ": "proof+jwt"}
        proof = await fetch(service)
        assert proof.transfer_id == TRANSFER
        assert broker.calls["/.well-known/jwks.json"] == 2

    @pytest.mark.parametrize("claims", [
        {"jti": "another-transfer"},
        {"sub": "47036892816"},
        {"proof_type": "income"},
        {"data": None},
        {"register": None},
        {"iat": None},
        {"iss": None},
        {"iat": int(time.time()) + 3600},
    ], ids=["jti", "sub", "proof_type", "no-data", "no-register", "no-iat", "no-iss",
            "iat-future"])
    async def test_claims_not_matching_the_request_are_rejected(
            self, broker: Broker, service: ServiceClient, claims: dict[str, Any]) -> None:
        broker.claims = claims
        await self.assert_rejected(service)

    async def test_wrong_typ_is_rejected(self, broker: Broker, service: ServiceClient) -> None:
        broker.header = {"kid": broker.signing_kid, "typ": "JWT"}
        await self.assert_rejected(service)

    async def test_garbage_is_rejected(self, broker: Broker, service: ServiceClient) -> None:
        broker.jws = "not-a-jws"
        await self.assert_rejected(service)

    async def test_wrong_issuer_is_rejected_when_pinned(
            self, broker: Broker, make_service: Callable[..., ServiceClient]) -> None:
        broker.claims = {"iss": "https://evil.test"}
        await self.assert_rejected(make_service(issuer=BASE))

    async def test_valid_proof_is_returned_verified(self, broker: Broker,
                                                    service: ServiceClient) -> None:
        proof = await fetch(service)
        assert isinstance(proof, VerifiedProof)
        assert proof.transfer_id == TRANSFER
        assert proof.subject == CHILD
        assert proof.proof_type == "birth"
        assert proof.register_id == "standesamt:04011000"
        assert proof.register_name == "Standesamt Bremen"
        assert proof.purpose == "elterngeld-antrag"
        assert proof.data == {"birth_date": "2026-10-12"}
        assert proof.issued_at.tzinfo is UTC
        assert proof.issued_at <= datetime.now(UTC)


class TestCitizenClient:
    async def test_transfers_follow_next_cursor_and_ignore_unknown_fields(self) -> None:
        def item(n: int) -> dict[str, Any]:
            return {"id": f"t{n}", "occurred_at": "2026-11-28T20:15:00Z", "outcome": "delivered",
                    "proof_type": "birth", "purpose": "p", "future_field": 1,
                    "service": {"id": "s", "name": "n", "authority": "a", "land": "HB"}}

        seen: list[str | None] = []

        def handler(request: httpx.Request) -> httpx.Response:
            assert request.headers["authorization"] == "Bearer tok"
            cursor = request.url.params.get("cursor")
            seen.append(cursor)
            if cursor is None:
                return httpx.Response(200, json={"items": [item(1), item(2)],
                                                 "next_cursor": "c2"})
            return httpx.Response(200, json={"items": [item(3)], "next_cursor": None})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            transfers = await CitizenClient(BASE, "tok", http=http).transfers()
        assert [t.id for t in transfers] == ["t1", "t2", "t3"]
        assert seen == [None, "c2"]
        assert transfers[0].service.land == "HB"

    async def test_grant_consent_sends_the_contract_body(self) -> None:
        sent: list[dict[str, Any]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(json.loads(request.content))
            return httpx.Response(201, json={**sent[-1], "id": "c1", "status": "active",
                                             "uses": 0, "granted_at": "2026-11-28T20:15:00Z",
                                             "new_field": True})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            consent = await CitizenClient(BASE, "tok", http=http).grant_consent(
                SERVICE, ["birth"], "elterngeld-antrag",
                datetime(2027, 1, 31, tzinfo=UTC), subject=CHILD)
        assert sent == [{"service_id": SERVICE, "proof_types": ["birth"],
                         "purpose": "elterngeld-antrag", "valid_until": "2027-01-31T00:00:00Z",
                         "subject": CHILD}]
        assert consent.id == "c1"
        assert consent.proof_types == ("birth",)


def test_public_surface_is_pinned() -> None:
    assert set(einmal_client.client.__all__) == {
        "AuthenticationError", "CitizenClient", "Consent", "ConsentRequiredError",
        "EinmalError", "InvalidRequestError", "InvalidResponseError", "NotFoundError",
        "PermissionDeniedError", "Preview", "PreviewCollectedError", "PreviewExpiredError",
        "PreviewPendingError", "PreviewRefusedError", "PreviewRequired",
        "PreviewRequiredError", "ProblemError", "ProofVerificationError", "RegisterRef",
        "RegisterTimeoutError", "RegisterUnavailableError", "RoutingFailedError",
        "ServiceClient", "ServiceRef", "SourceAnswer", "SourceInfo", "StoreUnavailableError",
        "Transfer", "TransportError", "VerifiedProof"}


class TestSourceQuery:
    """``CitizenClient.source_query`` opens what the cockpit relays with its own key and keeps
    only answers signed by the source, about the citizen, for this request."""

    SOURCE_KEY = Ed25519PrivateKey.from_private_bytes(b"r" * 32)
    OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"o" * 32)

    def _relay(self, *, sign_with: Ed25519PrivateKey, idnr: str,
               ) -> Callable[[httpx.Request], httpx.Response]:
        source = {"id": "standesamt:04011000", "name": "Standesamt Bremen", "kind": "register",
                  "group": "Standesämter",
                  "key": public_jwk(self.SOURCE_KEY.public_key(), "k1")}

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/me/sources":
                return httpx.Response(200, json={"items": [source]})
            asked = json.loads(request.content)
            answer = ListAnswer(correlation_id="c-1", source=source["id"], idnr=idnr,
                                entries=(SourceEntry(id="e1", occurred_at=datetime.now(UTC),
                                                     source=source["id"]),))
            payload = seal_answer(asked["session_key"], msgspec.json.encode(answer),
                                  private_key=sign_with, kid="k1")
            return httpx.Response(200, json={"answers": [{
                "source": source["id"], "status": "ok", "envelope": {
                    "nachrichtentyp": "antwortListeProtokolldaten", "version": "1",
                    "correlationID": "c-1", "source": source["id"], "payload": payload}}]})
        return handler

    async def _query(self, handler: Callable[[httpx.Request], httpx.Response],
                     ) -> list[SourceAnswer]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await CitizenClient(BASE, "tok", http=http, idnr=CHILD).source_query()

    async def test_a_signed_answer_about_me_is_opened(self) -> None:
        [answer] = await self._query(self._relay(sign_with=self.SOURCE_KEY, idnr=CHILD))
        assert (answer.status, [e.id for e in answer.entries]) == ("ok", ["e1"])
        assert answer.source.name == "Standesamt Bremen"

    @pytest.mark.parametrize(("signer", "about"), [("other", CHILD), ("source", "81709656328")])
    async def test_another_signer_or_another_citizen_is_an_error_without_entries(
            self, signer: str, about: str) -> None:
        key = self.OTHER_KEY if signer == "other" else self.SOURCE_KEY
        [answer] = await self._query(self._relay(sign_with=key, idnr=about))
        assert (answer.status, answer.entries) == ("error", ())
        assert answer.detail

    async def test_without_my_idnr_the_client_cannot_check_and_does_not_ask(self) -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(
                lambda _: httpx.Response(500))) as http:
            with pytest.raises(ValueError, match="IdNr"):
                await CitizenClient(BASE, "tok", http=http).source_query()


class TestPreview:
    """202 "preview required": fetch_proof raises, request_proof returns it, collect and
    wait_for_preview fetch the released proof or raise the refusal."""

    PENDING: ClassVar[dict[str, str]] = {
        "status": "preview-required", "code": "EDM:ERR:0002", "request_id": TRANSFER,
        "status_url": f"{BASE}/v1/proof-requests/{TRANSFER}",
        "preview_url": f"{BASE}/previews/{TRANSFER}", "expires_at": "2030-01-01T00:15:00Z"}

    @staticmethod
    def held(broker: Broker, answers: list[httpx.Response]) -> Callable[..., httpx.Response]:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/proof-requests":
                return httpx.Response(202, json=TestPreview.PENDING,
                                      headers={"location": f"/v1/proof-requests/{TRANSFER}"})
            if request.url.path == f"/v1/proof-requests/{TRANSFER}":
                assert request.method == "GET"
                assert request.headers["authorization"].startswith("Bearer tok-")
                return answers.pop(0)
            return broker.handler(request)
        return handler

    async def _client(self, broker: Broker, answers: list[httpx.Response]) -> Any:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.held(broker, answers)))
        return http, ServiceClient(BASE, SERVICE, broker.service_jwk, http=http)

    async def test_fetch_proof_raises_preview_required(self, broker) -> None:
        http, service = await self._client(broker, [])
        async with http:
            with pytest.raises(PreviewRequiredError) as caught:
                await fetch(service)
        preview = caught.value.preview
        assert preview.request_id == TRANSFER
        assert preview.preview_url == f"{BASE}/previews/{TRANSFER}"
        assert (preview.subject, preview.proof_type) == (CHILD, "birth")
        assert preview.expires_at == datetime(2030, 1, 1, 0, 15, tzinfo=UTC)

    async def test_wait_then_collect_the_verified_proof(self, broker) -> None:
        answers = [httpx.Response(202, json=self.PENDING),
                   httpx.Response(200, json={"transfer_id": TRANSFER, "proof": broker.sign()})]
        http, service = await self._client(broker, answers)
        async with http:
            first = await service.request_proof("birth", CHILD, "elterngeld-antrag")
            assert isinstance(first, PreviewRequired)
            proof = await service.wait_for_preview(first, timeout=5, interval=0.01)
        assert isinstance(proof, VerifiedProof)
        assert proof.data == {"birth_date": "2026-10-12"}
        assert answers == []

    @pytest.mark.parametrize(("slug", "status", "name"), [
        ("preview-refused", 403, "PreviewRefusedError"),
        ("preview-expired", 410, "PreviewExpiredError"),
        ("preview-collected", 410, "PreviewCollectedError")])
    async def test_refusal_and_expiry_are_errors(self, broker, slug, status, name) -> None:
        answers = [problem_response(slug, status, transfer_id=TRANSFER)]
        http, service = await self._client(broker, answers)
        async with http:
            first = await service.request_proof("birth", CHILD, "elterngeld-antrag")
            with pytest.raises(getattr(einmal_client.client, name)) as caught:
                await service.collect(first)
        assert caught.value.transfer_id == TRANSFER

    async def test_waiting_gives_up_with_the_preview(self, broker) -> None:
        answers = [httpx.Response(202, json=self.PENDING) for _ in range(3)]
        http, service = await self._client(broker, answers)
        async with http:
            first = await service.request_proof("birth", CHILD, "elterngeld-antrag")
            with pytest.raises(PreviewPendingError) as caught:
                await service.wait_for_preview(first, timeout=0.05, interval=0.02)
        assert caught.value.preview.request_id == TRANSFER

    async def test_citizen_decides(self) -> None:
        sent: list[tuple[str, str, Any]] = []
        view = {"request_id": TRANSFER, "service_id": SERVICE, "proof_type": "birth",
                "purpose": "elterngeld-antrag", "status": "pending",
                "expires_at": "2030-01-01T00:15:00Z", "fields": ["birth_date"]}

        def handler(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content) if request.content else None
            sent.append((request.method, request.url.path, body))
            if request.url.path == "/v1/me/previews":
                return httpx.Response(200, json={"items": [view]})
            status = {"accept": "accepted", "refuse": "refused"}.get((body or {}).get(
                "decision"), "pending")
            return httpx.Response(200, json={**view, "status": status,
                                             "data": {"birth_date": "2026-10-12"}})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            citizen = CitizenClient(BASE, "tok", http=http)
            assert [p.request_id for p in await citizen.previews()] == [TRANSFER]
            assert (await citizen.preview(TRANSFER)).data == {"birth_date": "2026-10-12"}
            assert (await citizen.accept_preview(TRANSFER)).status == "accepted"
            assert (await citizen.refuse_preview(TRANSFER)).status == "refused"
        assert sent[2:] == [("POST", f"/v1/me/previews/{TRANSFER}", {"decision": "accept"}),
                            ("POST", f"/v1/me/previews/{TRANSFER}", {"decision": "refuse"})]
