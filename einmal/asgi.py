"""Reading an ASGI request without the framework's request objects, for the hot paths: a
few header values in one pass over the raw headers, as ``request.headers.get`` reads them."""

from collections.abc import Collection, Iterable

__all__ = ["header_values"]


def header_values(headers: Iterable[tuple[bytes, bytes]],
                  names: Collection[bytes]) -> dict[bytes, str]:
    """The headers named (lower-case bytes) as ``request.headers.get`` reads them - any case,
    the first of repeated ones, latin-1 - without building a multidict of every header
    (Litestar's ``Headers``) for a few values. ``headers``: an ASGI scope's ``headers``."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in names and lower not in found:
            found[lower] = value.decode("latin-1")
    return found
