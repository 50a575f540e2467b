import msgspec
import pytest
from litestar import Litestar, get
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.testing import TestClient

from einmal.problems import CATALOGUE, ProblemError, exception_handlers


def _app(exc: Exception) -> Litestar:
    @get("/boom")
    async def boom() -> None:
        raise exc

    return Litestar([boom], exception_handlers=exception_handlers(), logging_config=None)


class TestProblemMapping:
    @pytest.mark.parametrize("slug", sorted(CATALOGUE))
    def test_each_problem_type_renders_as_rfc9457(self, slug: str) -> None:
        status, title, code = CATALOGUE[slug]
        with TestClient(_app(ProblemError(slug, "what happened", transfer_id="t-1"))) as client:
            response = client.get("/boom")
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["type"] == f"urn:einmal:problem:{slug}"
        assert body["title"] == title
        assert body["status"] == status
        assert body["detail"] == "what happened"
        assert body["transfer_id"] == "t-1"
        assert body.get("code") == code
        assert body["instance"] == "/boom"

    def test_unknown_slug_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="unknown problem type"):
            ProblemError("no-such-type", "x")

    @pytest.mark.parametrize(("exc", "status", "slug"), [
        (NotFoundException(), 404, "not-found"),
        (NotAuthorizedException(), 401, "unauthenticated"),
    ])
    def test_framework_http_errors_become_problems(self, exc: Exception, status: int,
                                                   slug: str) -> None:
        with TestClient(_app(exc)) as client:
            response = client.get("/boom")
        assert response.status_code == status
        assert response.json()["type"] == f"urn:einmal:problem:{slug}"

    def test_unexpected_error_is_a_500_problem_without_internals(self) -> None:
        with TestClient(_app(RuntimeError("secret 86095742719"))) as client:
            response = client.get("/boom")
        assert response.status_code == 500
        body = response.json()
        assert body["type"] == "urn:einmal:problem:internal"
        assert "86095742719" not in response.text

    def test_unknown_route_is_a_404_problem(self) -> None:
        with TestClient(_app(RuntimeError())) as client:
            response = client.get("/nowhere")
        assert response.status_code == 404
        assert msgspec.json.decode(response.content)["type"] == "urn:einmal:problem:not-found"
