"""Text from outside as the database can keep it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matcher.models import Payment
from matcher.text import column_length, fit, fits, storable

any_text = st.text(st.characters(codec=None, categories=None) | st.sampled_from("\x00\ud800"))


@given(any_text, st.integers(0, 300))
def test_storable_text_always_encodes_and_fits(text: str, length: int) -> None:
    kept = storable(text, length)
    kept.encode("utf-8")  # a lone surrogate would raise here
    assert "\x00" not in kept
    assert fits(kept, length)
    assert len(kept) == min(len(text), length)


@given(any_text)
def test_text_that_fits_is_kept_exactly(text: str) -> None:
    if fits(text, 200):
        assert storable(text, 200) == text


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("WANJIKU", "WANJIKU"),
        ("A\x00B", "A\ufffdB"),
        ("\ud800x", "\ufffdx"),
        ("W" * 300, "W" * 200),
    ],
)
def test_a_payer_name_is_kept_as_its_column_can_hold_it(text: str, kept: str) -> None:
    assert fit(text, Payment.payer_name) == kept
    assert fit(None, Payment.payer_name) is None


def test_column_lengths_come_from_the_model() -> None:
    assert column_length(Payment.account_reference) == 128
    with pytest.raises(TypeError):
        column_length(Payment.amount_minor)
