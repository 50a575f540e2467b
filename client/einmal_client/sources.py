"""The source interface after XDatenschutzcockpit: its wire format, and the cockpit's client.

A *source* is a data-holding body (a register, another broker) that keeps its own protocol of
transfers (§ 9 IDNrG). The Datenschutzcockpit asks it while the citizen is logged in and keeps
nothing (the source model, § 10 OZG). Three messages (docs/api.md, "Source interface"):

* ``anfrageListeProtokolldaten`` -> ``antwortListeProtokolldaten``: the protocol entries about an
  IdNr within two years;
* ``anfrageInhaltsdaten`` -> ``antwortInhaltsdaten``: the content data of one entry, a
  self-describing tree ``gruppeInhaltsdaten{label}`` -> ``inhaltsdaten{label, inhalt}``;
* status -> ``antwortStatus``.

Only the cockpit may ask: every request carries a short-lived EdDSA JWT (audience = the
source's id, at most 60 s, a fresh ``jti``, and ``req_sha256`` binding the request body).
Every answer about a citizen is an envelope (``nachrichtentyp``, ``version``, ``correlationID``,
``source``) around a JWE (ECDH-ES with X25519, A256GCM) to the session key the cockpit made
for that citizen's session: nobody else can read it (decision 0033). Inside the JWE, the answer
is signed: a JWS (EdDSA, ``typ`` ``dsc-answer+jws``, ``kid``) with the source's own Ed25519
key. ECDH-ES is anonymous - anyone who knows a session's public key could encrypt to it - so the
client accepts an answer only if it verifies with the key the source's document names
(sign-then-encrypt, decision 0035).

Errors of ``SourceClient``:

* SourceError
  x SourceUnavailableError   unreachable, timed out, or 5xx
  x SourceRefusedError       the source refused the request (4xx; ``problem_type`` kept)
  x InvalidSourceAnswerError garbage, too large, not for this session key, signed with another
                             key than the source's, or not the answer to this request (another
                             source, correlation id, IdNr, message)

This module imports nothing of the server: registers (``connectors.protocol``) and the cockpit
share it.
"""

import base64
import hashlib
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

__all__ = [
    "ANSWER_ALG",
    "ANSWER_TYP",
    "CONTENT_ANSWER",
    "CONTENT_REQUEST",
    "LIST_ANSWER",
    "LIST_REQUEST",
    "MAX_TOKEN_TTL_S",
    "STATUS_ANSWER",
    "VERSION",
    "ContentAnswer",
    "ContentGroup",
    "ContentItem",
    "ContentRequest",
    "Envelope",
    "InvalidSourceAnswerError",
    "ListAnswer",
    "ListRequest",
    "Recipient",
    "SessionKey",
    "SourceClient",
    "SourceEntry",
    "SourceError",
    "SourceRefusedError",
    "SourceTokenSigner",
    "SourceUnavailableError",
    "StatusAnswer",
    "body_hash",
    "check_tree",
    "content_groups",
    "open_relayed_content",
    "open_relayed_list",
    "public_session_key",
    "seal_answer",
    "seal_for_session",
    "sign_answer",
    "source_public_keys",
    "verify_answer",
]

LIST_REQUEST: Final = "anfrageListeProtokolldaten"
LIST_ANSWER: Final = "antwortListeProtokolldaten"
CONTENT_REQUEST: Final = "anfrageInhaltsdaten"
CONTENT_ANSWER: Final = "antwortInhaltsdaten"
STATUS_ANSWER: Final = "antwortStatus"
#: XDatenschutzcockpit 1.1.0, in Einmal's JSON rendering (docs/api.md)
VERSION: Final = "1.1.0+einmal.1"
#: the longest a request token may live (exp - iat)
MAX_TOKEN_TTL_S: Final = 60
#: the ``typ`` of a source's signed answer (the JWS inside the JWE)
ANSWER_TYP: Final = "dsc-answer+jws"
_JWE_ALGORITHMS = ("ECDH-ES", "A256GCM")
_JWE_HEADER = {"alg": "ECDH-ES", "enc": "A256GCM"}
#: the tree's bounds: what a source may send, what a client accepts
_MAX_DEPTH = 8
_MAX_NODES = 5_000
_MAX_ANSWER_BYTES = 4 * 1024 * 1024

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(max_length=10_000)]
Short = Annotated[str, msgspec.Meta(max_length=500)]


