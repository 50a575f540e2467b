"""The OpenID Connect relying party against a scripted provider (httpx.MockTransport).

Failure paths first: every way a provider (or someone posing as one) can answer wrongly ends
in a ``LoginError`` with its stable reason, never in another exception. Then the matrix a
conformant provider may choose from: RS256, PS256, ES256, EdDSA, with and without ``kid``,
and the client authentication methods none, client_secret_basic, client_secret_post.
"""

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cockpit.web.oidc import LoginError, OidcClient, OidcLogin
from tests.unit.cockpit.web.fake_idp import (
    CLIENT_ID,
    IDNR,
    ISSUER,
    REDIRECT_URI,
    FakeIdp,
    private_key,
    public_jwk,
)


def client_for(idp: FakeIdp, *, secret: str | None = None, claim: str = "idnr",
               clock: Callable[[], float] = time.monotonic) -> OidcClient:
    return OidcClient(issuer=ISSUER, client_id=CLIENT_ID, client_secret=secret, scopes="openid",
                      redirect_uri=REDIRECT_URI, idnr_claim=claim, clock=clock,
                      http=httpx.AsyncClient(transport=idp.transport()))


async def login(client: OidcClient, idp: FakeIdp, **callback: str | None) -> OidcLogin:
    """A whole login: start, the provider sees the authorization request, the callback."""
    pending, url = await client.start("/")
    idp.authorized(url)
    params = {"state": pending.state, "code": "code-1", "iss": ISSUER, **callback}
    return await client.finish(pending, {k: v for k, v in params.items() if v is not None})


async def refused(client: OidcClient, idp: FakeIdp, **callback: str | None) -> LoginError:
    with pytest.raises(LoginError) as caught:
        await login(client, idp, **callback)
    return caught.value


# -- failure paths -------------------------------------------------------------------------------

class TestGarbageFromTheProvider:
    async def test_html_discovery_is_refused_as_unusable_idp(self) -> None:
        idp = FakeIdp(answers={"/.well-known/openid-configuration": httpx.Response(
            200, text="<html><body>Wartung</body></html>",
            headers={"content-type": "text/html"})})
        error = await refused(client_for(idp), idp)
        assert (error.reason, error.status) == ("idp_discovery_invalid", 502)

    @pytest.mark.parametrize("document", [
        [], {"issuer": ISSUER}, {"issuer": 7}, "text",
    ])
    async def test_discovery_json_of_the_wrong_shape_is_refused(self, document: Any) -> None:
        idp = FakeIdp(answers={"/.well-known/openid-configuration": httpx.Response(
            200, json=document)})
        assert (await refused(client_for(idp), idp)).reason == "idp_discovery_invalid"

    async def test_discovery_with_a_non_http_endpoint_is_refused(self) -> None:
        idp = FakeIdp(discovery_extra={"authorization_endpoint": "javascript:alert(1)"})
        assert (await refused(client_for(idp), idp)).reason == "idp_discovery_invalid"

    async def test_discovery_of_another_issuer_is_refused(self) -> None:
        idp = FakeIdp(discovery_extra={"issuer": "https://evil.example"})
        assert (await refused(client_for(idp), idp)).reason == "idp_discovery_issuer"

    async def test_unreachable_or_failing_discovery(self) -> None:
        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        idp = FakeIdp(answers={"/.well-known/openid-configuration": down})
        assert (await refused(client_for(idp), idp)).reason == "idp_discovery_unreachable"
        idp = FakeIdp(answers={"/.well-known/openid-configuration": httpx.Response(503)})
        error = await refused(client_for(idp), idp)
        assert (error.reason, error.context) == ("idp_discovery_refused", {"status": 503})

    async def test_a_failed_discovery_is_tried_again_next_time(self) -> None:
        idp = FakeIdp(answers={"/.well-known/openid-configuration": httpx.Response(502)})
        client = client_for(idp)
        await refused(client, idp)
        del idp.answers["/.well-known/openid-configuration"]
        assert (await login(client, idp)).idnr == IDNR

    @pytest.mark.parametrize("answer", [
        httpx.Response(200, text="<html>Fehler</html>"),
        httpx.Response(200, json={"access_token": "a", "token_type": "Bearer"}),  # no id_token
        httpx.Response(200, json={"id_token": 42}),
        httpx.Response(200, json=["id_token"]),
    ])
    async def test_token_answer_that_is_no_token_response(self, answer: httpx.Response) -> None:
        idp = FakeIdp(answers={"/token": answer})
        assert (await refused(client_for(idp), idp)).reason == "idp_token_invalid"

    async def test_an_expired_or_replayed_code_is_the_providers_invalid_grant(self) -> None:
        idp = FakeIdp(answers={"/token": httpx.Response(400, json={
            "error": "invalid_grant", "error_description": "code expired <script>"})})
        error = await refused(client_for(idp), idp)
        assert (error.reason, error.status) == ("token_refused", 400)
        assert error.context == {"status": 400, "error": "invalid_grant"}

    async def test_a_refusal_with_an_unknown_error_text_logs_no_text(self) -> None:
        idp = FakeIdp(answers={"/token": httpx.Response(400, json={"error": "eyJhbGciOi..."})})
        assert (await refused(client_for(idp), idp)).context["error"] == "other"
        idp = FakeIdp(answers={"/token": httpx.Response(500, text="Internal Server Error")})
        assert (await refused(client_for(idp), idp)).context["error"] == "none"

    @pytest.mark.parametrize("jwks", [
        httpx.Response(200, text="<html>"), httpx.Response(200, json={"keys": "k1"}),
        httpx.Response(200, json=[1]), httpx.Response(404),
    ])
    async def test_a_jwk_set_that_is_none(self, jwks: httpx.Response) -> None:
        idp = FakeIdp(answers={"/certs": jwks})
        assert (await refused(client_for(idp), idp)).reason == "idp_jwks_invalid"


