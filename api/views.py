"""The operator API, under /api/v1: importing this module registers every endpoint on ``bp``
(the imports below exist for that side effect)."""

from api import (  # noqa: F401
    customers,
    inbox,
    lookups,
    openapi,
    payment_requests,
    payments,
    plans,
    reconciliation,
    reports,
    tokens,
)
from api.common import bp

__all__ = ["bp"]
