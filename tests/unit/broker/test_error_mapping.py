"""Connector errors -> problem types (one row each), and the problem catalogue's statuses."""

import pytest

from broker.service import connector_problem
from einmal.domain.registers import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    RecordNotFoundError,
    RegisterRejectedError,
    RegisterTimeoutError,
    RegisterUnavailableError,
    RoutingError,
)


@pytest.mark.parametrize(("error", "slug", "status", "code"), [
    (RegisterTimeoutError("slow"), "register-timeout", 504, "EDM:ERR:0005"),
    (RegisterUnavailableError("down"), "register-unavailable", 502, "EDM:ERR:0008"),
    (RegisterRejectedError("no"), "register-unavailable", 502, "EDM:ERR:0008"),
    (InvalidRegisterAnswerError("bad xml"), "register-unavailable", 502, "EDM:ERR:0008"),
    (RecordNotFoundError("none"), "not-found", 404, "EDM:ERR:0004"),
    (RoutingError("no AGS"), "routing-failed", 422, "EDM:ERR:0006"),
    (InvalidParametersError("bad"), "register-unavailable", 502, "EDM:ERR:0008"),
])
def test_connector_error_maps_to_a_stable_problem(error, slug, status, code) -> None:
    problem = connector_problem(error, "t-1")
    body = problem.body()
    assert (problem.slug, problem.status, body["code"]) == (slug, status, code)
    assert body["transfer_id"] == "t-1"
    assert body["detail"] == str(error)
