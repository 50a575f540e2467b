"""The IdNr (Steuer-Identifikationsnummer), the citizen identifier across registers.

Rules (see docs/domain.md):
1. 11 ASCII digits; the 11th is an ISO 7064 MOD 11,10 check digit over the first ten.
2. No leading 0, except official test numbers (allowed only when ``allow_test`` is set).
3. In digits 1-10 exactly one digit appears twice or three times, every other at most once.
4. A digit that appears three times must not stand in three consecutive places.
"""

import functools
from collections import Counter

__all__ = ["InvalidIdNrError", "check_digit", "is_valid_idnr", "mask_idnr", "validate_idnr"]


class InvalidIdNrError(ValueError):
    """The string is not a valid IdNr; the message says which rule failed."""


def check_digit(first_ten: str) -> int:
    """ISO 7064 MOD 11,10 check digit over ten digits."""
    product = 10
    for char in first_ten:
        total = (int(char) + product) % 10 or 10
        product = (2 * total) % 11
    return (11 - product) % 10


def validate_idnr(value: str, *, allow_test: bool = False) -> str:
    """Return ``value`` if it is a valid IdNr, else raise InvalidIdNrError naming the rule."""
    problem = _problem(value, allow_test) if len(value) == 11 else _WRONG_LENGTH
    if problem is not None:
        raise InvalidIdNrError(problem)
    return value


_WRONG_LENGTH = "an IdNr has exactly 11 digits"


@functools.lru_cache(maxsize=16384)  # pure; a busy broker sees the same citizens again
def _problem(value: str, allow_test: bool) -> str | None:
    """The first rule ``value`` breaks, or None (only 11-character strings get here)."""
    if not value.isascii() or not value.isdigit():
        return _WRONG_LENGTH
    if value[0] == "0" and not allow_test:
        return "an IdNr does not start with 0 (test numbers are allowed only in demo mode)"
    body = value[:10]
    counts = Counter(body)
    repeated = [digit for digit, n in counts.items() if n > 1]
    if len(repeated) != 1 or counts[repeated[0]] > 3:
        return "in the first ten digits of an IdNr exactly one digit appears two or three times"
    if repeated[0] * 3 in body:
        return "an IdNr digit must not appear three times in a row"
    if check_digit(body) != int(value[10]):
        return "the IdNr check digit is wrong"
    return None


def is_valid_idnr(value: str, *, allow_test: bool = False) -> bool:
    """True if ``value`` is a valid IdNr."""
    try:
        validate_idnr(value, allow_test=allow_test)
    except InvalidIdNrError:
        return False
    return True


def mask_idnr(idnr: str) -> str:
    """The IdNr as citizens and logs may see it: first two and last two digits."""
    return f"{idnr[:2]}*******{idnr[-2:]}" if len(idnr) > 4 else "***"
