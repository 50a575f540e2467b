"""The text drawn on an fpdf2 PDF, for tests (no PDF library among the dependencies).

Reads both of fpdf2's ways: a core font's Latin-1 strings, and an embedded TrueType font's
2-byte glyph ids mapped back through its ``ToUnicode`` CMap. Streams may be deflated."""

import re
import zlib

__all__ = ["pdf_text"]

_OBJECT = re.compile(rb"(\d+) 0 obj\s*(.*?)endobj", re.S)
# the end-of-line before endstream is left to zlib (it stops at its stream's end): matching it
# here would eat a deflated stream's last byte when that is a CR
_STREAM = re.compile(rb"stream\r?\n(.*?)endstream", re.S)
_TOKEN = re.compile(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) ?Tj", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"(": b"(",
            b")": b")", b"\\": b"\\"}


def _stream(body: bytes) -> bytes:
    found = _STREAM.search(body)
    if found is None:
        return b""
    raw = found.group(1)
    if b"/FlateDecode" in body[:found.start()]:
        try:
            return zlib.decompressobj().decompress(raw)
        except zlib.error:
            return b""
    return raw.removesuffix(b"\n").removesuffix(b"\r")


def _unescape(text: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i:i + 1] == b"\\" and i + 1 < len(text):
            octal = re.match(rb"[0-7]{1,3}", text[i + 1:i + 4])
            if octal:
                out.append(int(octal.group(0), 8) & 0xFF)
                i += 1 + len(octal.group(0))
                continue
            out += _ESCAPES.get(text[i + 1:i + 2], text[i + 1:i + 2])
            i += 2
            continue
        out += text[i:i + 1]
        i += 1
    return bytes(out)


def pdf_text(pdf: bytes) -> str:
    """Every shown string, one per line, in drawing order."""
    objects = {int(number): body for number, body in _OBJECT.findall(pdf)}
    cmaps: dict[int, dict[int, str]] = {}
    for number, body in objects.items():
        to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", body)
        if b"/Type /Font" in body and to_unicode:
            pairs = _stream(objects[int(to_unicode.group(1))])
            cmaps[number] = {int(glyph, 16): bytes.fromhex(code.decode()).decode("utf-16-be")
                             for glyph, code in re.findall(
                                 rb"<([0-9A-Fa-f]{4})> <([0-9A-Fa-f]+)>", pairs)}
    names: dict[bytes, int] = {}
    for body in objects.values():
        for block in re.findall(rb"/Font\s*<<(.*?)>>", body, re.S):
            names.update({name: int(ref) for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R",
                                                                      block)})
    lines: list[str] = []
    for body in objects.values():
        content = _stream(body)
        if b" Tj" not in content:
            continue
        cmap: dict[int, str] | None = None
        for font, text in _TOKEN.findall(content):
            if font:
                cmap = cmaps.get(names.get(font, -1))
                continue
            raw = _unescape(text)
            if cmap is not None:
                lines.append("".join(cmap.get(int.from_bytes(raw[i:i + 2], "big"), "\ufffd")
                                     for i in range(0, len(raw) - 1, 2)))
            else:
                lines.append(raw.decode("latin-1"))
    return "\n".join(lines)
