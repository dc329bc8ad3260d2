"""An API answer to a database error logs the database's words, never the row's values."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from sqlalchemy.exc import IntegrityError

PHONE = "+254799123456"


class DriverError(Exception):
    """What psycopg raises for a duplicate key: the row's values on its DETAIL line."""


def test_a_database_error_is_logged_without_the_statements_values(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> str:
        raise IntegrityError(
            "INSERT INTO customer_phones (customer_id, e164) VALUES (%(c)s, %(e)s)",
            {"c": 7, "e": PHONE},
            DriverError(
                "duplicate key value violates unique constraint "
                f'"uq_customer_phones_customer_e164"\nDETAIL:  Key (customer_id, e164)=(7, {PHONE})'
                " already exists."
            ),
        )

    app.add_url_rule("/api/v1/boom", view_func=boom)
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().get("/api/v1/boom")
    assert response.status_code == 503
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any(
        'IntegrityError: duplicate key value violates unique constraint "uq_customer_phones' in line
        for line in logged
    ), logged
    assert not any(PHONE in line or PHONE[1:] in line for line in logged), logged
