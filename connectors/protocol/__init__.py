"""A register's own protocol (§ 9 IDNrG) and its source interface for the Datenschutzcockpit
(after XDatenschutzcockpit): a component any register embeds - the simulators do.

* ``RegisterProtocol`` (protocol.py): record an answered query, list and open entries by IdNr,
  the two-year retention sweeper; ``ProtocolConfig``: database and keys
* ``source_handlers`` (source.py): the HTTP endpoints the cockpit asks (token, signed JWE
  answers; the kernel's ``einmal.source_interface``)
* ``requester_headers`` / ``requester_from_headers`` (headers.py): who asks, as request headers
* ``ProtocolStore`` (store.py): the tables

Decision 0033; docs/api.md "Source interface (XDatenschutzcockpit)".
"""

from connectors.protocol.headers import HEADERS, requester_from_headers, requester_headers
from connectors.protocol.protocol import (
    ANSWER_KEY,
    COCKPIT_SOURCES_KEY,
    ProtocolConfig,
    ProtocolSealError,
    RegisterProtocol,
    plus_years,
)
from connectors.protocol.source import Source, source_handlers
from connectors.protocol.store import MemoryProtocolStore, ProtocolStore, SqlProtocolStore

__all__ = [
    "ANSWER_KEY",
    "COCKPIT_SOURCES_KEY",
    "HEADERS",
    "MemoryProtocolStore",
    "ProtocolConfig",
    "ProtocolSealError",
    "ProtocolStore",
    "RegisterProtocol",
    "Source",
    "SqlProtocolStore",
    "plus_years",
    "requester_from_headers",
    "requester_headers",
    "source_handlers",
]
