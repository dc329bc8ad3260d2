"""Money as integer minor units inside, decimal strings outside. Never floats."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from matcher.errors import InvalidInput

#: a payment larger than this is a typo or an attack, not a customer topping up
MAX_AMOUNT_MINOR = 100_000_000_00
#: digits, optionally a point and more digits: no signs, exponents, separators or other scripts
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def format_minor(amount: int) -> str:
    """150000 -> "1500.00"; -5 -> "-0.05"."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d}"


def parse_money(raw: object, field: str = "amount") -> int:
    """A positive amount with at most two decimals (string or integer), in minor units."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise InvalidInput(
            f'{field} must be a decimal string such as "1500.00" (got {type(raw).__name__})',
            "invalid_amount",
        )
    if isinstance(raw, str) and not PLAIN_DECIMAL.fullmatch(raw.strip()):
        raise InvalidInput(
            f'{field} {raw!r} is not a plain decimal number such as "1500.00"', "invalid_amount"
        )
    try:
        value = Decimal(raw.strip() if isinstance(raw, str) else raw)
    except InvalidOperation:
        raise InvalidInput(
            f'{field} {raw!r} is not a number such as "1500.00"', "invalid_amount"
        ) from None
    if not value.is_finite():
        raise InvalidInput(f"{field} {raw!r} is not a finite number", "invalid_amount")
    if value.adjusted() > 20:  # far past the maximum; keeps arithmetic below from overflowing
        raise InvalidInput(
            f"{field} {raw!r} is over the maximum of {format_minor(MAX_AMOUNT_MINOR)}",
            "invalid_amount",
        )
    minor = value.scaleb(2)
    if minor != minor.to_integral_value():
        raise InvalidInput(f"{field} {raw!r} has more than two decimal places", "invalid_amount")
    if minor <= 0:
        raise InvalidInput(f"{field} {raw!r} must be greater than zero", "invalid_amount")
    if minor > MAX_AMOUNT_MINOR:
        raise InvalidInput(
            f"{field} {raw!r} is over the maximum of {format_minor(MAX_AMOUNT_MINOR)}",
            "invalid_amount",
        )
    return int(minor)
