"""Provider adapters by name: the only place that knows which providers momo speaks."""

from __future__ import annotations

from ingest.providers.base import ProviderAdapter
from ingest.providers.mpesa import MpesaAdapter

#: Provider name (as used in webhook URLs, inbox rows and payments) -> its adapter.
ADAPTERS: dict[str, ProviderAdapter] = {"mpesa": MpesaAdapter()}
#: whose error shape answers a request that names no registered provider (a wrong
#: path, a mistyped provider), so such answers look like today's
FALLBACK = "mpesa"

WEBHOOKS = "/webhooks/"


def adapter_for(provider: str) -> ProviderAdapter:
    """The adapter of ``provider``, or the fallback's when no such provider is registered."""
    return ADAPTERS.get(provider) or ADAPTERS[FALLBACK]


def adapter_for_path(path: str) -> ProviderAdapter:
    """The adapter that answers ``path``: the provider a webhook path names, or the fallback."""
    if path.startswith(WEBHOOKS):
        return adapter_for(path[len(WEBHOOKS) :].split("/", 1)[0])
    return ADAPTERS[FALLBACK]


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
