"""Provider adapters by name: the only place that knows which providers momo speaks."""

from __future__ import annotations

from ingest.providers.base import ProviderAdapter
from ingest.providers.mpesa import MpesaAdapter

#: Provider name (as used in webhook URLs, inbox rows and payments) -> its adapter.
ADAPTERS: dict[str, ProviderAdapter] = {"mpesa": MpesaAdapter()}
