"""The public surface outside the business API: OpenAPI viewers, unknown paths (F6) and the
operator endpoints (F5)."""

import pytest

from tests.e2e.helpers import problem


class TestErrorsOutsideTheApi:
    @pytest.mark.parametrize("path", ["/schema/no-such-viewer", "/schema/a/b", "/schema/x.json",
                                      "/schema/x.yaml", "/no/such/path", "/v1/nothing"])
    def test_unknown_paths_are_problem_json(self, demo, path) -> None:
        body = problem(demo.http.get(path), 404, "not-found")
        assert "<html" not in str(body).lower()

    def test_the_viewers_still_render(self, demo) -> None:
        response = demo.http.get("/schema/swagger")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")


class TestThePublishedSchemaIsTrue:
    def test_every_error_response_is_problem_json(self, demo) -> None:
        schema = demo.http.get("/schema/openapi.json").json()
        errors = {(method, path, status): set(response.get("content", {}))
                  for path, operations in schema["paths"].items()
                  for method, operation in operations.items()
                  for status, response in operation["responses"].items()
                  if status == "default" or status[0] in "45"}
        assert errors
        wrong = {key: types for key, types in errors.items()
                 if types != {"application/problem+json"}}
        assert not wrong, wrong
        assert all(("default" in operation["responses"])
                   for operations in schema["paths"].values()
                   for operation in operations.values())

    def test_text_and_ndjson_answers_are_declared(self, demo) -> None:
        paths = demo.http.get("/schema/openapi.json").json()["paths"]
        for path in ("/v1/log/checkpoint", "/v1/log/verifier-key", "/v1/log/verifier-keys"):
            assert set(paths[path]["get"]["responses"]["200"]["content"]) == {"text/plain"}
        export = paths["/v1/audit/export"]["get"]["responses"]["200"]["content"]
        assert set(export) == {"application/x-ndjson"}

    def test_text_content_type_names_the_charset_once(self, demo) -> None:
        response = demo.http.get("/v1/log/verifier-key")
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
