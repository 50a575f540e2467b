"""The helpers that make the published OpenAPI document true (einmal/openapi.py)."""

from typing import Any, Literal

import msgspec
from litestar import Litestar, Response, get, post
from litestar.params import FromQuery

from einmal.openapi import (
    binary_body,
    document_problems,
    json_body,
    problems,
    text_body,
)
from einmal.problems import PROBLEM_MEDIA_TYPE


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    state: Literal["open", "closed"]
    note: str | None
    count: int = 0


@get("/json", responses=json_body(_Answer) | json_body(_Answer, 202) | problems(404))
async def _json() -> Response[bytes]:
    return Response(b"{}", media_type="application/json")


@get("/text", media_type="text/plain", responses=text_body())
async def _text() -> Response[bytes]:
    return Response(b"", media_type="text/plain")


@get("/binary", media_type="application/octet-stream", responses=binary_body())
async def _binary() -> Response[bytes]:
    return Response(b"", media_type="application/octet-stream")


@post("/both", status_code=200,
      responses=text_body() | text_body("text/x.size", 409) | problems(400))
async def _both() -> Response[bytes]:
    return Response(b"", media_type="text/plain")


@get("/typed")
async def _typed(number: FromQuery[int]) -> Response[bytes]:  # a query parameter: Litestar's 400
    return Response(str(number).encode(), media_type="text/plain")


def _document() -> dict[str, Any]:
    app = Litestar([_json, _text, _binary, _both, _typed])
    document_problems(app)
    return app.openapi_schema.to_schema()


def _responses(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][path][method]["responses"]


class TestErrorResponses:
    def test_litestars_generated_400_is_replaced_by_a_problem(self) -> None:
        bad = _responses(_document(), "get", "/typed")["400"]
        assert set(bad["content"]) == {PROBLEM_MEDIA_TYPE}

    def test_an_error_status_with_another_media_type_keeps_it_beside_the_problem(self) -> None:
        conflict = _responses(_document(), "post", "/both")["409"]
        assert set(conflict["content"]) == {"text/x.size", PROBLEM_MEDIA_TYPE}
        assert conflict["content"]["text/x.size"]["schema"] == {"type": "string"}

    def test_every_operation_has_a_default_problem(self) -> None:
        document = _document()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                default = operation["responses"]["default"]
                assert set(default["content"]) == {PROBLEM_MEDIA_TYPE}, (method, path)


class TestSuccessBodies:
    def test_json_body_publishes_the_struct_with_nullable_optional_and_exact_members(
            self) -> None:
        document = _document()
        responses = _responses(document, "get", "/json")
        for status in ("200", "202"):
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/_Answer"}
        assert responses["200"]["description"] == "OK"
        assert responses["202"]["description"] == "Accepted"
        schema = document["components"]["schemas"]["_Answer"]
        assert sorted(schema["required"]) == ["note", "state"]
        assert schema["properties"]["state"]["enum"] == ["open", "closed"]
        assert {"type": "null"} in schema["properties"]["note"]["oneOf"]

    def test_text_body_is_a_string_of_its_media_type(self) -> None:
        content = _responses(_document(), "get", "/text")["200"]["content"]
        assert content == {"text/plain": {"schema": {"type": "string"}}}

    def test_binary_body_is_a_binary_string(self) -> None:
        content = _responses(_document(), "get", "/binary")["200"]["content"]
        assert content == {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}
