"""PreviewDesk over a fake store and a hand-moved clock: a proof held for the citizen's release
is released once, refused, or expired by the clock - and each ends in exactly one transfer
record. Failure cases first."""

from collections.abc import Awaitable
from datetime import timedelta

import jwt
import pytest

from einmal.domain.proofs import ProofType
from einmal.domain.transfer import Outcome
from einmal.problems import ProblemError
from einmal.store import StoreError
from tests.unit.broker.conftest import (
    CHILD,
    PARENT,
    PREVIEW_TTL,
    SERVICE,
    WITH_CONSENT,
    WITH_PREVIEW,
    Broker,
    proof_request,
)


async def _held(broker: Broker) -> str:
    """A custody proof held for the subject's release (the policy asks for a preview)."""
    answer = await broker.service.request_proof(
        SERVICE, proof_request(WITH_PREVIEW, proof_type=ProofType.CUSTODY))
    assert answer["status"] == "preview-required"
    return answer["request_id"]


async def _problem(awaitable: Awaitable[object]) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        await awaitable
    return caught.value


class TestWhoMaySee:
    async def test_another_service_gets_not_found(self, broker: Broker) -> None:
        request_id = await _held(broker)
        problem = await _problem(broker.desk.status("another-service", request_id))
        assert problem.slug == "not-found"

    async def test_another_citizen_can_neither_see_nor_decide(self, broker: Broker) -> None:
        request_id = await _held(broker)
        for attempt in (broker.desk.show(PARENT, request_id),
                        broker.desk.decide(PARENT, request_id, "accept")):
            assert (await _problem(attempt)).slug == "not-found"
        assert await broker.desk.list_for(PARENT, None) == []
        assert broker.store.previews[request_id].state == "pending"

    async def test_an_unknown_status_filter_is_refused(self, broker: Broker) -> None:
        assert (await _problem(broker.desk.list_for(CHILD, "sideways"))).slug == (
            "invalid-request")


class TestExpiry:
    async def test_an_undecided_preview_expires_by_the_clock_and_is_destroyed(
            self, broker: Broker) -> None:
        request_id = await _held(broker)
        broker.clock.advance(PREVIEW_TTL)
        problem = await _problem(broker.desk.decide(CHILD, request_id, "accept"))
        assert (problem.slug, problem.status) == ("preview-expired", 410)
        row = broker.store.previews[request_id]
        assert (row.state, row.sealed) == ("expired", None)
        [record] = broker.store.records
        assert (record.id, record.outcome, record.error_type) == (
            request_id, Outcome.REFUSED, "preview-expired")
        assert (await _problem(broker.desk.status(SERVICE, request_id))).slug == (
            "preview-expired")
        assert len(broker.store.records) == 1  # one record per held proof

    async def test_an_accepted_preview_not_collected_in_time_expires(self,
                                                                     broker: Broker) -> None:
        request_id = await _held(broker)
        await broker.desk.decide(CHILD, request_id, "accept")
        broker.clock.advance(PREVIEW_TTL)
        problem = await _problem(broker.desk.status(SERVICE, request_id))
        assert problem.slug == "preview-expired"
        assert [(r.outcome, r.error_type) for r in broker.store.records] == [
            (Outcome.REFUSED, "preview-expired")]

    async def test_the_sweep_expires_what_nobody_asks_for(self, broker: Broker) -> None:
        overdue = await _held(broker)
        broker.clock.advance(PREVIEW_TTL - timedelta(seconds=1))
        fresh = await _held(broker)
        assert await broker.desk.sweep() == 0
        broker.clock.advance(timedelta(seconds=1))
        assert await broker.desk.sweep() == 1
        assert broker.store.previews[overdue].sealed is None
        assert broker.store.previews[fresh].state == "pending"

    async def test_a_failing_store_fails_the_sweep(self, broker: Broker) -> None:
        await _held(broker)
        broker.clock.advance(PREVIEW_TTL)
        broker.store.failure = StoreError("down")
        with pytest.raises(StoreError):
            await broker.desk.sweep()