class SourceError(Exception):
    """Base of every error of ``SourceClient`` (the hierarchy: module docstring)."""


class SourceUnavailableError(SourceError):
    """The source could not be reached, did not answer in time, or answered 5xx."""


class SourceRefusedError(SourceError):
    """The source refused the request (4xx). ``problem_type``: its problem+json ``type``."""

    def __init__(self, message: str, *, status: int, problem_type: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.problem_type = problem_type


class InvalidSourceAnswerError(SourceError):
    """The answer is garbage, too large, not for this session key, or not this request's."""


# -- the content tree ---------------------------------------------------------------------

class ContentItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``inhaltsdaten``: one label/value pair, the value as the source shows it."""

    label: Label
    value: Text = msgspec.field(name="inhalt")


class ContentGroup(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``gruppeInhaltsdaten``: a labelled group of pairs and further groups."""

    label: Label
    items: tuple[ContentItem, ...] = msgspec.field(default=(), name="inhaltsdaten")
    groups: tuple["ContentGroup", ...] = msgspec.field(default=(), name="gruppeInhaltsdaten")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "ja" if value else "nein"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | Decimal | float):
        return str(value)
    msg = f"not a content value: {type(value).__name__}"
    raise TypeError(msg)


def _group(label: str, fields: Mapping[str, Any]) -> ContentGroup:
    items: list[ContentItem] = []
    groups: list[ContentGroup] = []
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            groups.append(_group(name, value))
        elif isinstance(value, list | tuple):
            if all(isinstance(v, Mapping) for v in value):
                groups.extend(_group(f"{name} {n}", v) for n, v in enumerate(value, 1))
            else:
                items.append(ContentItem(label=name, value=", ".join(map(_text, value))))
        else:
            items.append(ContentItem(label=name, value=_text(value)))
    return ContentGroup(label=label, items=tuple(items), groups=tuple(groups))


def content_groups(tree: Mapping[str, Mapping[str, Any]]) -> tuple[ContentGroup, ...]:
    """The content tree of ``{group label: {label: value | {...} | [{...}, ...]}}``.

    A value becomes an item (dates ISO, booleans ja/nein, a list of values joined by ", "),
    a mapping a sub-group, a list of mappings numbered sub-groups ("Elternteil 1", ...);
    None is left out. Keys keep their order. A top-level value that is not a mapping is a
    ``TypeError`` (the tree's top level holds groups only)."""
    groups = []
    for label, fields in tree.items():
        if not isinstance(fields, Mapping):
            msg = f"the top level holds groups only: {label!r}"
            raise TypeError(msg)
        groups.append(_group(label, fields))
    result = tuple(groups)
    check_tree(result)
    return result


def check_tree(groups: Sequence[ContentGroup]) -> None:
    """``ValueError`` unless the tree is at most 8 groups deep with at most 5,000 nodes."""
    count = 0
    stack = [(g, 1) for g in groups]
    while stack:
        group, depth = stack.pop()
        count += 1 + len(group.items)
        if depth > _MAX_DEPTH or count > _MAX_NODES:
            msg = f"the content tree exceeds {_MAX_DEPTH} levels or {_MAX_NODES} nodes"
            raise ValueError(msg)
        stack.extend((g, depth + 1) for g in group.groups)


# -- the messages ---------------------------------------------------------------------------

class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """Who received the data: the online service and its authority (as the requester said)."""

    service_id: Short
    service_name: Short = ""
    authority: Short = ""


class SourceEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One protocol entry as a source lists it ("Datenübermittlung am <Datum>")."""

    id: Short
    occurred_at: datetime
    source: Short                 # the sending body (register id)
    source_name: Short = ""
    recipient: Recipient | None = None  # None: the query did not say who asked
    intermediary: Short | None = None
    purpose: Short = ""
    legal_basis: Short = ""
    consent_id: Short | None = None
    data_categories: tuple[Short, ...] = ()
    relation: Literal["self", "concerned"] = "self"
    retention_until: datetime | None = None
    transfer_id: Short | None = None  # the intermediary's id of the transfer, if it said


class ListRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nachrichtentyp: Literal["anfrageListeProtokolldaten"] = LIST_REQUEST
    correlation_id: Short = msgspec.field(name="correlationID")
    idnr: Annotated[str, msgspec.Meta(pattern=r"^\d{11}$")]
    session_key: dict[str, str]


class ContentRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nachrichtentyp: Literal["anfrageInhaltsdaten"] = CONTENT_REQUEST
    correlation_id: Short = msgspec.field(name="correlationID")
    idnr: Annotated[str, msgspec.Meta(pattern=r"^\d{11}$")]
    entry_id: Short
    session_key: dict[str, str]


class ListAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The encrypted payload of ``antwortListeProtokolldaten``."""

    nachrichtentyp: Literal["antwortListeProtokolldaten"] = LIST_ANSWER
    correlation_id: Short = msgspec.field(name="correlationID")
    source: Short
    idnr: str
    entries: tuple[SourceEntry, ...] = ()


class ContentAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The encrypted payload of ``antwortInhaltsdaten``."""

    nachrichtentyp: Literal["antwortInhaltsdaten"] = CONTENT_ANSWER
    correlation_id: Short = msgspec.field(name="correlationID")
    source: Short
    idnr: str
    entry_id: Short
    groups: tuple[ContentGroup, ...] = msgspec.field(default=(), name="gruppeInhaltsdaten")


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What travels: plain routing facts around the JWE ``payload`` (no citizen data)."""

    nachrichtentyp: Short
    version: Short
    correlation_id: Short = msgspec.field(name="correlationID")
    source: Short
    payload: Annotated[str, msgspec.Meta(max_length=_MAX_ANSWER_BYTES)]


class StatusAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``antwortStatus``: plain (it says nothing about a citizen), token-protected all the same."""

    nachrichtentyp: Literal["antwortStatus"] = STATUS_ANSWER
    version: Short = VERSION
    source: Short
    name: Short = ""
    status: Literal["verfuegbar", "gestoert"] = "verfuegbar"
    messages: tuple[Short, ...] = (LIST_REQUEST, CONTENT_REQUEST)


_encode = msgspec.json.Encoder().encode
_decode_envelope = msgspec.json.Decoder(Envelope).decode
_decode_list = msgspec.json.Decoder(ListAnswer).decode
_decode_content = msgspec.json.Decoder(ContentAnswer).decode
_decode_status = msgspec.json.Decoder(StatusAnswer).decode


# -- keys and tokens ------------------------------------------------------------------------

def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def body_hash(body: bytes) -> str:
    """The ``req_sha256`` claim of a request token: base64url(SHA-256(body))."""
    return _b64u(hashlib.sha256(body).digest())


def public_session_key(jwk: Mapping[str, Any]) -> OKPKey:
    """A session's public key from its JWK: X25519 only, never a private one (ValueError)."""
    if (jwk.get("kty") != "OKP" or jwk.get("crv") != "X25519" or "d" in jwk
            or not isinstance(jwk.get("x"), str)):
        msg = "the session key must be a public X25519 JWK (kty OKP, crv X25519, no d)"
        raise ValueError(msg)
    try:
        key = OKPKey.import_key({"kty": "OKP", "crv": "X25519", "x": jwk["x"]})
    except (JoseError, ValueError) as exc:
        msg = "the session key does not decode"
        raise ValueError(msg) from exc
    return key


def seal_for_session(jwk: Mapping[str, Any], plaintext: bytes) -> str:
    """The JWE (compact, ECDH-ES with X25519, A256GCM) of ``plaintext`` to a session's key."""
    return jwe.encrypt_compact(dict(_JWE_HEADER), plaintext, public_session_key(jwk),
                               algorithms=_JWE_ALGORITHMS)


