"""The cockpit's errors as problem details (cockpit/http.py: PROBLEMS): one test per row, and
the router's handlers answer them as problem+json."""

import pytest
from litestar import Litestar, Router, get
from litestar.testing import AsyncTestClient

from cockpit.errors import (
    CockpitError,
    InvalidRequestError,
    NotFoundError,
    OutOfRangeError,
    TreeIntegrityError,
)
from cockpit.http import EXCEPTION_HANDLERS, PROBLEMS, problem_for
from einmal.problems import exception_handlers
from einmal.store import DuplicateKeyError, StoreError

ROWS = [  # error, problem type, status, detail shown
    (OutOfRangeError("index must be >= 0 and < tree_size."), "invalid-request", 400,
     "index must be >= 0 and < tree_size."),
    (InvalidRequestError("limit: between 1 and 200."), "invalid-request", 422,
     "limit: between 1 and 200."),
    (NotFoundError("The log has no checkpoint yet."), "not-found", 404,
     "The log has no checkpoint yet."),
    (TreeIntegrityError("the stored tree is missing nodes"), "internal", 500,
     "the stored tree is missing nodes"),
    (CockpitError("a kind without a row of its own"), "internal", 500,
     "a kind without a row of its own"),
    (StoreError("cockpit store failed: OperationalError"), "store-unavailable", 503,
     "The cockpit store is unavailable."),
]


def test_every_row_of_the_table_is_tested() -> None:
    assert {type(error) for error, *_ in ROWS} == set(PROBLEMS)


@pytest.mark.parametrize(("error", "slug", "status", "detail"), ROWS,
                         ids=[type(row[0]).__name__ for row in ROWS])
def test_an_error_becomes_its_problem(error: Exception, slug: str, status: int,
                                      detail: str) -> None:
    problem = problem_for(error)
    assert (problem.slug, problem.status, problem.detail) == (slug, status, detail)
    if slug == "store-unavailable":
        assert int(problem.headers["Retry-After"]) >= 1


def test_a_store_error_subclass_is_a_store_failure_too() -> None:
    assert problem_for(DuplicateKeyError("duplicate key: IntegrityError")).status == 503


@pytest.mark.parametrize(("error", "slug", "status", "detail"), ROWS,
                         ids=[type(row[0]).__name__ for row in ROWS])
async def test_the_router_answers_problem_json(error: Exception, slug: str, status: int,
                                               detail: str) -> None:
    @get("/fails")
    async def fails() -> None:
        raise error

    app = Litestar(route_handlers=[Router(path="/", route_handlers=[fails],
                                          exception_handlers=EXCEPTION_HANDLERS)],
                   exception_handlers=exception_handlers())
    async with AsyncTestClient(app) as client:
        response = await client.get("/fails")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["type"], body["detail"]) == (f"urn:einmal:problem:{slug}", detail)
    assert ("retry-after" in response.headers) == (slug == "store-unavailable")
