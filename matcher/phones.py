"""Payer phone numbers: one canonical form per number, and its hash.

Providers and operators write the same Kenyan number many ways ("0712 345 678",
"254712345678", "+254-712-345-678", a JSON integer, ...). Matching payments to
customers only works if every one of those spellings becomes the same E.164
string, and if a provider's hashed MSISDN can be compared with the same hash of
our own numbers. Nothing here raises on bad input: a value that is not clearly
a mobile number is simply not a phone.
"""

from __future__ import annotations

import functools
import hashlib
import re

import phonenumbers
from phonenumbers import PhoneNumberType

from matcher.notifications import Msisdn

DEFAULT_REGION = "KE"

# Mobile money is paid from phones; a landline or pager can never be a payer.
# FIXED_LINE_OR_MOBILE covers regions (and metadata versions) where the
# library cannot tell the two apart; Kenyan 07xx and 01xx numbers are MOBILE.
_ACCEPTED_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

# E.164 is at most 15 digits; generous room for separators and prefixes, while
# keeping attacker-sized strings away from the parser.
_MAX_RAW_LENGTH = 32

_NOT_ASCII_DIGIT = re.compile(r"[^0-9]")
#: a keyboard run ("0123456789", "987654321") is a stretch of one of these
_RUN_UP = "0123456789"
_RUN_DOWN = "9876543210"
#: the same payers pay again and again: their numbers are checked once per process
_REMEMBERED_NUMBERS = 16384

# Separators people actually type between digit groups. Anything else (letters,
# "*", "#", "/", non-ASCII digits) means the value is not a plain phone number:
# phonenumbers would otherwise read letters as keypad digits ("1-800-FLOWERS")
# and silently drop "*", turning a mask into a wrong number.
_SPELLING = re.compile(r"\+?[0-9 ().\-]+")
_SEPARATORS = re.compile(r"[ ().\-]")

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# "2547xxxxx678", "07XX XXX 678": x's standing in for hidden digits.
_X_MASK = re.compile(r"\+?[0-9xX]*[xX]{2}[0-9xX]*")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def digits_only(text: str) -> str:
    """Return the ASCII digits of ``text`` in order, dropping everything else."""
    return _NOT_ASCII_DIGIT.sub("", text)


def normalise_msisdn(raw: object, region: str = DEFAULT_REGION) -> str | None:
    """Return the E.164 form of a mobile number, or None if ``raw`` is not one.

    Every spelling of one number gives the same string: national ("0712345678",
    "712345678"), international ("254...", "+254...", "00254...", "000254..."),
    with spaces, dashes, dots or brackets, or as a non-negative int. Landlines,
    invalid numbers, placeholders ("0000000000", "0123456789"), masks, text with
    letters, bools and floats give None. The result normalises to itself. Never
    raises.
    """
    text = _as_phone_text(raw)
    if text is None:
        return None
    return _normalise_text(text, region)


@functools.lru_cache(maxsize=_REMEMBERED_NUMBERS)
def _normalise_text(text: str, region: str) -> str | None:
    """``normalise_msisdn`` of a spelling already known to be phone-like text."""
    compact = _SEPARATORS.sub("", text)
    if _is_placeholder(digits_only(compact)):
        return None
    candidates = [compact]
    # "00" is the international prefix almost everywhere, but Kenya's is "000":
    # phonenumbers reads "00254712345678" as trunk "0" + national "0254...", an
    # invalid number. Read the leading "00" as "+" only when the literal reading
    # is not a mobile number, so a region whose own prefix is "00" is unaffected.
    if compact.startswith("00"):
        candidates.append("+" + compact[2:])
    for candidate in candidates:
        e164 = _parse_mobile(candidate, region)
        if e164 is not None:
            return e164
    return None


def msisdn_sha256(e164: str) -> str:
    """Return the lowercase hex SHA-256 of the number's digits without "+".

    For Kenya that is the 12-digit "2547XXXXXXXX" form, which is what providers
    hash, so our digest of a customer's number equals theirs of the same payer.
    Raises ValueError if ``e164`` is not E.164: hashing another spelling would
    silently never match.
    """
    if not _E164.fullmatch(e164):
        raise ValueError(f"msisdn_sha256 needs an E.164 number such as +254712345678, got {e164!r}")
    return hashlib.sha256(e164[1:].encode("ascii")).hexdigest()


def classify_msisdn(raw: object, region: str = DEFAULT_REGION) -> Msisdn:
    """Classify the payer number a provider sent, keeping what they sent.

    ``raw`` (str, JSON int or None) is kept as text. The kind is, in order:
    "missing" (absent or blank), "hashed" (64 hex chars, kept lowercased in
    ``sha256``), "masked" (digits hidden by "*" or x's; never guessed into a
    phone), "phone" (``e164`` and its ``sha256`` set) or "invalid". Never raises
    on a str, int or None.
    """
    if raw is None:
        return Msisdn(raw=None, kind="missing")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        # A bool or float is a provider bug, not a number we could trust.
        return Msisdn(raw=str(raw), kind="invalid")
    try:
        text = str(raw)
    except ValueError:
        # Python refuses to print ints of thousands of digits; no phone is that long.
        return Msisdn(raw=None, kind="invalid")
    stripped = text.strip()
    if not stripped:
        return Msisdn(raw=text, kind="missing")
    if _SHA256_HEX.fullmatch(stripped):
        return Msisdn(raw=text, kind="hashed", sha256=stripped.lower())
    if "*" in stripped or _X_MASK.fullmatch(_SEPARATORS.sub("", stripped)):
        return Msisdn(raw=text, kind="masked")
    e164 = normalise_msisdn(raw, region)
    if e164 is None:
        return Msisdn(raw=text, kind="invalid")
    return Msisdn(raw=text, kind="phone", e164=e164, sha256=msisdn_sha256(e164))


def _as_phone_text(raw: object) -> str | None:
    """The trimmed text of ``raw`` if it could spell a phone number, else None."""
    # bool is an int subclass: True must not become the number "1".
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        # A negative JSON number is not a phone; bounding first also keeps
        # str() away from huge ints, which it refuses to convert.
        if raw < 0 or raw >= 10**_MAX_RAW_LENGTH:
            return None
        return str(raw)
    if not isinstance(raw, str) or len(raw) > _MAX_RAW_LENGTH:
        return None
    text = raw.strip()
    if not _SPELLING.fullmatch(text) or not digits_only(text):
        return None
    return text


def _is_placeholder(digits: str) -> bool:
    """Whether ``digits`` is a stand-in people type when they have no number."""
    if len(digits) < 2:
        return False
    if digits.count(digits[0]) == len(digits):
        return True
    # "0123456789", "987654321": a keyboard run, not a subscriber.
    return digits in _RUN_UP or digits in _RUN_DOWN


def _parse_mobile(candidate: str, region: str) -> str | None:
    """The E.164 form of ``candidate`` if it is a valid mobile number, else None."""
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    # a number of a known type is a valid one (is_valid_number asks the same metadata
    # whether its type is known): one question, not two
    if phonenumbers.number_type(number) not in _ACCEPTED_TYPES:
        return None
    # "777777777" is a valid Kenyan mobile number to phonenumbers, and so would a
    # keyboard run be; check the subscriber digits themselves, not the spelling.
    if _is_placeholder(phonenumbers.national_significant_number(number)):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
