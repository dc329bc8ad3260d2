"""The reconciliation report: momo's books beside the provider's own record."""

from __future__ import annotations

from flask import Response, jsonify, request

from api.auth import require
from api.common import bp, request_session, runtime
from api.reports import date_arg
from ingest.providers import ADAPTERS
from matcher.db import utcnow
from matcher.errors import InvalidInput
from matcher.reconcile import choose_provider, reconcile, report_dict


@bp.get("/reconciliation")
@require("viewer")
def reconciliation() -> Response:
    """Provider records missing in momo (and recovered), momo payments missing from the
    provider's record, amount conflicts, unconfirmed manual entries and both sides' totals
    per local day, for the days ``from`` to ``to`` (both included; default today)."""
    settings = runtime().settings
    zone = settings.zone
    last = date_arg("to") or utcnow().astimezone(zone).date()
    first = date_arg("from") or last
    if first > last:
        raise InvalidInput("from must not be after to", "invalid_range")
    with request_session() as session:
        provider = choose_provider(
            session,
            request.args.get("provider"),
            default=settings.default_provider,
            known=list(ADAPTERS),
        )
        try:
            report = reconcile(session, provider=provider, first=first, last=last, zone=zone)
        except ValueError as exc:
            raise InvalidInput(str(exc), "invalid_range") from None
        return jsonify(report_dict(report, zone))
