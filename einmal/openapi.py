"""What the published OpenAPI document says that Litestar cannot infer from our handlers.

Our handlers return ``Response[bytes]`` and decode bodies by hand (strict JSON: duplicate
members, depth limits; see ``broker/http.py: decode_body``), so Litestar on its own would
publish no request bodies, ``{"type": "string"}`` as every answer's schema and its own
``ValidationException`` shape for 400. These helpers make the document true (tests/fuzz checks
every answer against it with schemathesis' ``response_schema_conformance``):

- ``json_body(Type)``, ``text_body(media_type)``, ``binary_body(media_type)``: ``responses=``
  entries for a route's success answers (200 unless a status is given): the type that
  describes the bytes the handler encodes (a msgspec Struct or TypedDict; nullable fields
  ``X | None``, optional ones with a default, enums as ``Literal``), or a text/binary body.
- ``problems(401, 403, ...)``: ``responses=`` for a route decorator: the listed statuses are
  ``application/problem+json`` (einmal/problems.py). Combine: ``json_body(T) | problems(401)``.
- ``ProblemOperation``: set as every operation's class by ``document_problems(app)``; it turns
  Litestar's generated 400 into problem+json, adds problem+json to an error status declared
  with another media type (e.g. the witness's 409 ``text/x.tlog.size``) and adds a ``default``
  problem+json response (every other error of every route is a problem document).
- ``with_request_body(schema, media_type)``: ``operation_class=`` for a route that parses its
  body by hand: declares the body without changing how it is parsed.
- ``Jwk``, ``PrivateJwk``, ``Jwks``: the key documents einmal/keys.py builds.
"""

from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import Litestar, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    RequestBody,
)
from litestar.params import KwargDefinition
from litestar.routes import HTTPRoute

from einmal.problems import CATALOGUE, PROBLEM_MEDIA_TYPE, ProblemError, problem_response

__all__ = ["Jwk", "Jwks", "PrivateJwk", "Problem", "ProblemOperation", "binary_body",
           "document_problems", "inline_schema", "json_body", "problems",
           "schema_not_found_as_problem", "text_body", "with_request_body"]

_JSON = "application/json"
#: base64url without padding (RFC 7515 §2)
_B64URL = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")]


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details (documentation type; problems.py builds the bodies)."""

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None
    instance: str | None = None


class Jwk(msgspec.Struct, frozen=True, kw_only=True):
    """A public Ed25519 signing key as einmal/keys.py publishes it (RFC 8037)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: _B64URL
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class PrivateJwk(Jwk, frozen=True, kw_only=True):
    """A private key as a JWK: only the demo's publicly known keys are ever sent."""

    d: _B64URL


class Jwks(msgspec.Struct, frozen=True, kw_only=True):
    """A JWK set (RFC 7517 §5): the current key first, then retired ones still published."""

    keys: list[Jwk]


def _answer(status: int, container: Any, media_type: str, description: str | None,
            ) -> dict[int, ResponseSpec]:
    return {status: ResponseSpec(data_container=container, media_type=media_type,
                                 generate_examples=False,
                                 description=description or HTTPStatus(status).phrase)}


def json_body(type_: Any, status: int = 200, *, description: str | None = None,
              media_type: str = _JSON) -> dict[int, ResponseSpec]:
    """``responses=`` entry: the ``status`` answer is JSON shaped as ``type_``."""
    return _answer(status, type_, media_type, description)


def text_body(media_type: str = "text/plain", status: int = 200, *,
              description: str | None = None) -> dict[int, ResponseSpec]:
    """``responses=`` entry: the ``status`` answer is text of ``media_type``."""
    return _answer(status, str, media_type, description)


def binary_body(media_type: str = "application/octet-stream", status: int = 200, *,
                description: str | None = None) -> dict[int, ResponseSpec]:
    """``responses=`` entry: the ``status`` answer is bytes of ``media_type``."""
    binary = Annotated[bytes, KwargDefinition(format=OpenAPIFormat.BINARY)]
    return _answer(status, binary, media_type, description)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:einmal:problem:<slug>",
                 "enum": ["urn:einmal:problem:" + slug for slug in CATALOGUE]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "EU OOTS error code, where one fits"},
        "instance": {"type": "string"},
    },
}


def _problem_response(description: str) -> OpenAPIResponse:
    # Litestar writes a plain JSON-schema dict out as it is, though the field says Schema.
    media = OpenAPIMediaType(schema=PROBLEM_SCHEMA)  # type: ignore[arg-type]  # a dict, see above
    return OpenAPIResponse(description=description, content={PROBLEM_MEDIA_TYPE: media})


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """``responses=`` for a route decorator: these statuses answer problem+json."""
    return {status: ResponseSpec(data_container=Problem, media_type=PROBLEM_MEDIA_TYPE,
                                 generate_examples=False,
                                 description=", ".join(sorted(
                                     slug for slug, (s, _, _) in CATALOGUE.items()
                                     if s == status)) or "problem")
            for status in statuses}


@dataclass
class ProblemOperation(Operation):
    """An operation whose errors are documented as problem+json."""

    def __post_init__(self) -> None:
        responses = dict(self.responses or {})
        for status, response in list(responses.items()):
            content = getattr(response, "content", None) or {}
            if status.startswith(("4", "5")) and PROBLEM_MEDIA_TYPE not in content:
                # Litestar's generated ValidationException (400) schema is application/json:
                # not what is sent. Another media type declared for the status is kept.
                problem = _problem_response(
                    getattr(response, "description", None) or "Bad request")
                kept = {media: body for media, body in content.items() if media != _JSON}
                if kept and problem.content is not None:
                    problem.content = {**kept, **problem.content}
                responses[status] = problem
        responses.setdefault("default", _problem_response(
            "Any other error: a problem document (einmal/problems.py)"))
        self.responses = responses


def with_request_body(schema: dict[str, Any], media_type: str = "application/json",
                      ) -> type[Operation]:
    """``operation_class=`` for a route that decodes its body itself."""

    @dataclass
    class _WithBody(ProblemOperation):
        def __post_init__(self) -> None:
            super().__post_init__()
            media = OpenAPIMediaType(schema=schema)  # type: ignore[arg-type]  # a dict, as above
            self.request_body = RequestBody(required=True, content={media_type: media})

    return _WithBody


def inline_schema(type_: Any) -> dict[str, Any]:
    """msgspec's JSON schema of ``type_`` with its ``$defs`` inlined (our body types are not
    recursive), so it can be embedded anywhere in the OpenAPI document."""
    document = msgspec.json.schema(type_)
    defs = document.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return cast("dict[str, Any]", resolve(document))  # the resolved copy of a dict is a dict


def document_problems(app: Litestar) -> None:
    """Make every operation of ``app`` a ``ProblemOperation`` (routes that declare their own
    operation class keep it; ``with_request_body`` builds on ``ProblemOperation``)."""
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                if handler.operation_class is Operation:
                    handler.operation_class = ProblemOperation


async def schema_not_found_as_problem(response: Response[Any]) -> Response[Any]:
    """``after_request`` of the /schema router: Litestar's HTML 404 page for an unknown
    viewer path becomes the API's one error shape."""
    if response.status_code == 404 and response.media_type != PROBLEM_MEDIA_TYPE:
        return problem_response(ProblemError("not-found", "No such schema document or viewer."))
    return response