class TestTheCallback:
    async def test_a_forged_state_is_refused(self) -> None:
        idp = FakeIdp()
        assert (await refused(client_for(idp), idp, state="forged")).reason == "state"

    @pytest.mark.parametrize("state", ["\u00e4\u00f6\u00fc", "\ud800", None])
    async def test_any_state_text_is_compared_without_crashing(self, state: str | None) -> None:
        idp = FakeIdp()
        assert (await refused(client_for(idp), idp, state=state)).reason == "state"

    async def test_a_callback_from_another_issuer_is_refused(self) -> None:
        idp = FakeIdp()
        assert (await refused(client_for(idp), idp, iss="https://evil.example")).reason == \
            "issuer"

    async def test_a_missing_iss_is_refused_when_the_provider_announced_it(self) -> None:
        idp = FakeIdp(discovery_extra={"authorization_response_iss_parameter_supported": True})
        assert (await refused(client_for(idp), idp, iss=None)).reason == "issuer"
        plain = FakeIdp()  # not announced: a callback without iss is fine
        assert (await login(client_for(plain), plain, iss=None)).idnr == IDNR

    async def test_cancel_and_provider_errors(self) -> None:
        idp = FakeIdp()
        assert (await refused(client_for(idp), idp, error="access_denied")).reason == "denied"
        error = await refused(client_for(idp), idp, error="server_error", code=None)
        assert (error.reason, error.context) == ("idp_refused", {"error": "server_error"})
        error = await refused(client_for(idp), idp, error="<b>x</b>", code=None)
        assert error.context == {"error": "other"}
        assert (await refused(client_for(idp), idp, code=None)).reason == "no_code"


