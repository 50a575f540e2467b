"""Waiting in tests: poll a condition until it holds or a deadline passes, never a bare sleep."""

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def wait_until(condition: Callable[[], _T], *, what: str, timeout: float = 15,
               interval: float = 0.05) -> _T:
    """Call ``condition`` until it returns something truthy and return that; fail with
    ``what`` in the message once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"gave up after {timeout} s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(interval)
