"""The operator API, under /api/v1: importing this module registers every endpoint on ``bp``."""

from api import customers, openapi, payments, plans, reports, tokens  # noqa: F401  (registers routes)
from api.common import bp

__all__ = ["bp"]
