"""A database error never carries a payer's data into an inbox row, a log or a task event.

PostgreSQL's errors, as SQLAlchemy shows them, quote the statement's bound values
(phones, payer names) and, below their first line, the row's values (DETAIL).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DataError

from core.runtime import Runtime
from matcher.db import utcnow
from matcher.inbox import process_pending
from matcher.models import INBOX_DEAD, InboxItem
from matcher.notifications import Callback, Msisdn, PaymentNotification
from tests.integration.conftest import migrated_runtime

pytestmark = pytest.mark.integration

PAYER = "Wanjiku Siriyake"
PHONE = "+254799123456"
REFERENCE = "HIDDENREF77"


@pytest.fixture(scope="module")
def pg() -> Iterator[Runtime]:
    yield from migrated_runtime()


def no_payer_data(text_: str) -> bool:
    return not any(secret in text_ for secret in (PAYER, PHONE, PHONE[1:], REFERENCE))


def test_a_row_the_database_refuses_keeps_only_the_error_class_and_first_line(
    pg: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with pg.sessions.begin() as session:
        item = InboxItem(provider="mpesa", kind="c2b/confirmation", body=b"{}", headers={})
        session.add(item)
        session.flush()
        row_id = item.id

    def parse(_item: InboxItem) -> Callback:
        # past BIGINT: PostgreSQL refuses the insert that carries the payer's data
        return PaymentNotification(
            provider="mpesa",
            channel="c2b",
            code="DBERR00001",
            amount=2**63,
            currency="KES",
            paid_at=utcnow(),
            msisdn=Msisdn(raw=PHONE[1:], kind="phone", e164=PHONE, sha256="0" * 64),
            payer_name=PAYER,
            account_reference=REFERENCE,
        )

    with caplog.at_level(logging.DEBUG), pg.sessions.begin() as session:
        process_pending(session, parse, region="KE", limit=10)
    with pg.sessions.begin() as session:
        row = session.scalars(select(InboxItem).where(InboxItem.id == row_id)).one()
        assert (row.status, row.reason) == (INBOX_DEAD, "unstorable")
        assert row.detail == "DataError: bigint out of range"
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("bigint out of range" in line for line in logged), logged
    assert all(no_payer_data(line) for line in logged), logged


def test_an_engine_error_shows_no_bound_values(pg: Runtime) -> None:
    with pytest.raises(DataError) as caught, pg.engine.begin() as connection:
        connection.execute(
            text("SELECT CAST(:value AS integer), CAST(:payer AS text)"),
            {"value": 2**40, "payer": PAYER},
        )
    assert "integer out of range" in str(caught.value)
    assert no_payer_data(str(caught.value)), str(caught.value)
