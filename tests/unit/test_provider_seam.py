"""The provider seam: the domain names no provider; adapters own their literals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.providers import ADAPTERS, cancelled_codes, mpesa, receipt_owner

MATCHER = Path(__file__).resolve().parents[2] / "matcher"

#: words that belong to one provider (its name, its operator, its API, its channels)
PROVIDER_WORDS = re.compile(r"m-?pesa|safaricom|daraja|\bstk\b|\bc2b\b", re.IGNORECASE)


def _receipt_pattern() -> str:
    return mpesa.RECEIPT.pattern


def test_matcher_source_names_no_provider() -> None:
    found = []
    for path in sorted(MATCHER.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for number, line in enumerate(source.splitlines(), 1):
            hit = PROVIDER_WORDS.search(line)
            if hit is not None or _receipt_pattern() in line:
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert found == [], "provider literals in matcher/ (move them into its adapter):\n" + (
        "\n".join(found)
    )


def test_the_scan_would_see_a_provider_literal() -> None:
    # the scan is only worth something if these lines would trip it
    for line in ('provider="mpesa"', "# an M-PESA receipt", "Daraja", 'channel="stk"'):
        assert PROVIDER_WORDS.search(line)


@pytest.mark.parametrize(
    ("reference", "owner"),
    [
        ("TKQ4A91B2C", ("mpesa", "TKQ4A91B2C")),
        (" tkq4a91b2c ", ("mpesa", "TKQ4A91B2C")),
        ("0712345678", None),  # a phone number typed as a reference
        ("TKQ4A91B2", None),
        ("ABCDEFGHIJ", None),  # no digit
        ("bank slip 44", None),
    ],
)
def test_receipt_owner_asks_the_adapters(reference: str, owner: tuple[str, str] | None) -> None:
    assert receipt_owner(reference) == owner


def test_cancelled_codes_come_from_the_adapters() -> None:
    assert cancelled_codes() == {name: a.cancelled_codes for name, a in ADAPTERS.items()}
    assert 1032 in cancelled_codes()["mpesa"]


#: the webhook edge outside the adapters: it dispatches by provider, holds no one's shapes
EDGE = ("ingest/views.py", "ingest/fast.py", "core/web.py")
EDGE_WORDS = re.compile(r"m-?pesa|safaricom|daraja|ResultCode|ResultDesc", re.IGNORECASE)


def test_the_webhook_edge_holds_no_provider_literals() -> None:
    root = MATCHER.parent
    found = [
        f"{name}:{number}: {line.strip()}"
        for name in EDGE
        for number, line in enumerate((root / name).read_text(encoding="utf-8").splitlines(), 1)
        if EDGE_WORDS.search(line)
    ]
    assert found == [], "provider literals at the webhook edge (ask the adapter):\n" + (
        "\n".join(found)
    )
