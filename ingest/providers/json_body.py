"""Reading a provider's JSON body strictly, the one way every adapter reads it.

Fractions are ``Decimal`` (a float never holds an amount), NaN and Infinity are refused,
and so is a key given twice in one object: parsers disagree on which value wins, and an
amount another component reads differently must not be credited.
"""

from __future__ import annotations

import decimal
import json
from decimal import Decimal
from typing import Any, Final

from matcher.notifications import InvalidCallback


def refuse_constant(name: str) -> Any:
    # json would otherwise hand back float NaN/Infinity: floats never touch money.
    raise ValueError(f"{name} is not a JSON number")


def without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key!r} appears more than once in one object")
            seen.add(key)
    return obj


#: the decoder for a provider's JSON (``raw_decode`` reads a value inside a larger text)
STRICT: Final = json.JSONDecoder(
    parse_float=Decimal, parse_constant=refuse_constant, object_pairs_hook=without_duplicates
)


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON object ``body`` holds, or InvalidCallback saying why it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidCallback(f"body is not UTF-8 ({exc})", "invalid_json") from None
    try:
        doc = STRICT.decode(text)
    # ValueError covers malformed JSON, NaN/Infinity, duplicate keys and integers too long
    # to convert; RecursionError absurd nesting; DecimalException absurd exponents.
    except (ValueError, RecursionError, decimal.DecimalException) as exc:
        raise InvalidCallback(f"body is not valid JSON ({exc})", "invalid_json") from None
    if not isinstance(doc, dict):
        raise InvalidCallback(
            f"body is {json_type(doc)}; expected one JSON object", "not_an_object"
        )
    return doc


def json_type(value: object) -> str:
    """``value``'s JSON type with an article, for messages: "a list", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, Decimal | float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
