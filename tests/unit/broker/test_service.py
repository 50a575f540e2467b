"""BrokerService over a fake store, fake registers and a hand-moved clock: client
authentication, consents, the proof request and its Idempotency-Key. Failure cases first."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import msgspec
import pytest

from broker.service import ConsentIn
from einmal.domain.contract import MAX_CONSENT_DAYS
from einmal.domain.proofs import ProofType
from einmal.domain.registers import RegisterTimeoutError
from einmal.domain.transfer import Outcome
from einmal.problems import ProblemError
from einmal.store import StoreError
from tests.unit.broker.conftest import (
    BIRTH_FIELDS,
    CHILD,
    OTHER,
    PARENT,
    SERVICE,
    T0,
    WITH_CONSENT,
    Broker,
    proof_request,
)


class TestAccessTokens:
    """PyJWT checks an assertion's ``exp`` against the wall clock: these run at real time."""

    @pytest.fixture(name="broker")
    def fx_broker(self, make_broker: Callable[..., Broker]) -> Broker:
        return make_broker(start=datetime.now(UTC))

    async def test_a_replayed_assertion_is_refused(self, broker: Broker) -> None:
        form = broker.token_form(broker.assertion())
        await broker.service.issue_access_token(form)
        with pytest.raises(ProblemError) as caught:
            await broker.service.issue_access_token(form)
        assert (caught.value.slug, caught.value.status) == ("invalid-client", 401)
        assert "replay" in caught.value.detail

    async def test_an_unknown_client_is_refused(self, broker: Broker) -> None:
        form = broker.token_form(broker.assertion(iss="nobody", sub="nobody"))
        with pytest.raises(ProblemError, match="Unknown client") as caught:
            await broker.service.issue_access_token(form)
        assert caught.value.slug == "invalid-client"
        assert broker.store.jtis == {}

    async def test_an_assertion_living_too_long_is_refused(self, broker: Broker) -> None:
        form = broker.token_form(broker.assertion(exp=int(broker.clock()) + 3600))
        with pytest.raises(ProblemError, match="too far ahead"):
            await broker.service.issue_access_token(form)

    async def test_a_store_failure_issues_no_token(self, broker: Broker) -> None:
        broker.store.failure = StoreError("disk gone")
        with pytest.raises(StoreError):
            await broker.service.issue_access_token(broker.token_form(broker.assertion()))

    async def test_a_valid_assertion_gets_a_bearer_token_for_the_client(self,
                                                                       broker: Broker) -> None:
        answer = await broker.service.issue_access_token(broker.token_form(broker.assertion()))
        assert answer["token_type"] == "Bearer"
        claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
        assert (claims["sub"], claims["iat"]) == (SERVICE, int(broker.clock()))
        assert len(broker.store.jtis) == 1


class TestConsents:
    async def test_a_purpose_the_policy_does_not_allow_is_refused(self,
                                                                  broker: Broker) -> None:
        with pytest.raises(ProblemError, match="may not fetch") as caught:
            await broker.consent(purpose="werbung")
        assert caught.value.slug == "invalid-request"
        assert broker.store.consents == {}

    async def test_a_validity_beyond_the_maximum_is_refused(self, broker: Broker) -> None:
        with pytest.raises(ProblemError, match="within two years"):
            await broker.consent(days=MAX_CONSENT_DAYS + 1)
        assert await broker.consent(days=MAX_CONSENT_DAYS)

    async def test_a_validity_without_a_time_zone_is_refused(self, broker: Broker) -> None:
        request = ConsentIn(service_id=SERVICE, proof_types=[ProofType.BIRTH],
                            purpose=WITH_CONSENT, valid_until=T0.replace(tzinfo=None))
        with pytest.raises(ProblemError, match="time zone"):
            await broker.service.grant_consent(PARENT, request)

    async def test_another_citizens_consent_cannot_be_revoked(self, broker: Broker) -> None:
        consent_id = await broker.consent(PARENT)
        with pytest.raises(ProblemError) as caught:
            await broker.service.revoke_consent(OTHER, consent_id)
        assert caught.value.slug == "not-found"
        assert broker.store.consents[consent_id].revoked_at is None

    async def test_a_consent_is_stored_under_pseudonyms_and_listed(self,
                                                                  broker: Broker) -> None:
        consent_id = await broker.consent(PARENT, subject=CHILD)
        stored = broker.store.consents[consent_id]
        assert PARENT not in repr(stored) and CHILD not in repr(stored)
        assert stored.citizen_ref == broker.notary.pseudonym(PARENT)
        listed = await broker.service.list_consents(PARENT)
        assert [(c.id, c.status, c.subject) for c in listed] == [
            (consent_id, "active", "86*******19")]
        assert await broker.service.list_consents(CHILD) == []

    async def test_the_status_follows_revocation_expiry_and_use(self, broker: Broker) -> None:
        revoked = await broker.consent(days=1)
        expiring = await broker.consent(days=1)
        used_up = await broker.consent(max_uses=1)
        assert (await broker.service.revoke_consent(PARENT, revoked)).status == "revoked"
        await broker.service.request_proof(SERVICE, proof_request(WITH_CONSENT,
                                                                  consent_id=used_up))
        broker.clock.advance(timedelta(days=1))
        statuses = {c.id: c.status for c in await broker.service.list_consents(PARENT)}
        assert statuses == {revoked: "revoked", expiring: "expired", used_up: "used_up"}


