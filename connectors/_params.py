"""Parameter checks shared by the connectors (pure; no I/O)."""

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from einmal.domain.registers import InvalidParametersError

__all__ = ["is_idnr_shaped", "is_iso_date", "reject_unknown"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_IDNR = re.compile(r"^\d{11}$")


def is_iso_date(value: object) -> bool:
    """True for a real calendar date written YYYY-MM-DD."""
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_idnr_shaped(value: object) -> bool:
    """True for 11 ASCII digits (registers may hold official test numbers, so no rule check)."""
    return isinstance(value, str) and _IDNR.match(value) is not None


def reject_unknown(parameters: Mapping[str, Any], allowed: Iterable[str], proof: str) -> None:
    unknown = set(parameters) - set(allowed)
    if unknown:
        msg = f"unknown parameter(s) for a {proof} proof: {', '.join(sorted(unknown))}"
        raise InvalidParametersError(msg)
