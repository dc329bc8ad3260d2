from __future__ import annotations

import pytest
from sqlalchemy import select

from core.runtime import Runtime
from matcher.models import Payment
from tests.revenue_ranges import check_ranges, seed_slices


@pytest.mark.parametrize("seed", [1, 2])
def test_long_ranges_equal_a_recount_of_the_slices_in_every_zone(
    runtime: Runtime, seed: int
) -> None:
    with runtime.sessions.begin() as session:
        slices = seed_slices(session, seed)
    with runtime.sessions() as session:
        assert check_ranges(session, slices) > 500


def test_the_migration_backfills_received_totals_and_days_as_the_writers_keep_them(
    runtime: Runtime,
) -> None:
    from datetime import timedelta

    from matcher.check import check_invariants
    from matcher.payments import disassociate
    from tasks.work import drain_inbox
    from tests.conftest import add_customer
    from tests.revenue_ranges import rebuild_from_0005, snapshot
    from tests.unit.test_pipeline import confirmation, put

    add_customer(runtime, "ACC1042", [])
    put(runtime, "c2b/confirmation", confirmation())
    put(runtime, "c2b/confirmation", confirmation(TransID="TKQ4A91B2D", TransTime="20251104100000"))
    put(runtime, "c2b/confirmation", confirmation(TransID="TKQ4A91B2E", BillRefNumber="NOPE"))
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        paid = session.scalar(select(Payment.id).where(Payment.code == "TKQ4A91B2D"))
        disassociate(session, paid, reason="wrong account", actor="test")
    with runtime.sessions() as session:
        kept = snapshot(session)
    assert kept[0] and kept[1]
    rebuild_from_0005(runtime.engine)
    with runtime.sessions() as session:
        assert snapshot(session) == kept
        assert check_invariants(session, stuck_after=timedelta(minutes=5)) == []
