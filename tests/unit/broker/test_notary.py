"""The notary's signed proof: the same bytes PyJWT makes, verifiable as before; the keyed
pseudonyms: HMAC-SHA256."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.notary import Notary, TransferDraft
from broker.protocol import Pseudonyms
from einmal.domain.transfer import Outcome, ServiceRef
from einmal.keys import SigningKey
from tests.unit.broker.conftest import BIRTH, CHILD, ISSUER, SERVICE


def _segment(token: str, index: int) -> bytes:
    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture(name="key")
def fx_key() -> SigningKey:
    return SigningKey(kid="broker-proof-7", private_key=Ed25519PrivateKey.generate())


@pytest.fixture(name="token")
def fx_token(key: SigningKey) -> str:
    notary = Notary(proof_key=key, issuer=ISSUER, pseudonym_key=b"p" * 32,
                    answer_key=b"a" * 32, clock=lambda: 1_700_000_000.5)
    draft = TransferDraft(proof_type="birth", purpose="namensbestimmung", subject=CHILD,
                          service=ServiceRef(id=SERVICE, name="Test", authority="Amt",
                                             land="HB"))
    record = notary.record(draft, Outcome.DELIVERED, proof=BIRTH)
    return notary.sign(record, SERVICE, BIRTH, {"birth_date": "2024-05-01", "name": "Ä"})


class TestSign:
    def test_the_proof_is_the_jws_pyjwt_makes_of_the_same_claims(self, key: SigningKey,
                                                                  token: str) -> None:
        payload = _segment(token, 1)
        expected = jwt.PyJWS().encode(payload, key.private_key, algorithm="EdDSA",
                                      headers={"kid": key.kid, "typ": "proof+jwt"})
        assert token == expected

    def test_the_header_names_algorithm_key_and_type(self, key: SigningKey, token: str) -> None:
        assert _segment(token, 0) == (
            b'{"alg":"EdDSA","kid":"broker-proof-7","typ":"proof+jwt"}')

    def test_a_verifier_with_the_public_key_reads_the_claims(self, key: SigningKey,
                                                             token: str) -> None:
        claims = jwt.decode(token, key.private_key.public_key(), algorithms=["EdDSA"],
                            audience=SERVICE, issuer=ISSUER,
                            options={"require": ["iss", "aud", "sub", "iat", "jti"]})
        assert claims["sub"] == CHILD
        assert claims["iat"] == 1_700_000_000
        assert claims["data"] == {"birth_date": "2024-05-01", "name": "Ä"}
        assert claims["register"] == {"id": BIRTH.issuer, "name": BIRTH.issuer_name}
        assert json.loads(_segment(token, 1))["proof_type"] == "birth"

    def test_another_key_does_not_verify_it(self, token: str) -> None:
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, Ed25519PrivateKey.generate().public_key(),
                       algorithms=["EdDSA"], audience=SERVICE)


class TestPseudonyms:
    @pytest.mark.parametrize("key", [b"k" * 32, bytes(range(64)), b"long" * 40],
                             ids=["32 bytes", "one block", "longer than a block"])
    def test_a_pseudonym_is_the_hmac_sha256_of_the_idnr(self, key: bytes) -> None:
        pseudonyms = Pseudonyms(key)
        for idnr in ("86095742719", "", "ä" * 100):
            assert pseudonyms(idnr) == hmac.new(key, idnr.encode(), hashlib.sha256).hexdigest()

    def test_a_short_key_is_refused(self) -> None:
        with pytest.raises(ValueError, match="32 bytes"):
            Pseudonyms(b"k" * 31)
