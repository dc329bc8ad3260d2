"""The transaction log and the dashboard's revenue."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import Response, jsonify, request

from api.auth import require
from api.common import (
    bp,
    decode_cursor,
    encode_cursor,
    limit_arg,
    money,
    q_arg,
    request_session,
    runtime,
    time_arg,
)
from ingest.providers import cancelled_codes
from matcher.db import utcnow
from matcher.errors import InvalidInput
from matcher.reports import (
    DEFAULT_BUCKETS,
    PERIODS,
    TRANSACTION_KINDS,
    TRANSACTION_STATUSES,
    TransactionCursor,
    TransactionFilter,
    next_start,
    period_start,
    revenue_series,
    revenue_totals,
    transactions,
)


def _transaction_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{'L' if row['source'] == 'ledger' else 'A'}{row['id']}",
        "kind": row["kind"],
        "status": row["status"],
        "account_number": row["account_number"],
        "amount": money(int(row["amount_minor"] or 0)),
        "currency": runtime().settings.currency,
        "code": row["code"],
        "phone": row["phone"],
        "payment_id": row["payment_id"],
        "voucher_code": row["voucher_code"],
        "created_by": row["created_by"],
        "note": row["note"],
        "result_code": int(row["result_code"]) if row["result_code"] is not None else None,
        "result_desc": row["result_desc"],
        "at": row["at"].isoformat(),
    }


def transaction_page(flt: TransactionFilter) -> Response:
    if flt.kind is not None and flt.kind not in TRANSACTION_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(TRANSACTION_KINDS)}", "invalid_kind")
    if flt.status is not None and flt.status not in TRANSACTION_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(TRANSACTION_STATUSES)}", "invalid_status"
        )
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        # an empty span is a mistake, not a question: say so rather than list nothing
        raise InvalidInput("from must be before to", "invalid_range")
    limit = limit_arg()
    after = None
    cursor = request.args.get("cursor")
    if cursor:
        at, source, ident = decode_cursor(cursor, datetime, str, int)
        if source not in ("ledger", "attempt"):
            raise InvalidInput("cursor is not one this API gave out", "invalid_cursor")
        after = TransactionCursor(at, source, ident)
    with request_session() as session:
        rows = transactions(
            session,
            flt,
            region=runtime().settings.default_region,
            limit=limit + 1,
            cancelled_codes=cancelled_codes(),
            after=after,
        )
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    return jsonify(
        {
            "items": [_transaction_json(r) for r in page],
            "next_cursor": encode_cursor(last["at"], last["source"], last["id"])
            if more and last
            else None,
        }
    )


@bp.get("/transactions")
@require("viewer")
def list_transactions() -> Response:
    """Every balance movement and every attempt that moved no money, newest first."""
    return transaction_page(
        TransactionFilter(
            account_number=request.args.get("account") or None,
            kind=request.args.get("kind") or None,
            status=request.args.get("status") or None,
            since=time_arg("from"),
            until=time_arg("to"),
            q=q_arg(),
        )
    )


#: revenue is reported for dates in this range; outside it there are no mobile-money payments,
#: and local offsets before 1908 are not whole minutes
EARLIEST, LATEST = date(1970, 1, 1), date(9000, 12, 31)


def date_arg(name: str) -> date | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a date such as 2025-11-03", f"invalid_{name}") from None
    if not EARLIEST <= day <= LATEST:
        raise InvalidInput(
            f"{name} must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
            f"invalid_{name}",
        )
    return day


@bp.get("/dashboard/revenue")
@require("viewer")
def revenue() -> Response:
    """Today, this week (from Monday), this month and all time, plus a series, in local time."""
    settings = runtime().settings
    zone = settings.zone
    period = request.args.get("period", "day")
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}", "invalid_period")
    today = utcnow().astimezone(zone).date()
    last = date_arg("to") or today
    first = date_arg("from")
    if first is None:
        first = period_start(last, period)
        for _ in range(DEFAULT_BUCKETS[period] - 1):
            if first <= EARLIEST:
                break
            first = period_start(first - timedelta(days=1), period)
    if first > last:
        raise InvalidInput("from must not be after to", "invalid_range")
    with request_session() as session:
        totals = revenue_totals(session, zone=zone, now=utcnow())
        series = revenue_series(session, zone=zone, period=period, first=first, last=last)
    return jsonify(
        {
            "currency": settings.currency,
            "timezone": zone.key,
            **{name: money(amount) for name, amount in totals.items()},
            "period": period,
            "series": [
                {
                    "start": bucket.start.isoformat(),
                    "end": datetime.combine(
                        next_start(bucket.start.date(), period), bucket.start.timetz()
                    ).isoformat(),
                    "amount": money(bucket.amount),
                    "count": bucket.count,
                }
                for bucket in series
            ],
        }
    )