class _SignedAnswers(jws.JWSRegistry):
    """joserfc's JWS bounds, with room for an answer up to the envelope's bound."""

    max_payload_length = _MAX_ANSWER_BYTES


#: RFC 9864's fully-specified name of EdDSA over Ed25519 (joserfc warns on plain "EdDSA")
ANSWER_ALG: Final = "Ed25519"
_SIGNED = _SignedAnswers(algorithms=[ANSWER_ALG])


def sign_answer(plain: bytes, private_key: Ed25519PrivateKey, kid: str) -> str:
    """A source's signature over an answer's JSON: a JWS compact (``alg`` Ed25519, RFC 9864;
    ``typ`` ``dsc-answer+jws``, ``kid``)."""
    return jws.serialize_compact({"alg": ANSWER_ALG, "kid": kid, "typ": ANSWER_TYP}, plain,
                                 OKPKey.import_key(private_key), registry=_SIGNED)


def seal_answer(jwk: Mapping[str, Any], plain: bytes, *, private_key: Ed25519PrivateKey,
                kid: str) -> str:
    """Sign-then-encrypt: the JWE (to the session's key) of the JWS (the source's key) of
    ``plain`` - what an answer's envelope carries as ``payload``."""
    return seal_for_session(jwk, sign_answer(plain, private_key, kid).encode())


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def source_public_keys(document: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """{kid: key} of a source's public key: one Ed25519 JWK, or a JWK set (``{"keys": [..]}``,
    as ``<name>.public.json`` files hold it; a rotated key stays listed). ``ValueError`` for
    anything else: a private key, another curve, no ``kid``, or no key at all."""
    jwks = document.get("keys") if "keys" in document else [document]
    if not isinstance(jwks, list) or not jwks:
        msg = "a source key is an Ed25519 JWK or a JWK set with at least one"
        raise ValueError(msg)
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in jwks:
        if (not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP"
                or jwk.get("crv") != "Ed25519" or "d" in jwk
                or not isinstance(jwk.get("x"), str) or not isinstance(jwk.get("kid"), str)):
            msg = "a source key must be a public Ed25519 JWK with a kid (kty OKP, no d)"
            raise ValueError(msg)
        try:
            keys[jwk["kid"]] = Ed25519PublicKey.from_public_bytes(_unb64u(jwk["x"]))
        except ValueError as exc:
            msg = "a source key does not decode"
            raise ValueError(msg) from exc
    return keys


def verify_answer(unverified_jws: bytes, keys: Mapping[str, Ed25519PublicKey]) -> bytes:
    """The answer JSON inside a source's JWS; ``InvalidSourceAnswerError`` unless it is an
    Ed25519 JWS (RFC 9864) of type ``dsc-answer+jws`` that verifies with the key its ``kid``
    names in ``keys``. (joserfc, not PyJWT: PyJWT checks a payload's alphabet character by
    character, 5 ms for a 60 KB answer; joserfc 0.7 ms.)"""
    try:
        header = jws.extract_compact(unverified_jws, registry=_SIGNED).headers()
        key = keys.get(str(header.get("kid")))
        if header.get("typ") != ANSWER_TYP or header.get("alg") != ANSWER_ALG or key is None:
            msg = "not a source answer signed with a known key"
            raise ValueError(msg)
        verified = jws.deserialize_compact(unverified_jws, OKPKey.import_key(key),
                                           registry=_SIGNED)
    except (JoseError, ValueError, TypeError) as exc:
        msg = "the answer is not signed with the source's key (signed with another key?)"
        raise InvalidSourceAnswerError(msg) from exc
    return verified.payload


class _AnswerRegistry(jwe.JWERegistry):
    """joserfc's JWE bounds, with room for an answer up to the envelope's bound (its default
    ciphertext limit, 64 KB, would refuse a list of some 130 entries)."""

    max_ciphertext_length = _MAX_ANSWER_BYTES


_ANSWERS = _AnswerRegistry(algorithms=list(_JWE_ALGORITHMS))


class SessionKey:
    """An X25519 key pair the cockpit makes for one citizen's session: sources encrypt their
    answers to ``public_jwk``; only this object opens them. Held in memory only, never stored."""

    def __init__(self) -> None:
        self._key = OKPKey.generate_key("X25519")

    @property
    def public_jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "X25519", "x": str(self._key.as_dict(private=False)["x"])}

    def open(self, unverified_jwe: str) -> bytes:
        """The plaintext; ``InvalidSourceAnswerError`` unless it is an ECDH-ES/A256GCM JWE that
        this key opens."""
        try:
            opened = jwe.decrypt_compact(unverified_jwe, self._key, registry=_ANSWERS)
        except (JoseError, ValueError, TypeError) as exc:
            msg = "the answer is not encrypted to this session's key"
            raise InvalidSourceAnswerError(msg) from exc
        if opened.protected.get("alg") != "ECDH-ES" or opened.protected.get("enc") != "A256GCM":
            msg = "the answer is not ECDH-ES/A256GCM"
            raise InvalidSourceAnswerError(msg)
        plaintext = opened.plaintext
        if plaintext is None:
            msg = "the answer is empty"
            raise InvalidSourceAnswerError(msg)
        return plaintext