class TestIdToken:
    async def test_for_another_audience(self) -> None:
        idp = FakeIdp(claims={"aud": "another-client"})
        assert (await refused(client_for(idp), idp)).reason == "id_token_audience"

    async def test_several_audiences_need_azp_naming_us(self) -> None:
        idp = FakeIdp(claims={"aud": [CLIENT_ID, "other"]})
        assert (await refused(client_for(idp), idp)).reason == "id_token_azp"
        idp = FakeIdp(claims={"aud": CLIENT_ID, "azp": "other"})
        assert (await refused(client_for(idp), idp)).reason == "id_token_azp"
        idp = FakeIdp(claims={"aud": [CLIENT_ID, "other"], "azp": CLIENT_ID})
        assert (await login(client_for(idp), idp)).idnr == IDNR

    async def test_wrong_or_missing_nonce(self) -> None:
        idp = FakeIdp(claims={"nonce": "someone-elses-login"})
        assert (await refused(client_for(idp), idp)).reason == "id_token_nonce"
        idp = FakeIdp(claims={"nonce": None})
        assert (await refused(client_for(idp), idp)).reason == "id_token_nonce"

    async def test_expired_not_yet_valid_and_wrong_issuer(self) -> None:
        now = int(time.time())
        idp = FakeIdp(claims={"exp": now - 120, "iat": now - 420})
        assert (await refused(client_for(idp), idp)).reason == "id_token_expired"
        idp = FakeIdp(claims={"iat": now + 3600, "exp": now + 7200})
        assert (await refused(client_for(idp), idp)).reason == "id_token_not_yet_valid"
        idp = FakeIdp(claims={"iss": "https://evil.example"})
        assert (await refused(client_for(idp), idp)).reason == "id_token_issuer"
        idp = FakeIdp(claims={"sub": None})
        assert (await refused(client_for(idp), idp)).reason == "id_token_claims"

    async def test_unknown_kid_with_several_keys(self) -> None:
        keys = [public_jwk(private_key("RS256"), kid="k1"),
                public_jwk(private_key("RS256", 1), kid="k2")]
        idp = FakeIdp(kid="k9", jwks=keys)
        assert (await refused(client_for(idp), idp)).reason == "id_token_unknown_key"

    async def test_no_kid_with_several_usable_keys_is_ambiguous(self) -> None:
        keys = [public_jwk(private_key("RS256"), kid="k1"),
                public_jwk(private_key("RS256", 1), kid="k2")]
        idp = FakeIdp(kid=None, jwks=keys)
        assert (await refused(client_for(idp), idp)).reason == "id_token_key_ambiguous"

    async def test_no_kid_picks_the_one_key_usable_for_the_algorithm(self) -> None:
        # an EC key, an encryption key and one for another algorithm do not count
        keys = [public_jwk(private_key("ES256"), kid="ec"),
                public_jwk(private_key("RS256", 1), kid="enc", use="enc"),
                public_jwk(private_key("RS256", 2), kid="ps", alg="PS256"),
                public_jwk(private_key("RS256"), kid="sig")]
        idp = FakeIdp(kid=None, jwks=keys)
        assert (await login(client_for(idp), idp)).idnr == IDNR

    async def test_no_kid_and_no_usable_key(self) -> None:
        idp = FakeIdp(kid=None, jwks=[public_jwk(private_key("ES256"), kid="ec")])
        assert (await refused(client_for(idp), idp)).reason == "id_token_no_key"

    async def test_signed_by_another_key_under_the_right_kid(self) -> None:
        idp = FakeIdp(signing_key=private_key("RS256", 3),
                      jwks=[public_jwk(private_key("RS256"), kid="k1")])
        assert (await refused(client_for(idp), idp)).reason == "id_token_signature"

    async def test_weak_rsa_keys_are_not_used(self) -> None:
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
        idp = FakeIdp(signing_key=weak, jwks=[public_jwk(weak, kid="k1")])
        assert (await refused(client_for(idp), idp)).reason == "id_token_unknown_key"

    @pytest.mark.parametrize("header_alg", ["none", "HS256"])
    async def test_none_and_hmac_are_never_accepted(self, header_alg: str) -> None:
        idp = FakeIdp()

        def forged(request: httpx.Request) -> httpx.Response:
            claims = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "x", "iat": int(time.time()),
                      "exp": int(time.time()) + 60, "nonce": idp.nonce, "idnr": IDNR}
            if header_alg == "none":
                token = jwt.encode(claims, None, algorithm="none")
            else:  # key confusion: the provider's public key as an HMAC secret
                token = jwt.encode(claims, b"x" * 32, algorithm="HS256", headers={"kid": "k1"})
            return httpx.Response(200, json={"id_token": token})

        idp.answers["/token"] = forged
        assert (await refused(client_for(idp), idp)).reason == "id_token_algorithm"

    async def test_garbage_instead_of_a_jwt(self) -> None:
        idp = FakeIdp(answers={"/token": httpx.Response(200, json={"id_token": "not.a.jwt"})})
        assert (await refused(client_for(idp), idp)).reason == "id_token_malformed"

    async def test_a_rotated_key_is_fetched_again_but_at_most_once_a_minute(self) -> None:
        now = [1000.0]
        idp = FakeIdp()
        client = client_for(idp, clock=lambda: now[0])
        assert (await login(client, idp)).idnr == IDNR
        idp.signing_key = private_key("RS256", 4)
        idp.kid = "k-new"
        idp.jwks = [public_jwk(idp.signing_key, kid="k-new")]
        assert (await refused(client, idp)).reason == "id_token_unknown_key"  # fetched 0 s ago
        now[0] += 61
        assert (await login(client, idp)).idnr == IDNR
        fetches = [r for r in idp.requests if r.url.path.endswith("/certs")]
        assert len(fetches) == 2


