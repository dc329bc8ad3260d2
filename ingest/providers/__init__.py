"""Provider adapters by name: the only place that knows which providers momo speaks."""

from __future__ import annotations

from ingest.providers.base import ProviderAdapter
from ingest.providers.mpesa import MpesaAdapter

#: Provider name (as used in webhook URLs, inbox rows and payments) -> its adapter.
ADAPTERS: dict[str, ProviderAdapter] = {"mpesa": MpesaAdapter()}


def receipt_owner(reference: str) -> tuple[str, str] | None:
    """The provider whose receipt code ``reference`` is, and the code as it writes it."""
    for name, adapter in ADAPTERS.items():
        code = adapter.receipt_code(reference)
        if code is not None:
            return name, code
    return None


def cancelled_codes() -> dict[str, frozenset[int]]:
    """Provider name -> the attempt result codes that mean the payer cancelled."""
    return {name: adapter.cancelled_codes for name, adapter in ADAPTERS.items()}
