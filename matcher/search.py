"""What an operator's search box means: one text, several fields, all history.

``q`` finds a payment by its customer's account number (any case), the payer's
phone in any written form (or, when ``q`` is not a whole number nor an amount
with a decimal point, a run of at least four of its digits), the transaction
code (any case) or the amount ("1500" finds 1500.00).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from matcher.matching import account_key
from matcher.models import Customer
from matcher.money import MAX_AMOUNT_MINOR
from matcher.phones import digits_only, normalise_msisdn

MAX_QUERY_LENGTH = 100
#: fewer digits than this match too much of every phone number to be a search
MIN_PHONE_DIGITS = 4


def amount_of(text: str) -> int | None:
    """Minor units when the text is an amount such as "1500", "1500.5" or "1,500.00"."""
    cleaned = text.replace(",", "").strip()
    if not cleaned or not all(c.isdigit() or c == "." for c in cleaned) or not cleaned.isascii():
        return None
    try:
        value = Decimal(cleaned) * 100
    except InvalidOperation:
        return None
    if value != value.to_integral_value() or not 0 < value <= MAX_AMOUNT_MINOR:
        return None
    return int(value)


def phone_digit_runs(text: str) -> list[str]:
    """Digit runs to look for inside stored E.164 numbers ("0712345" -> "712345" too).

    Text with letters is no phone; nor is an amount with a decimal point ("100.00").
    """
    if any(c.isalpha() for c in text) or ("." in text and amount_of(text) is not None):
        return []
    digits = digits_only(text)
    if len(digits) < MIN_PHONE_DIGITS:
        return []
    runs = [digits]
    if digits.startswith("0") and len(digits) > MIN_PHONE_DIGITS:
        runs.append(digits.lstrip("0"))
    return runs


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_matches(
    q: str,
    *,
    region: str,
    customer_id: InstrumentedAttribute[int | None] | InstrumentedAttribute[int],
    phone: InstrumentedAttribute[str | None] | None,
    codes: list[InstrumentedAttribute[str] | InstrumentedAttribute[str | None]],
    amount: ColumnElement[int] | InstrumentedAttribute[int] | None,
) -> list[ColumnElement[bool]]:
    """Each thing ``q`` could mean, as its own indexed comparison (none: nothing matches)."""
    q = q.strip()
    if not q:
        return []
    conditions: list[ColumnElement[bool]] = [
        # account keys are unique: at most one customer
        customer_id
        == select(Customer.id).where(Customer.account_key == account_key(q)).scalar_subquery()
    ]
    upper = q.upper()
    conditions.extend(code == upper for code in codes)
    if phone is not None:
        e164 = normalise_msisdn(q, region)
        if e164 is not None:
            # A whole number is that number: its digits as a run would find the same
            # payments through the trigram index, at many times the cost.
            conditions.append(phone == e164)
        else:
            for run in phone_digit_runs(q):
                conditions.append(phone.like(f"%{like_escape(run)}%", escape="\\"))
    minor = amount_of(q)
    if amount is not None and minor is not None:
        conditions.append(amount == minor)
    return conditions


def text_conditions(
    q: str,
    *,
    region: str,
    customer_id: InstrumentedAttribute[int | None] | InstrumentedAttribute[int],
    phone: InstrumentedAttribute[str | None] | None,
    codes: list[InstrumentedAttribute[str] | InstrumentedAttribute[str | None]],
    amount: ColumnElement[int] | InstrumentedAttribute[int] | None,
) -> ColumnElement[bool]:
    """An OR of everything ``q`` could mean (for small result sets; lists use a union)."""
    if not q.strip():
        return ~false()
    return or_(
        *text_matches(
            q, region=region, customer_id=customer_id, phone=phone, codes=codes, amount=amount
        )
    )
