"""Witness errors. Each refusal of an add-checkpoint request carries its HTTP status
(C2SP tlog-witness); nothing is stored and nothing is cosigned when one is raised.

* WitnessConfigError              the witness cannot start (bad log key, name, data dir)
* WitnessError
  x MalformedRequestError         400  the body is not an add-checkpoint request, or old > size
  x UntrustedCheckpointError      403  no trusted log key signed it (or a trusted one fails)
  x UnknownLogError               404  the origin is not a log this witness follows
  x StaleSizeError                409  ``old`` is not the size last cosigned (body: that size)
  x ForkError                     409  same size as last cosigned, another root: a split view
  x InconsistentCheckpointError   422  the consistency proof does not verify
"""

from typing import ClassVar

__all__ = ["ForkError", "InconsistentCheckpointError", "MalformedRequestError",
           "StaleSizeError", "UnknownLogError", "UntrustedCheckpointError", "WitnessConfigError",
           "WitnessError"]


class WitnessConfigError(Exception):
    """The witness's configuration cannot be used; the message says which part and why."""


class WitnessError(Exception):
    """An add-checkpoint request the witness refuses. ``slug``: the problem type (einmal)."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "invalid-request"


class MalformedRequestError(WitnessError):
    status = 400
    slug = "invalid-request"


class UntrustedCheckpointError(WitnessError):
    status = 403
    slug = "forbidden"


class UnknownLogError(WitnessError):
    status = 404
    slug = "not-found"


class StaleSizeError(WitnessError):
    """Answered as ``409``, ``text/x.tlog.size``, ``<latest>\\n``: the client retries from it."""

    status = 409
    slug = "conflict"

    def __init__(self, latest: int) -> None:
        super().__init__(f"the latest checkpoint cosigned for this log has size {latest}")
        self.latest = latest


class ForkError(WitnessError):
    """Same size as the checkpoint last cosigned, another root hash: the log forked. Answered
    as a problem, not ``text/x.tlog.size``, so a client does not retry it in a loop."""

    status = 409
    slug = "conflict"


class InconsistentCheckpointError(WitnessError):
    status = 422
    slug = "invalid-request"
