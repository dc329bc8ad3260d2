"""Revenue read over long ranges must equal a recount of the slices, in any zone.

Shared by the SQLite unit test and the PostgreSQL integration test: random
slices over two years, across daylight-saving changes and :45 offsets, read
back by day, week and month and as running totals, against a brute force.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from matcher.reports import local_midnight, next_start, revenue_series, revenue_totals
from matcher.revenue import SLICE, apply_moves

ZONES = ["Africa/Nairobi", "Europe/London", "America/New_York", "Asia/Kathmandu", "UTC"]
START = datetime(2025, 1, 1, tzinfo=UTC)


def seed_slices(session: Session, seed: int) -> dict[datetime, tuple[int, int, int]]:
    """Random moves (several batches, some reversals) as the ledger would apply them."""
    rnd = random.Random(seed)
    kept: Counter[datetime] = Counter()
    counts: Counter[datetime] = Counter()
    received: Counter[datetime] = Counter()
    for _ in range(6):
        amounts_b: Counter[datetime] = Counter()
        counts_b: Counter[datetime] = Counter()
        received_b: Counter[datetime] = Counter()
        for _ in range(400):
            # clustered around the DST changes of 2025 and 2026 as well as anywhere
            if rnd.random() < 0.5:
                around = rnd.choice(
                    [
                        datetime(2025, 3, 9, 7, tzinfo=UTC),
                        datetime(2025, 3, 30, 1, tzinfo=UTC),
                        datetime(2025, 10, 26, 1, tzinfo=UTC),
                        datetime(2025, 11, 2, 6, tzinfo=UTC),
                        datetime(2026, 3, 29, 1, tzinfo=UTC),
                    ]
                )
                at = around + SLICE * rnd.randrange(-200, 200)
            else:
                at = START + SLICE * rnd.randrange(0, 2 * 365 * 96)
            amount = rnd.randrange(1, 10**6)
            received_b[at] += amount
            if rnd.random() < 0.8:
                amounts_b[at] += amount
                counts_b[at] += 1
            if rnd.random() < 0.1:  # a disassociation later on
                amounts_b[at] -= amount
                counts_b[at] -= 1
        apply_moves(session, amounts_b, counts_b, received_b)
        kept.update(amounts_b)
        counts.update(counts_b)
        received.update(received_b)
    return {s: (kept[s], counts[s], received[s]) for s in set(kept) | set(received)}


def brute(slices: dict[datetime, tuple[int, int, int]], lo: datetime, hi: datetime) -> list[int]:
    inside = [v for s, v in slices.items() if lo <= s < hi]
    return [sum(v[0] for v in inside), sum(v[1] for v in inside)]


def check_ranges(session: Session, slices: dict[datetime, tuple[int, int, int]]) -> int:
    """Every zone, period and a few ranges; returns how many buckets were compared."""
    compared = 0
    for key in ZONES:
        zone = ZoneInfo(key)
        for period, first, last in [
            ("day", date(2025, 3, 5), date(2025, 4, 3)),
            ("day", date(2025, 10, 20), date(2025, 11, 10)),
            ("week", date(2025, 1, 1), date(2025, 12, 31)),
            ("month", date(2025, 1, 1), date(2026, 12, 31)),
            ("month", date(2025, 3, 1), date(2025, 3, 31)),
        ]:
            buckets = revenue_series(session, zone=zone, period=period, first=first, last=last)
            assert buckets, (key, period)
            for bucket in buckets:
                lo = bucket.start.astimezone(UTC)
                hi = local_midnight(next_start(bucket.start.date(), period), zone).astimezone(UTC)
                assert [bucket.amount, bucket.count] == brute(slices, lo, hi), (
                    key,
                    period,
                    bucket.start,
                )
                compared += 1
        now = datetime(2026, 3, 29, 12, 7, tzinfo=UTC)
        totals = revenue_totals(session, zone=zone, now=now)
        today = now.astimezone(zone).date()
        month = local_midnight(today.replace(day=1), zone).astimezone(UTC)
        far = datetime(2100, 1, 1, tzinfo=UTC)
        assert totals["today"] == brute(slices, local_midnight(today, zone), far)[0]
        assert totals["this_month"] == brute(slices, month, far)[0]
        everything = brute(slices, START - timedelta(days=400), far)
        assert totals["all_time"] == everything[0]
        received = sum(v[2] for v in slices.values())
        assert totals["unassociated_total"] == received - everything[0]
    return compared


def snapshot(session: Session) -> tuple[list[tuple], list[tuple]]:
    from sqlalchemy import select

    from matcher.models import RevenueDay, RevenueSlice

    slices = session.execute(
        select(
            RevenueSlice.slice_start,
            RevenueSlice.amount_minor,
            RevenueSlice.payments,
            RevenueSlice.received_minor,
        ).order_by(RevenueSlice.slice_start)
    ).all()
    days = session.execute(
        select(
            RevenueDay.day_start,
            RevenueDay.amount_minor,
            RevenueDay.payments,
            RevenueDay.received_minor,
        ).order_by(RevenueDay.day_start)
    ).all()
    return [tuple(r) for r in slices if any(r[1:])], [tuple(r) for r in days if any(r[1:])]


def rebuild_from_0005(engine) -> None:  # type: ignore[no-untyped-def]
    """Down to 0005 (dropping days and received totals) and up again: the backfill's turn."""
    from alembic import command

    from matcher.migrate import alembic_config, upgrade

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    upgrade(engine)
