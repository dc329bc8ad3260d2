"""Phone normalisation, hashing and classification (matcher/phones.py)."""

from __future__ import annotations

import hashlib
import re

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from matcher.notifications import Msisdn
from matcher.phones import classify_msisdn, digits_only, msisdn_sha256, normalise_msisdn

MODEST = settings(max_examples=200, deadline=None)

ONE_NUMBER = "+254712345678"


def is_valid_mobile(e164: str) -> bool:
    number = phonenumbers.parse(e164, None)
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in {
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }


# --- strategies -------------------------------------------------------------------------------


@st.composite
def kenyan_mobile_nsn(draw: st.DrawFn) -> str:
    """A 9-digit Kenyan mobile national number (07xx, 011x, 010x) phonenumbers calls valid."""
    prefix = draw(
        st.one_of(
            st.sampled_from([f"7{d}" for d in range(10)]),
            st.sampled_from([f"11{d}" for d in range(10)] + [f"10{d}" for d in range(9)]),
        )
    )
    tail = draw(st.text(alphabet="0123456789", min_size=9 - len(prefix), max_size=9 - len(prefix)))
    nsn = prefix + tail
    assume(is_valid_mobile("+254" + nsn))
    # All-identical or keyboard-run subscribers are placeholders by design.
    assume(len(set(nsn)) > 1)
    return nsn


@st.composite
def spelling_of(draw: st.DrawFn, nsn: str) -> str:
    """One way a person or provider might write the Kenyan number ``nsn``."""
    separator = draw(st.sampled_from(["", " ", "-", "."]))
    groups = [nsn[:3], nsn[3:6], nsn[6:]]
    prefix = draw(st.sampled_from(["0", "", "254", "+254", "000254", "00254", "+254 ", "+254 (0)"]))
    if prefix == "0" and draw(st.booleans()):
        return f"(0{groups[0]}) {groups[1]}{groups[2]}"
    body = separator.join(groups)
    padding = draw(st.sampled_from(["", " ", "\t"]))
    return f"{padding}{prefix}{separator if prefix else ''}{body}{padding}"


phone_like_text = st.text(alphabet="0123456789 +-().*xXl", max_size=24)
junk = st.one_of(
    st.text(),
    phone_like_text,
    st.binary().map(lambda b: b.decode("utf-8", errors="replace")),
    st.integers(),
    st.floats(),
    st.none(),
    st.booleans(),
)


# --- normalise_msisdn -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "0712345678",
        "712345678",
        "254712345678",
        "+254712345678",
        "+254 712 345 678",
        "0712-345-678",
        "0712.345.678",
        "(0712) 345678",
        "00254712345678",
        "000254712345678",
        "+254 (0) 712 345 678",
        "  0712345678\n",
        254712345678,
        712345678,
    ],
)
def test_every_spelling_of_one_number_normalises_the_same(raw: object) -> None:
    assert normalise_msisdn(raw) == ONE_NUMBER


@pytest.mark.parametrize("raw", ["0110123456", "254110123456", "+254 110 123 456", 254110123456])
def test_an_011_number_is_a_mobile_number(raw: object) -> None:
    assert normalise_msisdn(raw) == "+254110123456"


def test_an_010_number_is_a_mobile_number() -> None:
    assert normalise_msisdn("0100123456") == "+254100123456"


def test_a_foreign_mobile_number_keeps_its_own_country() -> None:
    assert normalise_msisdn("+255 712 345 678") == "+255712345678"
    assert normalise_msisdn("00255712345678") == "+255712345678"


@pytest.mark.parametrize("raw", ["020 2222222", "0202222222", "+254202222222"])
def test_a_nairobi_landline_is_not_a_payer_number(raw: str) -> None:
    assert normalise_msisdn(raw) is None


@pytest.mark.parametrize(
    "raw", ["2547 ***** 678", "2547*****678", "2547xxxxx678", "07l2345678", "1-800-FLOWERS"]
)
def test_letters_or_stars_are_never_a_phone(raw: str) -> None:
    assert normalise_msisdn(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "0712345678 ext 12",  # extensions are spelled with letters
        "tel:+254712345678",
        "254+712345678",  # "+" only leads
        "0712345678#",
        "07/12345678",
        "\u0660\u0667\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
    ],
)
def test_anything_but_digits_and_plain_separators_is_refused(raw: str) -> None:
    assert normalise_msisdn(raw) is None


@pytest.mark.parametrize(
    "raw",
    ["0000000000", "254000000000", "+254000000000", "777777777", "0777777777", "0123456789"],
)
def test_placeholders_are_not_numbers(raw: str) -> None:
    assert normalise_msisdn(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "+",
        "()",
        "+254 7",
        "07123456789",  # one digit too many
        "0712345",  # too short
        "+0712345678",
        True,
        False,
        254712345678.0,
        -254712345678,
        pytest.param(10**5000, id="int-str()-refuses-to-print"),
        b"0712345678",
        ["0712345678"],
    ],
)
def test_empty_invalid_and_wrongly_typed_values_are_not_numbers(raw: object) -> None:
    assert normalise_msisdn(raw) is None


def test_absurdly_long_input_is_refused_before_parsing() -> None:
    assert normalise_msisdn(" " * 30 + "0712345678") is None
    assert normalise_msisdn("0" * 10_000) is None


def test_an_unknown_region_does_not_raise() -> None:
    assert normalise_msisdn("0712345678", region="XX") is None
    assert normalise_msisdn("+254712345678", region="XX") == ONE_NUMBER


@MODEST
@given(kenyan_mobile_nsn())
def test_normalising_a_kenyan_mobile_number_is_idempotent(nsn: str) -> None:
    e164 = normalise_msisdn("0" + nsn)
    assert e164 == "+254" + nsn
    assert normalise_msisdn(e164) == e164


