"""Revenue kept as it happens: running totals per 15-minute slice and per UTC day.

Revenue is associated payments net of disassociations, so it moves exactly
when a payment credit or a reversal is posted; the ledger applies the move in
the same transaction. Each slice also keeps what was received (every payment
stored, associated or not), so unassociated money is received minus revenue.

Slices are UTC quarter hours, which every business time zone's midnights fall
on, so a day, week or month in any zone is a whole number of slices. Each UTC
day's slices are also added up in a day row, written with them; a long range
is read as whole UTC days plus the slices at its two ends, so a year costs
~365 day rows and a few hundred slices, not 35,000 slices or a million payments.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import ARRAY, DateTime, Table, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from matcher.db import upsert_insert
from matcher.models import RevenueDay, RevenueSlice

SLICE = timedelta(minutes=15)
DAY = timedelta(days=1)


def slice_of(moment: datetime) -> datetime:
    """The start of the UTC quarter hour holding ``moment``."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """UTC midnight starting the UTC day that holds ``moment``."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _upsert(session: Session, table: Table, key: str, rows: list[dict[str, Any]]) -> None:
    statement = upsert_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={
            name: table.c[name] + statement.excluded[name]
            for name in ("amount_minor", "payments", "received_minor")
        },
    )
    session.execute(statement, rows)


def apply_moves(
    session: Session,
    amounts: Counter[datetime],
    counts: Counter[datetime],
    received: Counter[datetime] | None = None,
) -> None:
    """Add to the slices and their days, creating missing rows.

    Every writer locks rows in the same order (slices by time, then days by
    time), so two transactions moving the same rows wait for each other rather
    than deadlock.
    """
    received = received or Counter()
    slices = sorted(
        s
        for s in set(amounts) | set(counts) | set(received)
        if amounts[s] or counts[s] or received[s]
    )
    if not slices:
        return
    days = fold_days((s, amounts[s], counts[s], received[s]) for s in slices)
    _upsert(
        session,
        RevenueSlice.__table__,  # type: ignore[arg-type]
        "slice_start",
        [
            {
                "slice_start": s,
                "amount_minor": amounts[s],
                "payments": counts[s],
                "received_minor": received[s],
            }
            for s in slices
        ],
    )
    _upsert(
        session,
        RevenueDay.__table__,  # type: ignore[arg-type]
        "day_start",
        [
            {"day_start": d, "amount_minor": a, "payments": c, "received_minor": r}
            for d, (a, c, r) in sorted(days.items())
        ],
    )


def fold_days(
    slices: Iterable[tuple[datetime, int, int, int]],
) -> dict[datetime, tuple[int, int, int]]:
    """(amount, payments, received) of each UTC day, from (start, amount, payments,
    received) of its slices."""
    days: dict[datetime, tuple[int, int, int]] = {}
    for start, amount, count, received in slices:
        a, c, r = days.get(day_of(start), (0, 0, 0))
        days[day_of(start)] = (a + amount, c + count, r + received)
    return days


Range = tuple[datetime, datetime]


def _pieces(bounds: list[datetime]) -> tuple[list[Range], list[Range]]:
    """Split each interval [bounds[i], bounds[i + 1]) into whole UTC days and end slices."""
    day_ranges, slice_ranges = [], []
    for lo, hi in pairwise(bounds):
        first_day = day_of(lo) if day_of(lo) == lo else day_of(lo) + DAY
        last_day = day_of(hi)
        if first_day < last_day:
            day_ranges.append((first_day, last_day))
            if lo < first_day:
                slice_ranges.append((lo, first_day))
            if last_day < hi:
                slice_ranges.append((last_day, hi))
        else:
            slice_ranges.append((lo, hi))
    return day_ranges, slice_ranges


def _merged(ranges: list[Range]) -> list[Range]:
    """The ranges' union as few disjoint ranges (adjacent periods' pieces touch)."""
    merged: list[Range] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _sum_ranges(
    session: Session,
    table: Any,
    column: Any,
    ranges: list[Range],
    bounds: list[datetime],
) -> list[tuple[int, int, int]]:
    """(period index, amount, payments) of the rows of ``table`` inside ``ranges``.

    Every row inside a piece lies wholly in one period, so the period is found from
    the row's own start among ``bounds``: PostgreSQL does it with a binary search
    (width_bucket), far cheaper than turning each row into local time.
    """
    if not ranges:
        return []
    inside = or_(*(and_(column >= lo, column < hi) for lo, hi in _merged(ranges)))
    if session.get_bind().dialect.name == "postgresql":
        bucket = func.width_bucket(column, literal(bounds, ARRAY(DateTime(timezone=True))))
        rows = session.execute(
            select(bucket, func.sum(table.amount_minor), func.sum(table.payments))
            .where(inside)
            .group_by(bucket)
        )
        return [(int(b) - 1, int(amount), int(count)) for b, amount, count in rows]
    found = []
    for start, amount, count in session.execute(
        select(column, table.amount_minor, table.payments).where(inside)
    ):
        found.append((bisect_right(bounds, start) - 1, int(amount), int(count)))
    return found


def between(session: Session, bounds: list[datetime]) -> list[tuple[int, int]]:
    """(amount, payments) in each interval [bounds[i], bounds[i + 1]), for increasing bounds.

    A period in the business's zone (day, week, month; 23 or 25 hours long on a
    daylight-saving change) is a whole number of quarter hours, so giving its
    local midnights as bounds sums it exactly.
    """
    totals = [[0, 0] for _ in bounds[:-1]]
    day_ranges, slice_ranges = _pieces(bounds)
    for table, column, ranges in (
        (RevenueDay, RevenueDay.day_start, day_ranges),
        (RevenueSlice, RevenueSlice.slice_start, slice_ranges),
    ):
        for index, amount, count in _sum_ranges(session, table, column, ranges, bounds):
            totals[index][0] += amount
            totals[index][1] += count
    return [(amount, count) for amount, count in totals]


def totals_since(session: Session, starts: dict[str, datetime | None]) -> dict[str, int]:
    """Revenue since each named start (None: all time), and ``received`` (every payment's
    amount, all time): all time from the day rows, the rest from the recent slices."""
    all_time, received = session.execute(
        select(
            func.coalesce(func.sum(RevenueDay.amount_minor), 0),
            func.coalesce(func.sum(RevenueDay.received_minor), 0),
        )
    ).one()
    totals = {name: int(all_time) for name, start in starts.items() if start is None}
    recent = {name: start for name, start in starts.items() if start is not None}
    if recent:
        columns = [
            func.coalesce(
                func.sum(
                    case((RevenueSlice.slice_start >= start, RevenueSlice.amount_minor), else_=0)
                ),
                0,
            )
            for start in recent.values()
        ]
        row = session.execute(
            select(*columns).where(RevenueSlice.slice_start >= min(recent.values()))
        ).one()
        totals.update({name: int(value) for name, value in zip(recent, row, strict=True)})
    return {**{name: totals[name] for name in starts}, "received": int(received)}


__all__ = [
    "DAY",
    "SLICE",
    "apply_moves",
    "between",
    "day_of",
    "fold_days",
    "slice_of",
    "totals_since",
]
