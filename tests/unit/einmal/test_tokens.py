import time

import jwt
import pytest

from einmal.keys import SigningKey, load_or_create_signing_key
from einmal.problems import ProblemError
from einmal.tokens import TokenIssuer, TokenVerifier


@pytest.fixture(name="key")
def fx_key(tmp_path) -> SigningKey:
    return load_or_create_signing_key(tmp_path, "test")


def _verifier(key: SigningKey, **kw) -> TokenVerifier:
    return TokenVerifier(keys={key.kid: key.private_key.public_key()}, issuer="iss",
                         audience="aud", **kw)


class TestTokenVerifier:
    def test_rejects_expired_token(self, key: SigningKey) -> None:
        token = TokenIssuer(key=key, issuer="iss", audience="aud", ttl_s=60).issue(
            "s", now=time.time() - 3600)
        with pytest.raises(ProblemError) as caught:
            _verifier(key).verify(token)
        assert caught.value.slug == "unauthenticated"

    def test_rejects_other_audience(self, key: SigningKey) -> None:
        token = TokenIssuer(key=key, issuer="iss", audience="other", ttl_s=60).issue("s")
        with pytest.raises(ProblemError):
            _verifier(key).verify(token)

    def test_rejects_token_signed_by_another_key(self, key: SigningKey, tmp_path) -> None:
        other = load_or_create_signing_key(tmp_path, "other")
        token = TokenIssuer(key=SigningKey(kid=key.kid, private_key=other.private_key),
                            issuer="iss", audience="aud", ttl_s=60).issue("s")
        with pytest.raises(ProblemError):
            _verifier(key).verify(token)

    def test_rejects_alg_none(self, key: SigningKey) -> None:
        token = jwt.encode({"iss": "iss", "aud": "aud", "sub": "s", "iat": int(time.time()),
                            "exp": int(time.time()) + 60}, None, algorithm="none",
                           headers={"kid": key.kid})
        with pytest.raises(ProblemError):
            _verifier(key).verify(token)

    def test_accepts_valid_token_and_caches_it(self, key: SigningKey) -> None:
        verifier = _verifier(key)
        token = TokenIssuer(key=key, issuer="iss", audience="aud", ttl_s=60).issue("s", x=1)
        assert verifier.verify(token)["x"] == 1
        assert verifier.verify(token)["sub"] == "s"
        assert token in verifier._cache

    def test_cached_token_still_expires(self, key: SigningKey) -> None:
        verifier = _verifier(key, leeway_s=0)
        token = TokenIssuer(key=key, issuer="iss", audience="aud", ttl_s=60).issue("s")
        verifier.verify(token)
        with pytest.raises(ProblemError):
            verifier.verify(token, now=time.time() + 120)


class TestKeyFiles:
    def test_private_key_file_is_owner_only_and_stable(self, tmp_path) -> None:
        first = load_or_create_signing_key(tmp_path, "k")
        second = load_or_create_signing_key(tmp_path, "k")
        assert first.kid == second.kid
        assert (tmp_path / "k.jwk.json").stat().st_mode & 0o777 == 0o600
        assert '"d"' not in (tmp_path / "k.public.json").read_text()