class SourceTokenSigner:
    """Signs the cockpit's request tokens (EdDSA JWT): one per request, ``ttl_s`` <= 60."""

    def __init__(self, *, private_key: Ed25519PrivateKey, kid: str, issuer: str,
                 ttl_s: int = 30) -> None:
        if not 0 < ttl_s <= MAX_TOKEN_TTL_S:
            msg = f"ttl_s must be 1-{MAX_TOKEN_TTL_S}"
            raise ValueError(msg)
        self._key = private_key
        self._kid = kid
        self.issuer = issuer
        self._ttl = ttl_s

    def token(self, audience: str, body: bytes, *, now: float | None = None,
              jti: str | None = None, ttl_s: int | None = None) -> str:
        """A token for one request to ``audience`` with ``body`` (tests may pass ``now``,
        ``jti`` and ``ttl_s`` to make a bad one)."""
        issued = int(now if now is not None else time.time())
        claims = {"iss": self.issuer, "sub": self.issuer, "aud": audience, "iat": issued,
                  "exp": issued + (ttl_s if ttl_s is not None else self._ttl),
                  "jti": jti or str(uuid.uuid4()), "req_sha256": body_hash(body)}
        return jwt.encode(claims, self._key, algorithm="EdDSA",
                          headers={"kid": self._kid, "typ": "at+jwt"})


# -- the client -----------------------------------------------------------------------------

