import hashlib
import tomllib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from einmal.demo_keys import (
    demo_kid,
    demo_private_jwk,
    demo_private_key,
    demo_public_jwk,
)
from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.keys import public_key_from_jwk
from policies import DOCUMENTS_DIR, PolicySet, load_policies

SERVICES = {
    "elterngeldstelle-bremen": {(ProofType.BIRTH, "elterngeld-antrag"),
                                (ProofType.CUSTODY, "elterngeld-antrag"),
                                (ProofType.INCOME, "elterngeld-antrag")},
    "familienkasse": {(ProofType.BIRTH, "kindergeld-antrag")},
    "standesamt-namensdienst-bremen": {(ProofType.BIRTH, "namensbestimmung")},
    "unterhaltsvorschussstelle-hamburg": {(ProofType.BIRTH, "unterhaltsvorschuss-antrag"),
                                          (ProofType.CUSTODY, "unterhaltsvorschuss-antrag")},
}


@pytest.fixture(name="shipped", scope="module")
def fx_shipped() -> PolicySet:
    return load_policies(DOCUMENTS_DIR)


class TestShippedDocuments:
    def test_cover_the_four_services_and_their_purposes(self, shipped: PolicySet) -> None:
        assert {
            d.id: {(p.proof_type, p.purpose) for p in d.permissions} for d in shipped.services()
        } == SERVICES

    def test_file_name_is_the_service_id(self) -> None:
        for path in DOCUMENTS_DIR.glob("*.toml"):
            assert tomllib.loads(path.read_text(encoding="utf-8"))["id"] == path.stem

    def test_all_are_demo_services_with_the_derived_public_key(self, shipped: PolicySet) -> None:
        for document in shipped.services():
            assert document.demo, document.id
            (key,) = document.keys
            assert {"kty": key.kty, "crv": key.crv, "x": key.x, "kid": key.kid,
                    "alg": key.alg, "use": key.use} == demo_public_jwk(document.id)

    def test_parsed_keys_verify_demo_signatures(self, shipped: PolicySet) -> None:
        for document in shipped.services():
            public = shipped.public_keys(document.id)[demo_kid(document.id)]
            signature = demo_private_key(document.id).sign(b"assertion")
            public.verify(signature, b"assertion")  # raises if the key does not match

    def test_every_permission_is_minimised(self, shipped: PolicySet) -> None:
        for document in shipped.services():
            for permission in document.permissions:
                allowed = PROOF_FIELDS[permission.proof_type]
                if permission.proof_type is not ProofType.INCOME:  # income needs it all
                    assert set(permission.fields) < allowed, (document.id, permission.purpose)

    def test_no_service_gets_the_child_sex(self, shipped: PolicySet) -> None:
        for document in shipped.services():
            for permission in document.permissions:
                assert "child_sex" not in permission.fields

    def test_familienkasse_gets_no_register_number(self, shipped: PolicySet) -> None:
        permission = shipped.permission("familienkasse", ProofType.BIRTH, "kindergeld-antrag")
        assert permission is not None
        assert permission.consent_required
        assert "register_number" not in permission.fields

    def test_name_service_works_on_legal_basis_without_consent(self, shipped: PolicySet) -> None:
        permission = shipped.permission("standesamt-namensdienst-bremen", ProofType.BIRTH,
                                        "namensbestimmung")
        assert permission is not None
        assert not permission.consent_required
        assert "§ 45 PStG" in permission.legal_basis

    def test_uvo_custody_shows_sole_custody(self, shipped: PolicySet) -> None:
        permission = shipped.permission("unterhaltsvorschussstelle-hamburg", ProofType.CUSTODY,
                                        "unterhaltsvorschuss-antrag")
        assert permission is not None
        assert permission.consent_required
        assert set(permission.fields) == {"custody", "holders", "as_of", "since", "basis"}

    def test_only_the_uvo_custody_proof_asks_for_a_preview(self, shipped: PolicySet) -> None:
        with_preview = {(d.id, p.proof_type, p.purpose) for d in shipped.services()
                        for p in d.permissions if p.preview}
        assert with_preview == {("unterhaltsvorschussstelle-hamburg", ProofType.CUSTODY,
                                 "unterhaltsvorschuss-antrag")}

    def test_consent_is_required_except_for_the_name_service(self, shipped: PolicySet) -> None:
        without_consent = {(d.id, p.purpose) for d in shipped.services() for p in d.permissions
                           if not p.consent_required}
        assert without_consent == {("standesamt-namensdienst-bremen", "namensbestimmung")}

    def test_lands(self, shipped: PolicySet) -> None:
        assert {d.id: d.land for d in shipped.services()} == {
            "elterngeldstelle-bremen": "HB", "familienkasse": "DE",
            "standesamt-namensdienst-bremen": "HB", "unterhaltsvorschussstelle-hamburg": "HH"}


class TestDemoKeys:
    def test_are_deterministic_from_the_documented_seed(self) -> None:
        seed = hashlib.sha256(b"einmal-demo-key:familienkasse").digest()
        assert demo_private_key("familienkasse").private_bytes_raw() == seed

    def test_differ_per_name(self) -> None:
        assert demo_public_jwk("a-service")["x"] != demo_public_jwk("b-service")["x"]

    def test_public_jwk_has_no_private_member(self) -> None:
        jwk = demo_public_jwk("familienkasse")
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert jwk["kid"] == "familienkasse-demo-1"
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA",
                                                                    "sig")

    def test_private_jwk_is_the_public_one_plus_d(self) -> None:
        private = demo_private_jwk("familienkasse")
        assert {k: v for k, v in private.items() if k != "d"} == demo_public_jwk("familienkasse")
        raw = public_key_from_jwk(private).public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert raw == demo_private_key("familienkasse").public_key().public_bytes_raw()
