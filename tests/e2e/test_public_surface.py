"""The public surface outside the business API: OpenAPI viewers, unknown paths (F6) and the
operator endpoints (F5)."""

from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer, serve_demo
from tests.e2e.conftest import bearer
from tests.e2e.helpers import problem


class TestErrorsOutsideTheApi:
    @pytest.fixture(name="live_server", scope="class")
    @classmethod
    def fx_live_server(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        """One demo server for the class: its tests only read."""
        yield from serve_demo(tmp_path_factory)

    @pytest.mark.parametrize("path", ["/schema/no-such-viewer", "/schema/a/b", "/schema/x.json",
                                      "/schema/x.yaml", "/no/such/path", "/v1/nothing"])
    def test_unknown_paths_are_problem_json(self, demo, path) -> None:
        body = problem(demo.http.get(path), 404, "not-found")
        assert "<html" not in str(body).lower()

    @pytest.mark.parametrize("lang, heading", [("de", "Seite nicht gefunden"),
                                               ("en", "Page not found")])
    def test_a_browser_gets_the_cockpit_404_page(self, demo, lang, heading) -> None:
        response = demo.http.get(f"/no/such/page?lang={lang}", headers={"accept": "text/html"})
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert f"<h1>{heading}</h1>" in response.text
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"

    @pytest.mark.parametrize("path", ["/v1/nothing", "/schema/x.json", "/registers/nothing",
                                      "/.well-known/nothing"])
    def test_machine_paths_stay_problem_json_for_browsers(self, demo, path) -> None:
        problem(demo.http.get(path, headers={"accept": "text/html"}), 404, "not-found")

    def test_the_viewers_still_render(self, demo) -> None:
        response = demo.http.get("/schema/swagger")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")


class TestThePublishedSchemaIsTrue:
    @pytest.fixture(name="live_server", scope="class")
    @classmethod
    def fx_live_server(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        """One demo server for the class: its tests only read."""
        yield from serve_demo(tmp_path_factory)

    def test_every_error_response_is_problem_json(self, demo) -> None:
        schema = demo.http.get("/schema/openapi.json").json()
        errors = {(method, path, status): set(response.get("content", {}))
                  for path, operations in schema["paths"].items()
                  for method, operation in operations.items()
                  for status, response in operation["responses"].items()
                  if status == "default" or status[0] in "45"}
        assert errors
        # C2SP tlog-witness: a stale old size is a 409 with the latest size as text (a fork
        # is a 409 problem); the one error answer a protocol fixes in another shape.
        protocol = {("post", "/witness/add-checkpoint", "409"):
                    {"application/problem+json", "text/x.tlog.size"}}
        wrong = {key: types for key, types in errors.items()
                 if types != protocol.get(key, {"application/problem+json"})}
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


class TestOperatorEndpoints:
    """F5: readiness and metrics show store state and outbox lag: operator token only."""

    @pytest.mark.parametrize("path", ["/health/ready", "/metrics"])
    def test_need_the_operator_token(self, demo, path) -> None:
        problem(demo.http.get(path), 401, "unauthenticated")
        wrong = demo.credentials["ops_token"][:-1] + "x"
        problem(demo.http.get(path, headers=bearer(wrong)), 401, "unauthenticated")
        citizen = demo.citizen_token(demo.citizen("elfe", "parent")["idnr"])
        problem(demo.http.get(path, headers=bearer(citizen)), 401, "unauthenticated")
        assert demo.http.get(path, headers=bearer(demo.credentials["ops_token"])).status_code == 200

    def test_liveness_stays_public(self, demo) -> None:
        assert demo.http.get("/health/live").json() == {"status": "ok"}

    def test_the_token_file_is_owner_only_and_never_served(self, demo, live_server) -> None:
        token_file = live_server.data_dir / "keys" / "ops.token"
        assert token_file.read_text().strip() == demo.credentials["ops_token"]
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert (live_server.data_dir / "keys").stat().st_mode & 0o777 == 0o700
        assert demo.credentials["ops_token"] not in demo.http.get("/demo/credentials").text

    def test_a_configured_token_replaces_the_file(self, make_demo) -> None:
        demo = make_demo(ops_token="configured-operator-token")
        assert demo.credentials["ops_token"] == "configured-operator-token"
        ok = demo.http.get("/metrics", headers=bearer("configured-operator-token"))
        assert ok.status_code == 200
