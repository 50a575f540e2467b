"""Errors of ``einmal_client.client`` (the hierarchy is documented there), problem+json mapping."""

from typing import Any, ClassVar

import httpx

__all__ = [
    "AuthenticationError",
    "ConsentRequiredError",
    "EinmalError",
    "InvalidRequestError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreviewCollectedError",
    "PreviewExpiredError",
    "PreviewPendingError",
    "PreviewRefusedError",
    "PreviewRequiredError",
    "ProblemError",
    "ProofVerificationError",
    "RegisterTimeoutError",
    "RegisterUnavailableError",
    "RoutingFailedError",
    "StoreUnavailableError",
    "TransportError",
    "problem_from_response",
]

_TYPE_PREFIX = "urn:einmal:problem:"
_MAX_DETAIL = 300


class EinmalError(Exception):
    """Base of every error raised by ``einmal_client.client``."""


class TransportError(EinmalError):
    """The server could not be reached, or the connection broke (chained to the httpx error)."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class InvalidResponseError(EinmalError):
    """A successful answer that does not have the shape the API contract promises."""


class ProofVerificationError(EinmalError):
    """The proof does not verify. Deliberately one opaque message, whatever the reason."""

    def __init__(self) -> None:
        super().__init__("the proof could not be verified")


class ProblemError(EinmalError):
    """The server answered with an error; fields from RFC 9457 problem details.

    A non-problem error body still becomes a ``ProblemError``: ``type`` is ``about:blank``
    and ``detail`` holds the start of the body.
    """

    slugs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, status: int, type: str = "about:blank",
                 title: str = "", detail: str = "", code: str | None = None,
                 transfer_id: str | None = None, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.code = code
        self.transfer_id = transfer_id
        self.body = body or {}
        text = f"{status} {title or 'error'}"
        if detail:
            text += f": {detail}"
        if transfer_id:
            text += f" (transfer {transfer_id})"
        super().__init__(text)

    @property
    def slug(self) -> str:
        """The last part of ``type`` (e.g. ``consent-required``), or ``""`` for ``about:blank``."""
        return self.type.removeprefix(_TYPE_PREFIX) if self.type.startswith(_TYPE_PREFIX) else ""


class AuthenticationError(ProblemError):
    """The client assertion or the bearer token was refused."""

    slugs = frozenset({"invalid-client", "unauthenticated"})


class PermissionDeniedError(ProblemError):
    """The service's policy does not allow this (or the token is of the wrong kind)."""

    slugs = frozenset({"permission-denied", "forbidden"})


class ConsentRequiredError(ProblemError):
    """No active consent covers the request; the refusal was recorded (``transfer_id``)."""

    slugs = frozenset({"consent-required"})


class NotFoundError(ProblemError):
    """Unknown consent, or the register holds no record for the subject."""

    slugs = frozenset({"not-found"})


class InvalidRequestError(ProblemError):
    """The request is malformed (JSON, fields, IdNr, parameters)."""

    slugs = frozenset({"invalid-request"})


class RoutingFailedError(InvalidRequestError):
    """No register is responsible for the given parameters (municipality key / Land)."""

    slugs = frozenset({"routing-failed"})


class RegisterUnavailableError(ProblemError):
    """The register is down or gave an invalid answer."""

    slugs = frozenset({"register-unavailable"})


class RegisterTimeoutError(RegisterUnavailableError):
    """The register did not answer in time."""

    slugs = frozenset({"register-timeout"})


class StoreUnavailableError(ProblemError):
    """The transfer record could not be written, so nothing was released: retry later."""

    slugs = frozenset({"store-unavailable"})


class PreviewRefusedError(ProblemError):
    """The citizen refused the preview: nothing was released (recorded as ``transfer_id``)."""

    slugs = frozenset({"preview-refused"})


class PreviewExpiredError(ProblemError):
    """The preview was not released and collected in time; the held proof was destroyed."""

    slugs = frozenset({"preview-expired"})


class PreviewCollectedError(ProblemError):
    """The released proof was already collected: it is handed out once only."""

    slugs = frozenset({"preview-collected"})


class PreviewRequiredError(EinmalError):
    """``fetch_proof`` got ``202``: the broker holds the proof for the citizen's preview.
    ``preview`` (a ``PreviewRequired``) is what ``collect``/``wait_for_preview`` take."""

    def __init__(self, preview: Any) -> None:
        super().__init__(f"the citizen must release this proof first (preview "
                         f"{preview.request_id}, until {preview.expires_at:%Y-%m-%d %H:%M} UTC)")
        self.preview = preview


class PreviewPendingError(EinmalError):
    """``wait_for_preview`` gave up: the citizen has not decided yet (``preview`` says where)."""

    def __init__(self, message: str, *, preview: Any) -> None:
        super().__init__(message)
        self.preview = preview


_BY_SLUG: dict[str, type[ProblemError]] = {
    slug: cls
    for cls in (AuthenticationError, PermissionDeniedError, ConsentRequiredError, NotFoundError,
                InvalidRequestError, RoutingFailedError, RegisterUnavailableError,
                RegisterTimeoutError, StoreUnavailableError, PreviewRefusedError,
                PreviewExpiredError, PreviewCollectedError)
    for slug in cls.slugs
}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def problem_from_response(response: httpx.Response) -> ProblemError:
    """The ``ProblemError`` subclass for an error response, chosen by the problem ``type``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return ProblemError(status=response.status_code, title=response.reason_phrase,
                            detail=response.text[:_MAX_DETAIL].strip(),
                            body=body if isinstance(body, dict) else None)
    type_ = body["type"]
    cls = _BY_SLUG.get(type_.removeprefix(_TYPE_PREFIX), ProblemError) \
        if type_.startswith(_TYPE_PREFIX) else ProblemError
    return cls(status=response.status_code,
               type=type_, title=_text(body.get("title")) or response.reason_phrase,
               detail=_text(body.get("detail")), code=_text(body.get("code")) or None,
               transfer_id=_text(body.get("transfer_id")) or None, body=body)