class TestIdnrClaim:
    async def test_missing_claim_without_userinfo(self) -> None:
        idp = FakeIdp(claims={"idnr": None},
                      discovery_extra={"userinfo_endpoint": None})
        error = await refused(client_for(idp), idp)
        assert (error.reason, error.context) == ("claim_missing", {"claim": "idnr"})

    async def test_userinfo_of_another_subject_is_refused(self) -> None:
        idp = FakeIdp(claims={"idnr": None}, userinfo={"sub": "someone-else", "idnr": IDNR})
        assert (await refused(client_for(idp), idp)).reason == "userinfo_subject"

    async def test_userinfo_garbage(self) -> None:
        idp = FakeIdp(claims={"idnr": None},
                      answers={"/userinfo": httpx.Response(200, text="eyJhbGciOi.x.y")})
        assert (await refused(client_for(idp), idp)).reason == "idp_userinfo_invalid"
        idp = FakeIdp(claims={"idnr": None}, answers={"/userinfo": httpx.Response(401)})
        assert (await refused(client_for(idp), idp)).reason == "userinfo_refused"

    async def test_claim_from_userinfo_with_the_providers_access_token(self) -> None:
        idp = FakeIdp(claims={"idnr": None}, userinfo={"sub": "pairwise-4711", "idnr": IDNR})
        assert (await login(client_for(idp), idp)).idnr == IDNR
        userinfo = next(r for r in idp.requests if r.url.path.endswith("/userinfo"))
        assert userinfo.headers["authorization"] == "Bearer opaque-a1b2c3"

    async def test_configured_claim_name_and_numeric_value(self) -> None:
        idp = FakeIdp(claims={"idnr": None, "bund_idnr": int(IDNR)})
        assert (await login(client_for(idp, claim="bund_idnr"), idp)).idnr == IDNR


# -- what a conformant provider may choose ---------------------------------------------------------

@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no-kid"])
async def test_every_algorithm_with_and_without_kid(alg: str, with_kid: bool) -> None:
    idp = FakeIdp(alg=alg, kid="k1" if with_kid else None)
    assert (await login(client_for(idp), idp)).idnr == IDNR


async def test_a_key_that_names_its_algorithm_is_used_for_it_only() -> None:
    key = private_key("RS256")
    idp = FakeIdp(alg="PS256", signing_key=key, jwks=[public_jwk(key, kid="k1", alg="PS256")])
    assert (await login(client_for(idp), idp)).idnr == IDNR
    idp = FakeIdp(alg="PS256", signing_key=key, jwks=[public_jwk(key, kid="k1", alg="RS256")])
    assert (await refused(client_for(idp), idp)).reason == "id_token_unknown_key"


@pytest.mark.parametrize(("secret", "announced", "expected"), [
    (None, None, "none"),
    (None, ["client_secret_basic", "private_key_jwt"], "none"),  # Keycloak lists no "none"
    ("s3cret", None, "client_secret_basic"),  # omitted: client_secret_basic (Discovery 3)
    ("s3cret", ["client_secret_basic", "client_secret_post"], "client_secret_basic"),
    ("s3cret", ["private_key_jwt", "client_secret_post"], "client_secret_post"),
    ("s3cret", ["none"], "none"),
    ("a b:c/\u00e4%", ["client_secret_basic"], "client_secret_basic"),  # form-encoded first
])
async def test_client_authentication_as_discovery_announces_it(
        secret: str | None, announced: list[str] | None, expected: str) -> None:
    idp = FakeIdp(auth_methods=announced, secret=secret if expected != "none" else None)
    assert (await login(client_for(idp, secret=secret), idp)).idnr == IDNR
    assert idp.auth_used == [expected]
    token_request = next(r for r in idp.requests if r.url.path.endswith("/token"))
    if expected != "client_secret_post" and secret:
        assert secret.encode() not in token_request.content  # never in the body then


async def test_a_secret_with_no_method_we_speak_is_refused_before_the_redirect() -> None:
    idp = FakeIdp(auth_methods=["private_key_jwt", "tls_client_auth"])
    with pytest.raises(LoginError) as caught:
        await client_for(idp, secret="s3cret").start("/")
    assert caught.value.reason == "idp_client_auth_unsupported"
    assert not [r for r in idp.requests if r.url.path.endswith("/token")]


async def test_the_authorization_request_carries_pkce_state_and_nonce() -> None:
    idp = FakeIdp()
    pending, url = await client_for(idp).start("/consents")
    assert url.startswith(f"{ISSUER}/auth?")
    for part in ("code_challenge_method=S256", f"state={pending.state}",
                 f"nonce={pending.nonce}", "scope=openid", "response_type=code"):
        assert part in url
    assert pending.next == "/consents"
