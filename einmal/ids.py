"""Random identifiers as UUID strings (RFC 9562), written without building ``uuid.UUID``
objects: on the proof path each request makes two, and the object costs more than the id."""

import os
import time

__all__ = ["uuid4", "uuid7"]


def _text(value: int) -> str:
    """= ``str(uuid.UUID(int=value))``."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid4() -> str:
    """A random UUIDv4 (= ``str(uuid.uuid4())``)."""
    value = int.from_bytes(os.urandom(16), "big")
    return _text((value & ~(0xF << 76) & ~(0b11 << 62)) | (0x4 << 76) | (0b10 << 62))


def uuid7(now: float | None = None) -> str:
    """UUIDv7 (time-ordered) - transfer ids sort by creation time."""
    ms = int((now if now is not None else time.time()) * 1000)
    rand = int.from_bytes(os.urandom(10), "big") & ((1 << 74) - 1)
    return _text((ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62)
                 | (rand & ((1 << 62) - 1)))