class TestDecisions:
    async def test_a_refused_preview_releases_nothing(self, broker: Broker) -> None:
        request_id = await _held(broker)
        view = await broker.desk.decide(CHILD, request_id, "refuse")
        assert (view["status"], view["data"]) == ("refused", None)
        problem = await _problem(broker.desk.status(SERVICE, request_id))
        assert (problem.slug, problem.extensions["transfer_id"]) == ("preview-refused",
                                                                     request_id)
        [record] = broker.store.records
        assert (record.outcome, record.error_type) == (Outcome.REFUSED, "preview-refused")
        assert record.data_categories == ()

    async def test_deciding_twice_is_a_conflict(self, broker: Broker) -> None:
        request_id = await _held(broker)
        await broker.desk.decide(CHILD, request_id, "accept")
        problem = await _problem(broker.desk.decide(CHILD, request_id, "refuse"))
        assert (problem.slug, problem.extensions["state"]) == ("conflict", "accepted")

    async def test_a_revoked_consent_releases_nothing_at_collection(self,
                                                                    broker: Broker) -> None:
        consent_id = await broker.consent(PARENT, purpose=WITH_CONSENT, preview=True)
        request_id = await _held_with_consent(broker, consent_id)
        await broker.desk.decide(PARENT, request_id, "accept")  # the consenting parent
        await broker.service.revoke_consent(PARENT, consent_id)
        problem = await _problem(broker.desk.status(SERVICE, request_id))
        assert problem.slug == "consent-required"
        assert [(r.outcome, r.error_type) for r in broker.store.records] == [
            (Outcome.REFUSED, "consent-required")]


class TestHoldAndRelease:
    async def test_a_held_proof_answers_202_and_nothing_leaves(self, broker: Broker) -> None:
        answer = await broker.service.request_proof(
            SERVICE, proof_request(WITH_PREVIEW, proof_type=ProofType.CUSTODY))
        assert set(answer) == {"status", "code", "request_id", "status_url", "preview_url",
                               "expires_at"}
        assert "proof" not in answer and broker.store.records == []
        row = broker.store.previews[answer["request_id"]]
        assert b"joint" not in (row.sealed or b"") and CHILD not in repr(row)  # sealed
        assert row.citizen_ref == broker.notary.pseudonym(CHILD)  # the subject decides
        assert broker.outcomes == [("custody", "preview")]
        assert await broker.desk.status(SERVICE, row.id) == answer  # still pending

    async def test_the_citizen_sees_the_minimised_data_until_it_is_destroyed(
            self, broker: Broker) -> None:
        request_id = await _held(broker)
        [listed] = await broker.desk.list_for(CHILD, None)
        assert (listed["request_id"], listed["status"]) == (request_id, "pending")
        shown = await broker.desk.show(CHILD, request_id)
        assert shown["data"] == {"custody": "joint", "holders": [PARENT]}  # no "basis"
        await broker.desk.decide(CHILD, request_id, "refuse")
        assert (await broker.desk.show(CHILD, request_id))["data"] is None

    async def test_an_accepted_preview_is_collected_once(self, broker: Broker) -> None:
        request_id = await _held(broker)
        view = await broker.desk.decide(CHILD, request_id, "accept")
        assert view["status"] == "accepted"
        released = await broker.desk.status(SERVICE, request_id)
        [record] = broker.store.records
        assert released["transfer_id"] == record.id == request_id
        assert (record.outcome, record.data_categories) == (Outcome.DELIVERED,
                                                            ("custody", "holders"))
        claims = jwt.decode(released["proof"], broker.proof_key.private_key.public_key(),
                            algorithms=["EdDSA"], audience=SERVICE)
        assert claims["data"] == {"custody": "joint", "holders": [PARENT]}
        assert broker.store.previews[request_id].sealed is None
        problem = await _problem(broker.desk.status(SERVICE, request_id))
        assert (problem.slug, problem.status) == ("preview-collected", 410)
        assert broker.outcomes == [("custody", "preview"), ("custody", "delivered")]

    async def test_the_stored_idempotent_answer_is_the_202(self, broker: Broker) -> None:
        first = await broker.service.request_proof(
            SERVICE, proof_request(WITH_PREVIEW, proof_type=ProofType.CUSTODY),
            idempotency_key="k", request_hash="h")
        again = await broker.service.request_proof(
            SERVICE, proof_request(WITH_PREVIEW, proof_type=ProofType.CUSTODY),
            idempotency_key="k", request_hash="h")
        assert again == first and len(broker.store.previews) == 1


async def _held_with_consent(broker: Broker, consent_id: str) -> str:
    """A birth proof held because the parent's consent asks for a preview."""
    answer = await broker.service.request_proof(
        SERVICE, proof_request(WITH_CONSENT, consent_id=consent_id))
    assert answer["status"] == "preview-required"
    return answer["request_id"]