class TestProofRequest:
    async def test_a_purpose_the_policy_does_not_allow_is_refused_and_recorded(
            self, broker: Broker) -> None:
        with pytest.raises(ProblemError) as caught:
            await broker.service.request_proof(SERVICE, proof_request("werbung"))
        assert caught.value.slug == "permission-denied"
        assert broker.connectors[ProofType.BIRTH].fetched == []
        [record] = broker.store.records
        assert (record.outcome, record.error_type) == (Outcome.REFUSED, "permission-denied")
        assert caught.value.extensions["transfer_id"] == record.id
        assert record.data_categories == () and record.purpose_text == ""
        assert broker.outcomes == [("birth", "refused")] and len(broker.commits) == 1

    async def test_an_invalid_subject_is_refused_before_anything_is_recorded(
            self, broker: Broker) -> None:
        with pytest.raises(ProblemError, match="subject") as caught:
            await broker.service.request_proof(SERVICE, proof_request(subject="12345678901"))
        assert caught.value.slug == "invalid-request"
        assert broker.store.records == []

    async def test_without_a_usable_consent_nothing_is_fetched(self, broker: Broker) -> None:
        revoked = await broker.consent()
        await broker.service.revoke_consent(PARENT, revoked)
        for consent_id in (None, revoked, "unknown"):
            with pytest.raises(ProblemError) as caught:
                await broker.service.request_proof(
                    SERVICE, proof_request(WITH_CONSENT, consent_id=consent_id))
            assert caught.value.slug == "consent-required"
        assert broker.connectors[ProofType.BIRTH].fetched == []
        assert [(r.outcome, r.error_type) for r in broker.store.records] == [
            (Outcome.REFUSED, "consent-required")] * 3

    async def test_a_consent_for_another_subject_does_not_cover_the_request(
            self, broker: Broker) -> None:
        consent_id = await broker.consent(PARENT, subject=CHILD)
        with pytest.raises(ProblemError, match="No active consent"):
            await broker.service.request_proof(
                SERVICE, proof_request(WITH_CONSENT, subject=OTHER, consent_id=consent_id))

    async def test_a_register_failure_is_recorded_as_failed(
            self, make_broker: Callable[..., Broker]) -> None:
        broker = make_broker(birth_error=RegisterTimeoutError("slow"))
        with pytest.raises(ProblemError) as caught:
            await broker.service.request_proof(SERVICE, proof_request())
        assert (caught.value.slug, caught.value.status) == ("register-timeout", 504)
        [record] = broker.store.records
        assert (record.outcome, record.error_type) == (Outcome.FAILED, "register-timeout")
        assert caught.value.extensions["transfer_id"] == record.id
        assert broker.outcomes == [("birth", "failed")]

    async def test_a_consent_used_up_during_the_fetch_releases_nothing(self,
                                                                       broker: Broker) -> None:
        consent_id = await broker.consent(max_uses=1)

        async def another_request_uses_it() -> None:  # while the register answers
            consent = broker.store.consents[consent_id]
            broker.store.consents[consent_id] = msgspec.structs.replace(consent, uses=1)

        broker.connectors[ProofType.BIRTH].before_fetch = another_request_uses_it
        with pytest.raises(ProblemError, match="during the request") as caught:
            await broker.service.request_proof(
                SERVICE, proof_request(WITH_CONSENT, consent_id=consent_id))
        assert caught.value.slug == "consent-required"
        [record] = broker.store.records
        assert (record.outcome, record.error_type) == (Outcome.REFUSED, "consent-required")
        assert caught.value.extensions["transfer_id"] == record.id
        assert broker.outcomes == [("birth", "refused")]

    async def test_a_store_failure_releases_nothing(self, broker: Broker) -> None:
        broker.store.failure = StoreError("disk full")
        with pytest.raises(StoreError):
            await broker.service.request_proof(SERVICE, proof_request())
        assert broker.outcomes == [] and broker.commits == []

    async def test_a_released_proof_is_signed_minimised_and_recorded_first(
            self, broker: Broker) -> None:
        answer = await broker.service.request_proof(SERVICE, proof_request(),
                                                    correlation_id="case-7")
        [record] = broker.store.records
        assert answer["transfer_id"] == record.id
        claims = jwt.decode(answer["proof"], broker.proof_key.private_key.public_key(),
                            algorithms=["EdDSA"], audience=SERVICE)
        assert set(claims["data"]) == set(BIRTH_FIELDS)  # minimised to the policy's fields
        assert (claims["sub"], claims["jti"]) == (CHILD, record.id)
        assert record.outcome is Outcome.DELIVERED
        assert record.data_categories == tuple(sorted(BIRTH_FIELDS))
        assert record.retention_until == T0 + timedelta(days=30)
        assert record.correlation_id == "case-7"
        assert {(c.idnr, c.relation) for c in record.concerned} == {(CHILD, "self"),
                                                                     (PARENT, "concerned")}
        assert broker.outcomes == [("birth", "delivered")] and len(broker.commits) == 1

    async def test_a_consent_use_is_consumed_with_the_record(self, broker: Broker) -> None:
        consent_id = await broker.consent(max_uses=1)
        await broker.service.request_proof(SERVICE, proof_request(WITH_CONSENT,
                                                                  consent_id=consent_id))
        assert broker.store.consents[consent_id].uses == 1
        assert broker.store.records[0].consent_id == consent_id
        with pytest.raises(ProblemError, match="No active consent"):
            await broker.service.request_proof(SERVICE, proof_request(WITH_CONSENT,
                                                                      consent_id=consent_id))