class SourceClient:
    """Asks one source and opens its answers with the session's key.

    ``url``: the source's base, e.g. ``http://host/registers/standesamt/04011000/dsc``;
    ``source_id``: its id, the tokens' audience (``standesamt:04011000``); ``source_key``: its
    public signing key as its document names it (a JWK or a JWK set, ``source_public_keys``):
    an answer not signed with it is refused. ``ValueError`` if the key is not one."""

    def __init__(self, *, url: str, source_id: str, signer: SourceTokenSigner,
                 source_key: Mapping[str, Any],
                 timeout_s: float = 5.0, transport: httpx.AsyncBaseTransport | None = None,
                 max_answer_bytes: int = _MAX_ANSWER_BYTES) -> None:
        self.url = url.rstrip("/")
        self.source_id = source_id
        self._signer = signer
        self._source_keys = source_public_keys(source_key)
        self._max = max_answer_bytes
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport,
                                       follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: bytes) -> bytes:
        token = self._signer.token(self.source_id, body)
        headers = {"authorization": f"Bearer {token}", "accept": "application/json"}
        if body:
            headers["content-type"] = "application/json"
        request = self._http.build_request(method, f"{self.url}{path}", content=body or None,
                                           headers=headers)
        try:
            response = await self._http.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max:
                        msg = f"{self.source_id} answered more than {self._max} bytes"
                        raise InvalidSourceAnswerError(msg)
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            msg = f"{self.source_id} is unreachable or did not answer in time"
            raise SourceUnavailableError(msg) from exc
        content = b"".join(chunks)
        if response.status_code >= 500:
            msg = f"{self.source_id} answered {response.status_code}"
            raise SourceUnavailableError(msg)
        if response.status_code != 200:
            problem_type = ""
            try:
                problem = msgspec.json.decode(content)
                if isinstance(problem, dict) and isinstance(problem.get("type"), str):
                    problem_type = problem["type"][:200]
            except msgspec.DecodeError:
                pass
            msg = f"{self.source_id} refused the request ({response.status_code})"
            raise SourceRefusedError(msg, status=response.status_code, problem_type=problem_type)
        return content

    def _open(self, raw: bytes, expected: str, correlation_id: str, session: SessionKey,
              ) -> bytes:
        signed = session.open(self._envelope(raw, expected, correlation_id).payload)
        try:
            return verify_answer(signed, self._source_keys)
        except InvalidSourceAnswerError as exc:
            msg = f"{self.source_id}'s answer is signed with another key (or not signed)"
            raise InvalidSourceAnswerError(msg) from exc

    def _check(self, answer: ListAnswer | ContentAnswer, correlation_id: str,
               idnr: str) -> None:
        if (answer.correlation_id != correlation_id or answer.source != self.source_id
                or answer.idnr != idnr):
            msg = (f"{self.source_id}'s answer is for another request, source or citizen")
            raise InvalidSourceAnswerError(msg)

    async def list_entries(self, idnr: str, session: SessionKey) -> ListAnswer:
        """``anfrageListeProtokolldaten``: the source's entries about ``idnr``."""
        correlation_id = str(uuid.uuid4())
        body = _encode(ListRequest(correlation_id=correlation_id, idnr=idnr,
                                   session_key=session.public_jwk))
        raw = await self._call("POST", "/protokolldaten", body)
        plain = self._open(raw, LIST_ANSWER, correlation_id, session)
        try:
            answer = _decode_list(plain)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            msg = f"{self.source_id} sent an invalid {LIST_ANSWER}"
            raise InvalidSourceAnswerError(msg) from exc
        self._check(answer, correlation_id, idnr)
        if any(e.source != self.source_id for e in answer.entries):
            msg = f"{self.source_id} listed entries of another source"
            raise InvalidSourceAnswerError(msg)
        return answer

    async def content(self, idnr: str, entry_id: str, session: SessionKey) -> ContentAnswer:
        """``anfrageInhaltsdaten``: the content data of one entry, as a group tree."""
        correlation_id = str(uuid.uuid4())
        body = _encode(ContentRequest(correlation_id=correlation_id, idnr=idnr,
                                      entry_id=entry_id, session_key=session.public_jwk))
        raw = await self._call("POST", "/inhaltsdaten", body)
        plain = self._open(raw, CONTENT_ANSWER, correlation_id, session)
        try:
            answer = _decode_content(plain)
            check_tree(answer.groups)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            msg = f"{self.source_id} sent an invalid {CONTENT_ANSWER}"
            raise InvalidSourceAnswerError(msg) from exc
        self._check(answer, correlation_id, idnr)
        if answer.entry_id != entry_id:
            msg = f"{self.source_id} answered with another entry's content"
            raise InvalidSourceAnswerError(msg)
        return answer

    async def relay_list(self, idnr: str, session_jwk: Mapping[str, Any]) -> Envelope:
        """``anfrageListeProtokolldaten`` for a session key the caller does not hold (the
        cockpit's API relays for a citizen's own client): the envelope, unopened. Checked:
        it is the answer to this request (message, correlation id, source); what it carries
        only the key's holder can read (``open_relayed_list``)."""
        public_session_key(session_jwk)
        correlation_id = str(uuid.uuid4())
        body = _encode(ListRequest(correlation_id=correlation_id, idnr=idnr,
                                   session_key=dict(session_jwk)))
        raw = await self._call("POST", "/protokolldaten", body)
        return self._envelope(raw, LIST_ANSWER, correlation_id)

    async def relay_content(self, idnr: str, entry_id: str, session_jwk: Mapping[str, Any],
                            ) -> Envelope:
        """``anfrageInhaltsdaten`` relayed (as ``relay_list``): the envelope, unopened."""
        public_session_key(session_jwk)
        correlation_id = str(uuid.uuid4())
        body = _encode(ContentRequest(correlation_id=correlation_id, idnr=idnr,
                                      entry_id=entry_id, session_key=dict(session_jwk)))
        raw = await self._call("POST", "/inhaltsdaten", body)
        return self._envelope(raw, CONTENT_ANSWER, correlation_id)

    def _envelope(self, raw: bytes, expected: str, correlation_id: str) -> Envelope:
        try:
            envelope = _decode_envelope(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            msg = f"{self.source_id} sent no valid envelope"
            raise InvalidSourceAnswerError(msg) from exc
        if (envelope.nachrichtentyp != expected or envelope.correlation_id != correlation_id
                or envelope.source != self.source_id):
            msg = f"{self.source_id} sent an envelope that is not the answer to this request"
            raise InvalidSourceAnswerError(msg)
        return envelope

    async def status(self) -> StatusAnswer:
        raw = await self._call("GET", "/status", b"")
        try:
            answer = _decode_status(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            msg = f"{self.source_id} sent an invalid {STATUS_ANSWER}"
            raise InvalidSourceAnswerError(msg) from exc
        if answer.source != self.source_id:
            msg = f"{self.source_id} answered as another source"
            raise InvalidSourceAnswerError(msg)
        return answer


# -- a relayed answer, opened by the citizen's own client ----------------------------------

def _open_relayed(envelope: Envelope, expected: str, *, session: SessionKey, source_id: str,
                  source_key: Mapping[str, Any]) -> bytes:
    if envelope.nachrichtentyp != expected or envelope.source != source_id:
        msg = f"the relayed envelope is not a {expected} of {source_id}"
        raise InvalidSourceAnswerError(msg)
    signed = session.open(envelope.payload)
    try:
        return verify_answer(signed, source_public_keys(source_key))
    except ValueError as exc:
        msg = f"{source_id}'s key is not a source key"
        raise InvalidSourceAnswerError(msg) from exc


def open_relayed_list(envelope: Envelope, *, session: SessionKey, source_id: str,
                      source_key: Mapping[str, Any], idnr: str) -> ListAnswer:
    """A list answer the cockpit relayed, opened with the citizen's own session key and
    checked as ``SourceClient.list_entries`` checks its own: signed by the source's key, the
    envelope's correlation id and source inside, about ``idnr``, only the source's entries.
    The relay cannot read it, nor change it unnoticed (``InvalidSourceAnswerError``)."""
    plain = _open_relayed(envelope, LIST_ANSWER, session=session, source_id=source_id,
                          source_key=source_key)
    try:
        answer = _decode_list(plain)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = f"{source_id} sent an invalid {LIST_ANSWER}"
        raise InvalidSourceAnswerError(msg) from exc
    if (answer.correlation_id != envelope.correlation_id or answer.source != source_id
            or answer.idnr != idnr or any(e.source != source_id for e in answer.entries)):
        msg = f"{source_id}'s answer is for another request, source or citizen"
        raise InvalidSourceAnswerError(msg)
    return answer


def open_relayed_content(envelope: Envelope, *, session: SessionKey, source_id: str,
                         source_key: Mapping[str, Any], idnr: str, entry_id: str,
                         ) -> ContentAnswer:
    """A content answer the cockpit relayed, opened and checked (``open_relayed_list``)."""
    plain = _open_relayed(envelope, CONTENT_ANSWER, session=session, source_id=source_id,
                          source_key=source_key)
    try:
        answer = _decode_content(plain)
        check_tree(answer.groups)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        msg = f"{source_id} sent an invalid {CONTENT_ANSWER}"
        raise InvalidSourceAnswerError(msg) from exc
    if (answer.correlation_id != envelope.correlation_id or answer.source != source_id
            or answer.idnr != idnr or answer.entry_id != entry_id):
        msg = f"{source_id}'s answer is for another request, entry, source or citizen"
        raise InvalidSourceAnswerError(msg)
    return answer
