"""The operator's endpoints (``/health/ready``, ``/metrics``) need an operator bearer token
(finding F5: they showed store state and outbox lag to anyone). ``/health/live`` stays public
for the orchestrator's liveness probe.

The token is ``EINMAL_OPS_TOKEN`` or, when unset, a random one kept in
``<data-dir>/keys/ops.token`` (0600; point Prometheus' ``authorization.credentials_file`` at
it). In demo mode it is also written to ``demo-credentials.json`` (never served over HTTP).
"""

import hmac
from typing import Any, Literal

import msgspec
from litestar import Request

from einmal.keys import load_or_create_token
from einmal.problems import ProblemError
from einmal.settings import Settings
from einmal.tokens import bearer_token

__all__ = ["OPS_TOKEN_NAME", "Liveness", "OpsAuth", "Readiness", "ops_token"]

OPS_TOKEN_NAME = "ops"  # noqa: S105 - the key file's name, not a secret


class Liveness(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``/health/live``."""

    status: Literal["ok"]


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``/health/ready`` when every check passes (else a 503 problem)."""

    status: Literal["ok"]
    #: the components this process runs
    components: list[str]
    #: each component's checks: "ok", or a number (outbox lag, log size, ...). Not
    #: ``int | float``: Litestar writes a union as ``oneOf``, and an integer is both.
    checks: dict[str, str | float]


def ops_token(settings: Settings) -> str:
    if settings.ops_token:
        return settings.ops_token
    return load_or_create_token(settings.keys_dir, OPS_TOKEN_NAME)


class OpsAuth:
    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, request: Request[Any, Any, Any]) -> None:
        presented = bearer_token(request).encode()
        if not hmac.compare_digest(presented, self._token):
            raise ProblemError("unauthenticated", "An operator token is required.",
                               headers={"WWW-Authenticate": "Bearer"})