class TestIdempotencyKey:
    async def test_a_key_reused_for_another_body_is_refused(self, broker: Broker) -> None:
        await broker.service.request_proof(SERVICE, proof_request(), idempotency_key="k",
                                           request_hash="h1")
        with pytest.raises(ProblemError, match="different request") as caught:
            await broker.service.request_proof(SERVICE, proof_request(), idempotency_key="k",
                                               request_hash="h2")
        assert caught.value.slug == "invalid-request"

    async def test_a_key_still_in_flight_is_a_conflict_to_retry(self, broker: Broker) -> None:
        await broker.store.claim_idempotency(SERVICE, "k", "h", T0, T0 + timedelta(days=1))
        with pytest.raises(ProblemError) as caught:
            await broker.service.request_proof(SERVICE, proof_request(), idempotency_key="k",
                                               request_hash="h")
        assert caught.value.slug == "conflict"
        assert caught.value.headers == {"Retry-After": "1"}
        assert broker.connectors[ProofType.BIRTH].fetched == []

    async def test_a_failed_first_request_frees_the_key(
            self, make_broker: Callable[..., Broker]) -> None:
        broker = make_broker(birth_error=RegisterTimeoutError("slow"))
        for _ in range(2):
            with pytest.raises(ProblemError, match="slow"):
                await broker.service.request_proof(SERVICE, proof_request(),
                                                   idempotency_key="k", request_hash="h")
        assert len(broker.connectors[ProofType.BIRTH].fetched) == 2
        assert broker.store.claims == {}

    async def test_a_retry_gets_the_first_answer_and_nothing_is_fetched_twice(
            self, broker: Broker) -> None:
        first = await broker.service.request_proof(SERVICE, proof_request(),
                                                   idempotency_key="k", request_hash="h")
        again = await broker.service.request_proof(SERVICE, proof_request(),
                                                   idempotency_key="k", request_hash="h")
        assert again == first
        assert len(broker.connectors[ProofType.BIRTH].fetched) == 1
        assert len(broker.store.records) == 1
        stored = broker.store.claims[SERVICE, "k"].response
        assert stored is not None and first["proof"].encode()[:40] not in stored  # sealed
