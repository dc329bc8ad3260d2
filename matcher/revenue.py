"""Revenue kept as it happens: a running total per 15-minute slice of time paid.

Revenue is associated payments net of disassociations, so it moves exactly
when a payment credit or a reversal is posted; the ledger applies the move in
the same transaction. Slices are UTC quarter hours, which every business time
zone's midnights fall on, so a day, week or month in any zone is a whole
number of slices and reading a year costs ~35,000 small rows, not a million
payments.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Table, case, func, select
from sqlalchemy.orm import Session

from matcher.models import RevenueSlice

SLICE = timedelta(minutes=15)


def slice_of(moment: datetime) -> datetime:
    """The start of the UTC quarter hour holding ``moment``."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def apply_moves(session: Session, amounts: Counter[datetime], counts: Counter[datetime]) -> None:
    """Add to the slices, creating the missing ones, in slice order (as every writer does)."""
    slices = sorted(s for s in set(amounts) | set(counts) if amounts[s] or counts[s])
    if not slices:
        return
    table: Table = RevenueSlice.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    statement = upsert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.slice_start],
        set_={
            "amount_minor": table.c.amount_minor + statement.excluded.amount_minor,
            "payments": table.c.payments + statement.excluded.payments,
        },
    )
    session.execute(
        statement,
        [{"slice_start": s, "amount_minor": amounts[s], "payments": counts[s]} for s in slices],
    )


def daily(
    session: Session, since: datetime, until: datetime, zone: ZoneInfo
) -> list[tuple[date, int, int]]:
    """(local date, amount, payments) for each day with revenue in [since, until)."""
    window = (RevenueSlice.slice_start >= since, RevenueSlice.slice_start < until)
    if session.get_bind().dialect.name == "postgresql":
        # a year is ~35,000 slices: let the database fold them into days
        day = func.date(func.timezone(zone.key, RevenueSlice.slice_start)).label("day")
        rows = session.execute(
            select(day, func.sum(RevenueSlice.amount_minor), func.sum(RevenueSlice.payments))
            .where(*window)
            .group_by(day)
        )
        return [(d, int(amount), int(count)) for d, amount, count in rows]
    days: dict[date, list[int]] = {}
    for start, amount, count in session.execute(
        select(RevenueSlice.slice_start, RevenueSlice.amount_minor, RevenueSlice.payments).where(
            *window
        )
    ):
        totals = days.setdefault(start.astimezone(zone).date(), [0, 0])
        totals[0] += amount
        totals[1] += count
    return [(d, amount, count) for d, (amount, count) in days.items()]


def totals_since(session: Session, starts: dict[str, datetime | None]) -> dict[str, int]:
    """Revenue since each named start (None: all time), read in one pass over the slices."""
    columns = [
        func.coalesce(
            func.sum(
                RevenueSlice.amount_minor
                if start is None
                else case((RevenueSlice.slice_start >= start, RevenueSlice.amount_minor), else_=0)
            ),
            0,
        )
        for start in starts.values()
    ]
    row = session.execute(select(*columns)).one()
    return {name: int(value) for name, value in zip(starts, row, strict=True)}


__all__ = ["SLICE", "apply_moves", "daily", "slice_of", "totals_since"]
