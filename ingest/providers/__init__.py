"""Provider adapters by name: the only place that knows which providers momo speaks.

Every process above ``ingest`` loads its settings and builds its runtime here, so each
registered provider's settings block is read and every provider is spoken.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from core import config
from core import providers as core_providers
from core.config import Settings
from core.providers import ProviderAdapter
from core.runtime import Runtime
from core.runtime import build_runtime as build_core_runtime
from ingest.providers.airtel import AirtelAdapter
from ingest.providers.generic import GenericAdapter
from ingest.providers.mpesa import MpesaAdapter
from ingest.providers.mtn import MtnAdapter

if TYPE_CHECKING:
    from ingest.asking import Requester
    from ingest.lookups_reversals import Reconciler

#: Provider name (as used in webhook URLs, inbox rows and payments) -> its adapter. The
#: first one's error shape also answers a request that names no registered provider (a
#: wrong path, a mistyped provider), so such answers look like today's.
ADAPTERS: dict[str, ProviderAdapter] = {
    "mpesa": MpesaAdapter(),
    "airtel": AirtelAdapter(),
    "mtn": MtnAdapter(),
    "generic": GenericAdapter(),
}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``env`` (default: the environment), with every registered
    provider's block; ConfigError naming a variable that is wrong."""
    return config.load_settings(env, providers=ADAPTERS.values())


def variables() -> tuple[str, ...]:
    """Every variable momo reads: its own, then each registered provider's."""
    return config.VARIABLES + tuple(v for a in ADAPTERS.values() for v in a.variables)


def build_runtime(settings: Settings | None = None) -> Runtime:
    """A runtime speaking every registered provider, on ``settings`` (default: the
    environment's)."""
    return build_core_runtime(settings or load_settings(), providers=ADAPTERS)


def adapter_for(provider: str) -> ProviderAdapter:
    """The adapter of ``provider``, or the first registered one's when there is no such provider."""
    return core_providers.adapter_for(ADAPTERS, provider)


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


def requesters() -> dict[str, Requester]:
    """The providers that can ask customers to pay, by name."""
    return {
        name: adapter  # type: ignore[misc]
        for name, adapter in ADAPTERS.items()
        if callable(getattr(adapter, "ask", None))
    }


def reconcilers() -> dict[str, Reconciler]:
    """The providers that can look transaction codes up and reverse payments, by name."""
    return {
        name: adapter  # type: ignore[misc]
        for name, adapter in ADAPTERS.items()
        if callable(getattr(adapter, "look_up", None))
    }
