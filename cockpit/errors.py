"""Cockpit errors: what the service and the transfer log raise. ``cockpit/http.py`` turns them
into problem details (one table); nothing below the HTTP layer knows about HTTP.

* CockpitError
  x InvalidRequestError       the caller's parameters are not acceptable (422)
    x OutOfRangeError         a log index or tree size outside the tree (400)
  x NotFoundError             no such entry, no checkpoint (of that size) yet (404)
  x TreeIntegrityError        the stored tree lacks nodes it must have (500: a damaged store)

A failure of the store itself is the kernel's ``einmal.store.StoreError`` (503
``store-unavailable``); a view that does not open is ``cockpit.vault.VaultError``.
"""

__all__ = ["CockpitError", "InvalidRequestError", "NotFoundError", "OutOfRangeError",
           "TreeIntegrityError"]


class CockpitError(Exception):
    """Base of the cockpit's errors; the message is the problem's ``detail`` (no citizen data)."""


class InvalidRequestError(CockpitError):
    """The caller's parameters are not acceptable (a limit, a cursor)."""


class OutOfRangeError(InvalidRequestError):
    """A log index or tree size outside the tree."""


class NotFoundError(CockpitError):
    """No such transfer in the log, or no checkpoint (of that size) yet."""


class TreeIntegrityError(CockpitError):
    """The stored tree lacks nodes it must have: the store is damaged."""
