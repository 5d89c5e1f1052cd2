"""Text files people send (training data, outcomes): UTF-8 or the reason it is not, and values quoted safely."""

from __future__ import annotations

#: Characters of a bad value quoted in a message.
SHOWN = 24
#: Byte-order marks of encodings other than UTF-8, longest first (UTF-32 LE starts like UTF-16 LE).
OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


class NotUtf8(ValueError):
    """Why bytes are not UTF-8 text: a byte-order mark of another encoding (`bom`), or the first bad byte (`byte`,
    on line `row`, `reason`). Callers word it for their file."""

    def __init__(self, bom: str | None = None, byte: int = 0, row: int = 1, reason: str = "") -> None:
        super().__init__(bom or reason)
        self.bom, self.byte, self.row, self.reason = bom, byte, row, reason


def utf8_text(raw: bytes) -> str:
    """The bytes as text (UTF-8, with or without a byte-order mark); NotUtf8 otherwise."""
    for bom, encoding in OTHER_BOMS.items():
        if raw.startswith(bom):
            raise NotUtf8(bom=encoding)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUtf8(byte=exc.start, row=raw[: exc.start].count(b"\n") + 1, reason=exc.reason) from None


def shown(text: str) -> str:
    """A value as messages quote it: escaped (no control characters, no line breaks) and cut short."""
    if len(text) <= SHOWN:
        return repr(text)
    return f"{text[:SHOWN]!r}... ({len(text)} characters)"
