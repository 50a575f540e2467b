"""Who asks a register, in request headers: the connector sends them with every query, the
register's protocol reads them (§ 9 IDNrG: the register logs who asked, for what, on which
basis).

Values are UTF-8, percent-encoded (an authority's name has umlauts; header values are
Latin-1 on the wire): ``X-Einmal-Authority: Elterngeldstelle%20Bremen``. A header that is absent
is not stated; a register refuses nothing for it (the query is still logged, with what it said).

NOTE: a register can trust these only as far as it trusts the caller (the broker, over mTLS in
production): the headers state, they do not prove.
"""

import functools
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

from einmal.asgi import header_values
from einmal.domain.registers import Requester

__all__ = ["HEADERS", "requester_from_asgi", "requester_from_headers", "requester_headers"]

#: header -> Requester field
HEADERS: dict[str, str] = {
    "x-einmal-service": "service_id",
    "x-einmal-service-name": "service_name",
    "x-einmal-authority": "authority",
    "x-einmal-purpose": "purpose",
    "x-einmal-legal-basis": "legal_basis",
    "x-einmal-consent": "consent_id",
    "x-einmal-intermediary": "intermediary",
    "x-einmal-transfer": "transfer_id",
}
_RAW_HEADERS: dict[bytes, str] = {header.encode(): name for header, name in HEADERS.items()}
_MAX_VALUE = 500


@functools.lru_cache(maxsize=1024)
def _encoded(value: str) -> str:
    """A header value, percent-encoded (cached: a service's names, purposes and legal bases
    repeat on every query it makes; percent-encoding them was 2.7 % of the broker's CPU)."""
    return quote(value[:_MAX_VALUE], safe=":/.-_")


def requester_headers(requester: Requester | None) -> dict[str, str]:
    """The headers that state ``requester`` (none for None)."""
    if requester is None:
        return {}
    headers = {}
    for header, name in HEADERS.items():
        value = getattr(requester, name)
        if value:
            headers[header] = _encoded(str(value))
    return headers


def _decoded(raw: str) -> str | None:
    """A header value, decoded (cut to 500 characters); None unless it is UTF-8 and printable.
    A value with no percent sign is itself (a transfer id, a consent id: new on every query);
    one with is decoded once (a service's names, purposes and legal bases repeat on every
    query it makes)."""
    if "%" not in raw:
        text = raw[:_MAX_VALUE]
        return text if text.isprintable() else None
    return _unquoted(raw)


@functools.lru_cache(maxsize=1024)
def _unquoted(raw: str) -> str | None:
    try:
        text = unquote(raw[:3 * _MAX_VALUE], errors="strict")[:_MAX_VALUE]
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _requester(values: dict[str, str]) -> Requester | None:
    if "service_id" not in values:
        return None
    return Requester(service_id=values["service_id"],
                     service_name=values.get("service_name", ""),
                     authority=values.get("authority", ""), purpose=values.get("purpose", ""),
                     legal_basis=values.get("legal_basis", ""),
                     consent_id=values.get("consent_id"),
                     intermediary=values.get("intermediary", ""),
                     transfer_id=values.get("transfer_id"))


def requester_from_headers(headers: Mapping[str, str]) -> Requester | None:
    """The requester a query states; None without ``X-Einmal-Service``. Values are cut to 500
    characters and must decode as UTF-8 (else left out)."""
    values: dict[str, str] = {}
    for header, name in HEADERS.items():
        raw = headers.get(header)
        if raw and (text := _decoded(raw)) is not None:
            values[name] = text
    return _requester(values)


def requester_from_asgi(headers: Iterable[tuple[bytes, bytes]]) -> Requester | None:
    """``requester_from_headers`` of an ASGI scope's raw headers (Latin-1; of a header sent
    twice, the first), without building a header mapping of the whole request."""
    values: dict[str, str] = {}
    for header, raw in header_values(headers, _RAW_HEADERS).items():
        if raw and (text := _decoded(raw)) is not None:
            values[_RAW_HEADERS[header]] = text
    return _requester(values)
