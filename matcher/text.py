"""Text from outside as the database can keep it.

A provider may send text no column takes: longer than the column, or with a NUL
(PostgreSQL refuses it in any text) or a lone surrogate (not encodable as UTF-8
at all). Money that moved must still be recorded, so such text is kept as close
to what was sent as the column allows; the inbox keeps the exact bytes.
"""

from __future__ import annotations

import re
from typing import Any, overload

#: what stands in for a character the database cannot hold
REPLACEMENT = "\ufffd"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str, length: int | None = None) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD, cut to ``length`` characters."""
    cleaned = _UNSTORABLE.sub(REPLACEMENT, text)
    return cleaned if length is None else cleaned[:length]


def fits(text: str, length: int) -> bool:
    """Whether ``text`` is stored exactly as it is in a column of ``length`` characters."""
    return len(text) <= length and _UNSTORABLE.search(text) is None


def unstorable_character(text: str) -> str | None:
    """The first character of ``text`` no database stores, in words, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "a NUL character (\\u0000)"
    return f"a lone surrogate (\\u{ord(found.group()):04x}), half of a UTF-16 pair"


def unfit(text: str, length: int | None = None) -> str | None:
    """Why no database would store ``text`` as it is (in ``length`` characters), or None."""
    what = unstorable_character(text)
    if what is not None:
        return f"holds {what}"
    if length is not None and len(text) > length:
        return f"is {len(text)} characters long (at most {length} fit)"
    return None


def column_length(attribute: Any) -> int:
    """The declared length of a mapped VARCHAR column, e.g. ``column_length(Payment.code)``."""
    length = getattr(attribute.property.columns[0].type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{attribute} has no declared length")
    return length


@overload
def fit(text: str, attribute: Any) -> str: ...
@overload
def fit(text: None, attribute: Any) -> None: ...
@overload
def fit(text: str | None, attribute: Any) -> str | None: ...
def fit(text: str | None, attribute: Any) -> str | None:
    """``text`` as the column of ``attribute`` can hold it (None stays None)."""
    return None if text is None else storable(text, column_length(attribute))
