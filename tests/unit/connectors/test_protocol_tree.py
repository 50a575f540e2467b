"""The source interface's wire format (einmal_client.sources): the content group tree, the
session key's JWE, the source's signature inside it, and the cockpit's client refusing bad
answers (over httpx.MockTransport)."""

import base64
import hashlib
from collections.abc import Callable
from datetime import date
from decimal import Decimal

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal.keys import public_jwk
from einmal_client.sources import (
    ContentAnswer,
    ContentGroup,
    ContentItem,
    Envelope,
    InvalidSourceAnswerError,
    ListAnswer,
    SessionKey,
    SourceClient,
    SourceEntry,
    SourceRefusedError,
    SourceTokenSigner,
    SourceUnavailableError,
    body_hash,
    check_tree,
    content_groups,
    public_session_key,
    seal_answer,
    seal_for_session,
    sign_answer,
    source_public_keys,
    verify_answer,
)

SOURCE = "standesamt:04011000"
MIA = "84953625010"
#: the source's own signing key; its public JWK set is what its document names
SOURCE_KEY = Ed25519PrivateKey.generate()
SOURCE_KID = "register-source-1"
SOURCE_JWKS = {"keys": [public_jwk(SOURCE_KEY.public_key(), SOURCE_KID)]}


def _seal(jwk, plain: bytes, *, key: Ed25519PrivateKey = SOURCE_KEY,
          kid: str = SOURCE_KID) -> str:
    return seal_answer(jwk, plain, private_key=key, kid=kid)


class TestContentTree:
    def test_groups_items_and_numbered_subgroups(self) -> None:
        [life, parents] = content_groups({
            "Lebensdaten": {"Vornamen": "Mia Sophie", "Geburtsdatum": date(2026, 10, 12),
                            "Zwilling": False, "Gewicht": Decimal("3.20"), "Titel": None},
            "Eltern": {"Elternteil": [{"Vornamen": "Anna"}, {"Vornamen": "Ben"}],
                       "Staatsangehörigkeiten": ["deutsch", "polnisch"]}})
        assert life.label == "Lebensdaten"
        assert [(i.label, i.value) for i in life.items] == [
            ("Vornamen", "Mia Sophie"), ("Geburtsdatum", "2026-10-12"), ("Zwilling", "nein"),
            ("Gewicht", "3.20")]
        assert [g.label for g in parents.groups] == ["Elternteil 1", "Elternteil 2"]
        assert parents.groups[1].items == (ContentItem(label="Vornamen", value="Ben"),)
        assert parents.items == (ContentItem(label="Staatsangehörigkeiten",
                                             value="deutsch, polnisch"),)

    def test_the_wire_uses_the_standards_names(self) -> None:
        tree = content_groups({"Lebensdaten": {"Geburtsdatum": "2026-10-12",
                                               "Ort": {"Name": "Bremen"}}})
        wire = msgspec.json.decode(msgspec.json.encode(tree))
        assert wire == [{"label": "Lebensdaten",
                         "inhaltsdaten": [{"label": "Geburtsdatum", "inhalt": "2026-10-12"}],
                         "gruppeInhaltsdaten": [{"label": "Ort", "inhaltsdaten": [
                             {"label": "Name", "inhalt": "Bremen"}], "gruppeInhaltsdaten": []}]}]
        assert msgspec.json.decode(msgspec.json.encode(tree),
                                   type=tuple[ContentGroup, ...]) == tree

    def test_the_top_level_holds_groups_only(self) -> None:
        with pytest.raises(TypeError):
            content_groups({"Geburtsdatum": "2026-10-12"})  # type: ignore[dict-item]  # wrong

    def test_a_value_that_is_no_text_is_refused(self) -> None:
        with pytest.raises(TypeError):
            content_groups({"Kind": {"Bild": b"\x89PNG"}})

    def test_too_deep_or_too_large_trees_are_refused(self) -> None:
        deep: dict = {"x": "y"}
        for _ in range(9):
            deep = {"tiefer": deep}
        with pytest.raises(ValueError, match="levels"):
            content_groups({"Wurzel": deep})
        wide = ContentGroup(label="g", items=tuple(
            ContentItem(label=f"l{n}", value="v") for n in range(5_001)))
        with pytest.raises(ValueError, match="nodes"):
            check_tree([wide])

    def test_unknown_fields_and_empty_labels_do_not_decode(self) -> None:
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(b'[{"label":"a","extra":1}]', type=tuple[ContentGroup, ...])
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(b'[{"label":""}]', type=tuple[ContentGroup, ...])


