"""A broker service over fakes (tests/unit/broker/fakes.py): in-memory store, policies,
registers and a clock moved by hand. No database, no HTTP."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.notary import Notary
from broker.previews import PreviewDesk
from broker.service import BrokerService, ConsentIn, ProofRequestIn
from einmal.domain.policy import Jwk, Permission, PolicyDocument
from einmal.domain.proofs import ProofType
from einmal.domain.registers import ConnectorError, ProofData
from einmal.ids import uuid4
from einmal.keys import SigningKey, public_jwk
from einmal.tokens import TokenIssuer
from tests.unit.broker.fakes import Clock, FakeBrokerStore, FakeConnector, FakePolicies

T0 = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
ISSUER = "https://broker.test"
TOKEN_ENDPOINT = f"{ISSUER}/v1/token"
SERVICE = "elterngeld-test"
CHILD, PARENT, OTHER = "86095742719", "81709656328", "60478593182"
#: purposes of the test service's policy
OPEN, WITH_CONSENT, WITH_PREVIEW = "namensbestimmung", "elterngeld-antrag", "uvo-antrag"
BIRTH_FIELDS = ("birth_date", "child_given_names")
PREVIEW_TTL = timedelta(minutes=15)


def _permission(proof_type: ProofType, purpose: str, *, consent: bool = False,
                preview: bool = False, fields: tuple[str, ...] = BIRTH_FIELDS) -> Permission:
    return Permission(proof_type=proof_type, purpose=purpose,
                      purpose_text=f"Text for {purpose}", legal_basis="§ 1 Test",
                      consent_required=consent, fields=fields, retention_days=30,
                      preview=preview)


def service_document(client_key: Ed25519PrivateKey) -> PolicyDocument:
    jwk = public_jwk(client_key.public_key(), f"{SERVICE}-1")
    return PolicyDocument(
        id=SERVICE, name="Elterngeldstelle Test", authority="Amt", land="HB",
        keys=(Jwk(kty=jwk["kty"], crv=jwk["crv"], x=jwk["x"], kid=jwk["kid"]),),
        permissions=(
            _permission(ProofType.BIRTH, OPEN),
            _permission(ProofType.BIRTH, WITH_CONSENT, consent=True),
            _permission(ProofType.CUSTODY, WITH_PREVIEW, preview=True,
                        fields=("custody", "holders")),
        ))


BIRTH = ProofData(proof_type=ProofType.BIRTH, issuer="standesamt:04011000",
                  issuer_name="Standesamt Bremen",
                  data={"birth_date": "2024-05-01", "child_given_names": "Elfe",
                        "parents": [PARENT], "register_number": "G 1/2024"},
                  concerned=(CHILD, PARENT))
CUSTODY = ProofData(proof_type=ProofType.CUSTODY, issuer="sorgeregister:HB",
                    issuer_name="Sorgeregister Bremen",
                    data={"custody": "joint", "holders": [PARENT], "basis": "law"},
                    concerned=(CHILD, PARENT))


@dataclass
class Broker:
    """The service under test and everything it was built from."""

    service: BrokerService
    store: FakeBrokerStore
    clock: Clock
    notary: Notary
    proof_key: SigningKey
    client_key: Ed25519PrivateKey
    connectors: dict[ProofType, FakeConnector]
    outcomes: list[tuple[str, str]] = field(default_factory=list)
    commits: list[None] = field(default_factory=list)

    @property
    def desk(self) -> PreviewDesk:
        return self.service.previews

    def assertion(self, **overrides: Any) -> str:
        """A client assertion (RFC 7523) of the test service, valid for a minute."""
        now = int(self.clock())
        claims = {"iss": SERVICE, "sub": SERVICE, "aud": TOKEN_ENDPOINT, "exp": now + 60,
                  "iat": now, "jti": uuid4(), **overrides}
        return jwt.encode(claims, self.client_key, algorithm="EdDSA",
                          headers={"kid": f"{SERVICE}-1"})

    def token_form(self, assertion: str) -> dict[str, str]:
        return {"grant_type": "client_credentials", "client_assertion": assertion,
                "client_assertion_type":
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}

    async def consent(self, citizen: str = PARENT, *, subject: str = CHILD,
                      purpose: str = WITH_CONSENT, max_uses: int | None = None,
                      preview: bool = False, days: int = 30,
                      proof_type: ProofType = ProofType.BIRTH) -> str:
        out = await self.service.grant_consent(citizen, ConsentIn(
            service_id=SERVICE, proof_types=[proof_type],
            purpose=purpose, valid_until=self.notary.now() + timedelta(days=days),
            max_uses=max_uses, subject=subject, preview=preview))
        return out.id


def proof_request(purpose: str = OPEN, *, proof_type: ProofType = ProofType.BIRTH,
                  subject: str = CHILD, consent_id: str | None = None) -> ProofRequestIn:
    return ProofRequestIn(proof_type=proof_type, subject=subject, purpose=purpose,
                          consent_id=consent_id)


@pytest.fixture(name="make_broker")
def fx_make_broker() -> Callable[..., Broker]:
    def make(*, start: datetime = T0, birth_error: ConnectorError | None = None) -> Broker:
        clock = Clock(start)
        client_key = Ed25519PrivateKey.generate()
        proof_key = SigningKey(kid="broker-proof-1", private_key=Ed25519PrivateKey.generate())
        store = FakeBrokerStore()
        policies = FakePolicies(service_document(client_key),
                                keys={SERVICE: client_key.public_key()})
        connectors = {
            ProofType.BIRTH: FakeConnector(ProofType.BIRTH, BIRTH, birth_error),
            ProofType.CUSTODY: FakeConnector(ProofType.CUSTODY, CUSTODY)}
        outcomes: list[tuple[str, str]] = []
        commits: list[None] = []
        notary = Notary(proof_key=proof_key, issuer=ISSUER, pseudonym_key=b"p" * 32,
                        answer_key=b"a" * 32, clock=clock,
                        on_committed=lambda: commits.append(None),
                        on_outcome=lambda proof_type, outcome: outcomes.append(
                            (proof_type, outcome)))
        desk = PreviewDesk(store=store, policies=policies, notary=notary, key=b"k" * 32,
                           ttl_s=int(PREVIEW_TTL.total_seconds()), status_base=ISSUER,
                           cockpit_url="https://cockpit.test")
        service = BrokerService(
            store=store, policies=policies, connectors=connectors, notary=notary,
            previews=desk,
            access_tokens=TokenIssuer(key=SigningKey(
                kid="broker-token-1", private_key=Ed25519PrivateKey.generate()),
                issuer=ISSUER, audience="einmal-broker", ttl_s=300),
            token_endpoint=TOKEN_ENDPOINT, allow_test_idnrs=False)
        return Broker(service=service, store=store, clock=clock, notary=notary,
                      proof_key=proof_key, client_key=client_key,
                      connectors=connectors, outcomes=outcomes, commits=commits)

    return make


@pytest.fixture(name="broker")
def fx_broker(make_broker: Callable[..., Broker]) -> Broker:
    return make_broker()
