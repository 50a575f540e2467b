"""The broker makes the transfer id before it asks the register and tells the register
(``Requester.transfer_id``, header X-Einmal-Transfer): the register's protocol entry and the
broker's record name the same transfer, whatever the outcome (issue 15 §1, §6)."""

from collections.abc import Callable

import msgspec
import pytest

from einmal.domain.proofs import ProofType
from einmal.domain.registers import RegisterTimeoutError
from einmal.problems import ProblemError
from tests.unit.broker.conftest import (
    WITH_CONSENT,
    WITH_PREVIEW,
    Broker,
    proof_request,
)


def _told(broker: Broker, proof_type: ProofType = ProofType.BIRTH) -> str:
    [requester] = broker.connectors[proof_type].requesters
    assert requester is not None and requester.transfer_id
    return requester.transfer_id


class TestTheRegisterIsToldTheTransferId:
    async def test_a_failed_query_keeps_the_id_the_register_was_told(
            self, make_broker: Callable[..., Broker]) -> None:
        broker = make_broker(birth_error=RegisterTimeoutError("slow"))
        with pytest.raises(ProblemError) as caught:
            await broker.service.request_proof("elterngeld-test", proof_request())
        [record] = broker.store.records
        assert record.id == _told(broker) == caught.value.extensions["transfer_id"]

    async def test_a_consent_used_up_meanwhile_is_refused_under_the_same_id(
            self, broker: Broker) -> None:
        consent_id = await broker.consent(max_uses=1)

        async def another_request_uses_it() -> None:
            consent = broker.store.consents[consent_id]
            broker.store.consents[consent_id] = msgspec.structs.replace(consent, uses=1)

        broker.connectors[ProofType.BIRTH].before_fetch = another_request_uses_it
        with pytest.raises(ProblemError) as caught:
            await broker.service.request_proof(
                "elterngeld-test", proof_request(WITH_CONSENT, consent_id=consent_id))
        [record] = broker.store.records
        assert record.id == _told(broker) == caught.value.extensions["transfer_id"]

    async def test_a_released_proof_carries_the_id_the_register_was_told(
            self, broker: Broker) -> None:
        answer = await broker.service.request_proof("elterngeld-test", proof_request())
        [record] = broker.store.records
        assert answer["transfer_id"] == record.id == _told(broker)
        requester = broker.connectors[ProofType.BIRTH].requesters[0]
        assert requester is not None
        assert (requester.service_id, requester.purpose) == ("elterngeld-test",
                                                             "namensbestimmung")

    async def test_a_held_preview_is_filed_under_the_id_the_register_was_told(
            self, broker: Broker) -> None:
        body = await broker.service.request_proof(
            "elterngeld-test", proof_request(WITH_PREVIEW, proof_type=ProofType.CUSTODY))
        assert body["request_id"] == _told(broker, ProofType.CUSTODY)

    async def test_two_requests_tell_two_ids(self, broker: Broker) -> None:
        await broker.service.request_proof("elterngeld-test", proof_request())
        await broker.service.request_proof("elterngeld-test", proof_request())
        told = [r.transfer_id for r in broker.connectors[ProofType.BIRTH].requesters
                if r is not None]
        assert len(set(told)) == 2
        assert {r.id for r in broker.store.records} == set(told)
