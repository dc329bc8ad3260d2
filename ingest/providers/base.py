"""The small protocol every provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from matcher.notifications import Callback, InvalidCallback

__all__ = ["InvalidCallback", "ParseContext", "ProviderAdapter"]


@dataclass(frozen=True)
class ParseContext:
    """Deployment facts a parser needs: where local times and numbers are."""

    currency: str = "KES"
    region: str = "KE"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Africa/Nairobi"))
    #: only decide whether the body is the provider's shape (the webhook's question); the
    #: payer's number is then left unclassified, for the worker to classify
    shape_only: bool = False


class ProviderAdapter(Protocol):
    name: str
    #: callback kinds this provider posts, e.g. {"c2b/confirmation", ...}
    kinds: frozenset[str]
    #: result codes of a failed attempt that mean the payer cancelled it
    cancelled_codes: frozenset[int]

    def receipt_code(self, reference: str) -> str | None:
        """``reference`` written as this provider's receipt code, or None if it is not one."""
        ...

    def parse(self, kind: str, body: bytes, ctx: ParseContext) -> Callback:
        """Parse a raw body; raise InvalidCallback when it is not the provider's shape."""
        ...

    def acknowledge(self, kind: str) -> dict[str, Any]:
        """The body that tells the provider a callback was taken."""
        ...

    def validation_reply(self, accepted: bool) -> dict[str, Any]:
        """The body answering a validation request."""
        ...