class TestSessionKey:
    def test_only_the_session_opens_what_was_sealed_for_it(self) -> None:
        mine, theirs = SessionKey(), SessionKey()
        sealed = seal_for_session(mine.public_jwk, b"Mia Sophie")
        assert b"Mia Sophie" not in sealed.encode()  # a space: never in base64url
        assert sealed.count(".") == 4  # JWE compact
        assert mine.open(sealed) == b"Mia Sophie"
        with pytest.raises(InvalidSourceAnswerError):
            theirs.open(sealed)

    def test_garbage_does_not_open(self) -> None:
        with pytest.raises(InvalidSourceAnswerError):
            SessionKey().open("not.a.jwe.at.all")

    def test_a_long_answer_opens_up_to_the_envelopes_bound(self) -> None:
        """joserfc's default refuses ciphertexts above 64 KB: a list of a few hundred entries
        (the broker lists up to 1,000) must still open."""
        session = SessionKey()
        long = b"x" * 3_000_000
        assert session.open(seal_for_session(session.public_jwk, long)) == long
        with pytest.raises(InvalidSourceAnswerError):
            session.open(seal_for_session(session.public_jwk, b"x" * 4_300_000))

    @pytest.mark.parametrize("jwk", [
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"},
        {"kty": "OKP", "crv": "X25519"},
        {"kty": "OKP", "crv": "X25519", "x": "!!"},
    ])
    def test_only_public_x25519_keys_are_session_keys(self, jwk) -> None:
        with pytest.raises(ValueError):
            public_session_key(jwk)

    def test_a_private_key_is_not_a_session_key(self) -> None:
        with pytest.raises(ValueError, match="public"):
            public_session_key({**SessionKey().public_jwk, "d": "x"})


def _client(handler: Callable[[httpx.Request], httpx.Response], **kwargs) -> SourceClient:
    signer = SourceTokenSigner(private_key=Ed25519PrivateKey.generate(), kid="k",
                               issuer="einmal-cockpit")
    kwargs.setdefault("source_key", SOURCE_JWKS)
    return SourceClient(url="http://source.test/dsc", source_id=SOURCE, signer=signer,
                        transport=httpx.MockTransport(handler), **kwargs)


def _answer(request: httpx.Request, **changes) -> httpx.Response:
    """A well-formed antwortListeProtokolldaten to ``request`` (``changes`` spoil it)."""
    asked = msgspec.json.decode(request.content)
    payload = ListAnswer(correlation_id=changes.get("inner_correlation", asked["correlationID"]),
                         source=changes.get("inner_source", SOURCE),
                         idnr=changes.get("idnr", asked["idnr"]),
                         entries=changes.get("entries", ()))
    key = changes.get("key", asked["session_key"])
    plain = msgspec.json.encode(payload)
    sealed = (seal_for_session(key, plain) if changes.get("unsigned")
              else _seal(key, plain, key=changes.get("signing_key", SOURCE_KEY),
                         kid=changes.get("kid", SOURCE_KID)))
    envelope = Envelope(nachrichtentyp=changes.get("type", "antwortListeProtokolldaten"),
                        version="1", correlation_id=asked["correlationID"],
                        source=changes.get("source", SOURCE), payload=sealed)
    return httpx.Response(200, content=msgspec.json.encode(envelope))


