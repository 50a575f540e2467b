"""The connector contract: how the broker asks a register for a proof.

Error hierarchy (every connector translates transport errors at its boundary,
always chained with ``raise ... from exc``):

* ConnectorError
  x RegisterUnavailableError   register unreachable, 5xx after retries       -> HTTP 502
    x RegisterTimeoutError     no answer within the timeout (after retries)  -> HTTP 504
    x RegisterBusyError        our bound on calls in flight to this register is reached
                               and no slot freed within the queue timeout    -> HTTP 503
  x RegisterRejectedError      the register answered, but refused the query  -> HTTP 502
  x InvalidRegisterAnswerError the answer does not validate (bad XML/JSON)   -> HTTP 502
  x RecordNotFoundError        the register holds no record for the subject  -> HTTP 404
  x RoutingError               no register is responsible (unknown AGS/Land) -> HTTP 422
  x InvalidParametersError     request parameters missing or malformed       -> HTTP 422
"""

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import msgspec

from einmal.domain.proofs import ProofType

__all__ = [
    "Connector",
    "ConnectorError",
    "InvalidParametersError",
    "InvalidRegisterAnswerError",
    "ProofData",
    "RecordNotFoundError",
    "RegisterBusyError",
    "RegisterRejectedError",
    "RegisterTimeoutError",
    "RegisterUnavailableError",
    "Requester",
    "RoutingError",
]


class ConnectorError(Exception):
    """Base of every connector error."""

    code: ClassVar[str] = "register-error"


class RegisterUnavailableError(ConnectorError):
    """The register could not be reached or answered 5xx (after bounded retries)."""

    code = "register-unavailable"


class RegisterTimeoutError(RegisterUnavailableError):
    """The register did not answer in time."""

    code = "register-timeout"


class RegisterBusyError(RegisterUnavailableError):
    """Too many calls to this register are in flight (``register_max_concurrency``) and none
    finished within ``register_queue_timeout_s``. Not retried: the caller may retry later."""

    code = "register-busy"


class RegisterRejectedError(ConnectorError):
    """The register answered with a refusal (4xx other than not-found)."""

    code = "register-rejected"


class InvalidRegisterAnswerError(ConnectorError):
    """The register's answer does not validate against the message format."""

    code = "register-invalid-answer"


class RecordNotFoundError(ConnectorError):
    """The register holds no record for the subject (distinct from 'unavailable')."""

    code = "record-not-found"


class RoutingError(ConnectorError):
    """No register is responsible for the given parameters (unknown AGS or Land)."""

    code = "routing-failed"


class InvalidParametersError(ConnectorError):
    """The proof request's ``parameters`` are missing or malformed (checked before any call)."""

    code = "invalid-parameters"


class ProofData(msgspec.Struct, frozen=True, kw_only=True):
    """What a connector returns: the full data and where it came from.

    ``data`` has exactly the keys of ``PROOF_FIELDS[proof_type]``; values are JSON-compatible
    (str, int, list, dict) - dates as ISO strings, money as decimal strings.
    ``concerned`` lists the IdNrs of every citizen the data is about (subject, parents,
    custody holders): each of them sees the transfer in their cockpit.
    """

    proof_type: ProofType
    issuer: str                 # register id, e.g. "standesamt:04011000" or "sorgeregister:HB"
    issuer_name: str            # human-readable, e.g. "Standesamt Bremen"
    data: Mapping[str, Any]
    concerned: tuple[str, ...] = ()
    route: tuple[str, ...] = ()  # registers asked, in order (index hops for custody)


class Requester(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks a register, as the broker states it with every query (request headers,
    connectors/protocol/headers.py): the register keeps it in its own protocol (§ 9 IDNrG).
    ``intermediary`` is the body that relays the query (the broker); ``transfer_id`` the id
    of the intermediary's own protocol entry of this transfer, when it knows it already (the
    cockpit matches a register's entry to the log's with it)."""

    service_id: str
    service_name: str = ""
    authority: str
    purpose: str
    legal_basis: str = ""
    consent_id: str | None = None
    intermediary: str = "einmal-broker"
    transfer_id: str | None = None


class Connector(Protocol):
    """One client per register kind. Created once at start-up; owns one httpx.AsyncClient."""

    proof_type: ProofType

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        """Raise InvalidParametersError unless ``parameters`` suit this register. No I/O."""
        ...

    async def fetch(self, subject: str, parameters: Mapping[str, Any], *,
                    requester: Requester | None = None) -> ProofData:
        """Fetch the proof for ``subject`` (IdNr). Raises ConnectorError subclasses only.
        ``requester``: who asks, sent to the register for its protocol (None: not stated)."""
        ...

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        ...
