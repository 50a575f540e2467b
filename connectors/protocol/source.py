"""The source interface after XDatenschutzcockpit, mounted by the protocol next to a register.

The handlers are the kernel's (``einmal.source_interface``: token, replay, body, sign and
seal - the broker serves the same interface over its own protocol); ``RegisterProtocol`` is
their backend. Wire format and the cockpit's client: ``einmal_client.sources``; docs/api.md.
"""

from einmal.source_interface import Source, SourceBackend, source_handlers

__all__ = ["Source", "SourceBackend", "source_handlers"]