@MODEST
@given(st.data())
def test_any_two_spellings_of_one_number_normalise_the_same(data: st.DataObject) -> None:
    nsn = data.draw(kenyan_mobile_nsn())
    first = data.draw(spelling_of(nsn))
    second = data.draw(spelling_of(nsn))
    assert normalise_msisdn(first) == normalise_msisdn(second) == "+254" + nsn
    assert normalise_msisdn(int("254" + nsn)) == "+254" + nsn


@MODEST
@given(junk)
def test_junk_never_raises_and_only_valid_mobiles_come_out(raw: object) -> None:
    e164 = normalise_msisdn(raw)
    if e164 is None:
        return
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", e164)
    assert is_valid_mobile(e164)
    assert normalise_msisdn(e164) == e164


@MODEST
@given(st.text(max_size=24).filter(lambda t: any(c.isalpha() or c == "*" for c in t)))
def test_text_with_a_letter_or_star_is_never_a_phone(text: str) -> None:
    assert normalise_msisdn(text) is None


# --- msisdn_sha256 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "digest"),
    [
        ("+254722000000", "8556a495c390f3ba95d2bdf6d06436f2fd09f516531f0a7cd9591c60812fa46d"),
        ("+254708374149", "bbff37cea44ac0b2d964ee0dfb8d2df8513dc7ba1b36129a929fc3fbd6dd4af4"),
    ],
)
def test_the_hash_matches_the_providers_12_digit_form(e164: str, digest: str) -> None:
    assert msisdn_sha256(e164) == digest


def test_every_spelling_hashes_the_same() -> None:
    digests = {
        msisdn_sha256(normalise_msisdn(raw) or "") for raw in ["0722000000", "+254 722 000 000"]
    }
    assert digests == {"8556a495c390f3ba95d2bdf6d06436f2fd09f516531f0a7cd9591c60812fa46d"}


@pytest.mark.parametrize("not_e164", ["254722000000", "0722000000", "", "+", "+254 722 000 000"])
def test_hashing_anything_but_e164_is_refused(not_e164: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        msisdn_sha256(not_e164)


@MODEST
@given(kenyan_mobile_nsn())
def test_the_hash_is_of_the_digits_without_the_plus(nsn: str) -> None:
    expected = hashlib.sha256(("254" + nsn).encode()).hexdigest()
    assert msisdn_sha256("+254" + nsn) == expected


# --- classify_msisdn --------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n"])
def test_an_absent_or_blank_number_is_missing(raw: str | None) -> None:
    assert classify_msisdn(raw) == Msisdn(raw=raw, kind="missing")


def test_a_64_hex_digest_is_hashed_and_kept_lowercased() -> None:
    digest = "8556A495C390F3BA95D2BDF6D06436F2FD09F516531F0A7CD9591C60812FA46D"
    assert classify_msisdn(digest) == Msisdn(raw=digest, kind="hashed", sha256=digest.lower())


def test_a_hex_string_of_the_wrong_length_is_not_a_hash() -> None:
    assert classify_msisdn("8556a495c390f3ba95d2bdf6d06436f2").kind == "invalid"


@pytest.mark.parametrize(
    "raw",
    ["2547 ***** 678", "2547*****678", "*****", "2547xxxxx678", "07XX XXX 678", "254 7xx xxx 678"],
)
def test_a_masked_number_is_never_turned_into_a_phone(raw: str) -> None:
    assert classify_msisdn(raw) == Msisdn(raw=raw, kind="masked")


def test_a_phone_carries_its_e164_and_hash() -> None:
    assert classify_msisdn("0722 000 000") == Msisdn(
        raw="0722 000 000",
        kind="phone",
        e164="+254722000000",
        sha256="8556a495c390f3ba95d2bdf6d06436f2fd09f516531f0a7cd9591c60812fa46d",
    )


def test_a_json_integer_is_kept_as_text() -> None:
    assert classify_msisdn(254708374149) == Msisdn(
        raw="254708374149",
        kind="phone",
        e164="+254708374149",
        sha256="bbff37cea44ac0b2d964ee0dfb8d2df8513dc7ba1b36129a929fc3fbd6dd4af4",
    )


@pytest.mark.parametrize("raw", ["020 2222222", "0000000000", "07l2345678", "hello", "0712"])
def test_anything_else_is_invalid_and_keeps_what_was_sent(raw: str) -> None:
    assert classify_msisdn(raw) == Msisdn(raw=raw, kind="invalid")


@pytest.mark.parametrize("raw", [True, 254712345678.0, -254712345678])
def test_bools_floats_and_negative_numbers_are_invalid(raw: object) -> None:
    assert classify_msisdn(raw) == Msisdn(raw=str(raw), kind="invalid")


@MODEST
@given(st.one_of(st.none(), st.text(max_size=70), st.integers(), phone_like_text))
def test_classification_never_raises_and_only_phones_have_e164(raw: str | int | None) -> None:
    msisdn = classify_msisdn(raw)
    assert msisdn.raw == (None if raw is None else str(raw))
    assert (msisdn.e164 is not None) == (msisdn.kind == "phone")
    if msisdn.kind == "phone":
        assert msisdn.e164 is not None
        assert msisdn.sha256 == msisdn_sha256(msisdn.e164)
    elif msisdn.kind != "hashed":
        assert msisdn.sha256 is None


# --- digits_only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "digits"),
    [("+254 (0)712-345.678", "2540712345678"), ("", ""), ("abc", ""), ("\u0661\u0662", "")],
)
def test_digits_only_keeps_ascii_digits_in_order(text: str, digits: str) -> None:
    assert digits_only(text) == digits
