"""The operator API, under /api/v1: importing this module registers every endpoint on ``bp``
(the imports below exist for that side effect)."""

from api import customers, inbox, openapi, payments, plans, reports, tokens  # noqa: F401
from api.common import bp

__all__ = ["bp"]