class TestClientRefusesBadAnswers:
    async def test_a_good_answer_is_opened(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return _answer(request)

        client = _client(handler)
        answer = await client.list_entries(MIA, SessionKey())
        await client.aclose()
        assert answer.entries == () and answer.idnr == MIA
        assert seen[0].url.path == "/dsc/protokolldaten"
        assert seen[0].headers["authorization"].startswith("Bearer ")

    @pytest.mark.parametrize("changes", [
        {"idnr": "81709656328"},                      # about another citizen
        {"inner_correlation": "another request"},
        {"inner_source": "standesamt:04012000"},
        {"source": "standesamt:04012000"},
        {"type": "antwortInhaltsdaten"},
        {"key": SessionKey().public_jwk},              # for another session
        {"entries": (SourceEntry(id="e", occurred_at="2026-10-12T00:00:00Z",  # type: ignore[arg-type]  # msgspec converts
                                 source="sorgeregister:HB"),)},
    ])
    async def test_an_answer_that_is_not_this_requests_is_refused(self, changes) -> None:
        client = _client(lambda request: _answer(request, **changes))
        with pytest.raises(InvalidSourceAnswerError):
            await client.list_entries(MIA, SessionKey())
        await client.aclose()

    @pytest.mark.parametrize("changes", [
        {"signing_key": Ed25519PrivateKey.generate()},  # the key of another body, same kid
        {"signing_key": Ed25519PrivateKey.generate(), "kid": "rogue"},
        {"unsigned": True},                              # anyone can encrypt to a session key
    ])
    async def test_an_answer_not_signed_with_the_sources_key_is_refused(self,
                                                                         changes) -> None:
        client = _client(lambda request: _answer(request, **changes))
        with pytest.raises(InvalidSourceAnswerError, match="signed with another key"):
            await client.list_entries(MIA, SessionKey())
        await client.aclose()

    async def test_a_rotated_key_still_listed_in_the_set_verifies(self) -> None:
        old = Ed25519PrivateKey.generate()
        jwks = {"keys": [*SOURCE_JWKS["keys"], public_jwk(old.public_key(), "old-1")]}
        client = _client(lambda request: _answer(request, signing_key=old, kid="old-1"),
                         source_key=jwks)
        assert (await client.list_entries(MIA, SessionKey())).idnr == MIA
        await client.aclose()

    @pytest.mark.parametrize("body", [b"", b"garbage", b"{}", b'{"payload": 1}'])
    async def test_garbage_is_refused(self, body) -> None:
        client = _client(lambda request: httpx.Response(200, content=body))
        with pytest.raises(InvalidSourceAnswerError):
            await client.list_entries(MIA, SessionKey())
        await client.aclose()

    async def test_too_much_is_refused(self) -> None:
        client = _client(lambda request: httpx.Response(200, content=b"x" * 2048),
                         max_answer_bytes=1024)
        with pytest.raises(InvalidSourceAnswerError, match="more than"):
            await client.list_entries(MIA, SessionKey())
        await client.aclose()

    async def test_a_content_answer_for_another_entry_is_refused(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            asked = msgspec.json.decode(request.content)
            payload = ContentAnswer(correlation_id=asked["correlationID"], source=SOURCE,
                                    idnr=asked["idnr"], entry_id="another")
            envelope = Envelope(nachrichtentyp="antwortInhaltsdaten", version="1",
                                correlation_id=asked["correlationID"], source=SOURCE,
                                payload=_seal(asked["session_key"],
                                              msgspec.json.encode(payload)))
            return httpx.Response(200, content=msgspec.json.encode(envelope))

        client = _client(handler)
        with pytest.raises(InvalidSourceAnswerError, match="another entry"):
            await client.content(MIA, "mine", SessionKey())
        await client.aclose()

    async def test_a_refusal_keeps_its_problem_type(self) -> None:
        problem = {"type": "urn:einmal:problem:unauthenticated", "status": 401}
        client = _client(lambda request: httpx.Response(401, json=problem))
        with pytest.raises(SourceRefusedError) as refused:
            await client.list_entries(MIA, SessionKey())
        await client.aclose()
        assert refused.value.status == 401
        assert refused.value.problem_type == "urn:einmal:problem:unauthenticated"

    @pytest.mark.parametrize("failure", [
        lambda request: httpx.Response(503),
        lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused")),
        lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("late")),
    ])
    async def test_a_source_down_or_late_is_unavailable(self, failure) -> None:
        client = _client(failure)
        with pytest.raises(SourceUnavailableError):
            await client.list_entries(MIA, SessionKey())
        await client.aclose()


class TestSignedAnswers:
    def test_sign_then_encrypt_round_trips(self) -> None:
        session = SessionKey()
        sealed = _seal(session.public_jwk, b'{"a":1}')
        signed = session.open(sealed)
        assert jwt.get_unverified_header(signed) == {"alg": "Ed25519", "kid": SOURCE_KID,
                                                     "typ": "dsc-answer+jws"}
        assert verify_answer(signed, source_public_keys(SOURCE_JWKS)) == b'{"a":1}'

    def test_another_typ_is_refused(self) -> None:
        token = jwt.api_jws.PyJWS().encode(b"{}", SOURCE_KEY, algorithm="EdDSA",
                                           headers={"kid": SOURCE_KID, "typ": "JWT"})
        with pytest.raises(InvalidSourceAnswerError):
            verify_answer(token.encode(), source_public_keys(SOURCE_JWKS))

    def test_a_long_answer_verifies(self) -> None:
        """joserfc's default JWS bound (128 KB) would refuse a list of a few hundred entries:
        answers are bounded by the envelope's 4 MiB instead."""
        long = b'{"a":"' + b"x" * 2_000_000 + b'"}'
        signed = sign_answer(long, SOURCE_KEY, SOURCE_KID).encode()
        assert verify_answer(signed, source_public_keys(SOURCE_JWKS)) == long

    def test_the_algorithm_must_be_ed25519(self) -> None:
        """RFC 9864's fully-specified name only: the same signature under the polymorphic
        "EdDSA" name is refused (no algorithm confusion, one spelling to check)."""
        token = jwt.api_jws.PyJWS().encode(b"{}", SOURCE_KEY, algorithm="EdDSA",
                                           headers={"kid": SOURCE_KID, "typ": "dsc-answer+jws"})
        with pytest.raises(InvalidSourceAnswerError):
            verify_answer(token.encode(), source_public_keys(SOURCE_JWKS))

    def test_a_tampered_answer_is_refused(self) -> None:
        head, _, sig = sign_answer(b'{"a":1}', SOURCE_KEY, SOURCE_KID).split(".")
        other = base64.urlsafe_b64encode(b'{"a":2}').rstrip(b"=").decode()
        forged = f"{head}.{other}.{sig}"
        with pytest.raises(InvalidSourceAnswerError):
            verify_answer(forged.encode(), source_public_keys(SOURCE_JWKS))

    @pytest.mark.parametrize("document", [
        {},
        {"keys": []},
        {"keys": [{"kty": "OKP", "crv": "X25519", "x": "AAAA", "kid": "k"}]},
        {"keys": [{**SOURCE_JWKS["keys"][0], "d": "AAAA"}]},     # a private key
        {k: v for k, v in SOURCE_JWKS["keys"][0].items() if k != "kid"},
    ])
    def test_only_public_ed25519_keys_with_a_kid_are_source_keys(self, document) -> None:
        with pytest.raises(ValueError):
            source_public_keys(document)

    def test_a_single_jwk_is_a_source_key_too(self) -> None:
        assert set(source_public_keys(SOURCE_JWKS["keys"][0])) == {SOURCE_KID}

    def test_a_client_needs_a_valid_source_key(self) -> None:
        with pytest.raises(ValueError):
            _client(lambda request: httpx.Response(500), source_key={"keys": []})


class TestTokens:
    def test_a_token_binds_audience_body_and_lifetime(self) -> None:
        key = Ed25519PrivateKey.generate()
        signer = SourceTokenSigner(private_key=key, kid="k", issuer="einmal-cockpit")
        token = signer.token(SOURCE, b"{}", now=1000)
        claims = jwt.decode(token, key.public_key(), algorithms=["EdDSA"], audience=SOURCE,
                            options={"verify_exp": False, "verify_iat": False})
        assert claims["iss"] == "einmal-cockpit" and claims["exp"] - claims["iat"] == 30
        digest = base64.urlsafe_b64encode(hashlib.sha256(b"{}").digest()).rstrip(b"=")
        assert claims["req_sha256"] == digest.decode() == body_hash(b"{}")
        assert claims["jti"] != jwt.decode(signer.token(SOURCE, b"{}"), key.public_key(),
                                           algorithms=["EdDSA"], audience=SOURCE)["jti"]

    def test_a_token_may_not_live_longer_than_a_minute(self) -> None:
        with pytest.raises(ValueError, match="ttl"):
            SourceTokenSigner(private_key=Ed25519PrivateKey.generate(), kid="k", issuer="c",
                              ttl_s=61)
