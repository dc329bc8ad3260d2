"""The baselines every accept-path figure is compared with, served by the same gunicorn.

``hello``: a Flask POST that answers at once, the ceiling of the web stack.
``naive``: parse an M-PESA confirmation and insert it with the SQLAlchemy ORM in the
request, then answer: the design momo must beat.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal

from flask import Flask, jsonify, request
from sqlalchemy import BigInteger, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class _Base(DeclarativeBase):
    pass


class NaivePayment(_Base):
    __tablename__ = "bench_naive_payments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    msisdn: Mapped[str] = mapped_column(String(128))
    account: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(String(65536))


def hello_app() -> Flask:
    app = Flask("hello")

    @app.post("/<path:_rest>")
    def hello(_rest: str):  # type: ignore[no-untyped-def]
        request.get_data()
        return jsonify({"ResultCode": 0, "ResultDesc": "Accepted"})

    return app


def create_naive_table(url: str) -> None:
    """Made once by the bench before the server starts: two workers racing to create it fail."""
    engine = create_engine(url)
    _Base.metadata.create_all(engine)
    engine.dispose()


def naive_app() -> Flask:
    engine = create_engine(os.environ["BENCH_DATABASE_URL"], pool_pre_ping=True)
    sessions = sessionmaker(engine)
    app = Flask("naive")

    @app.post("/<path:_rest>")
    def naive(_rest: str):  # type: ignore[no-untyped-def]
        raw = request.get_data()
        doc = json.loads(raw, parse_float=Decimal)
        payment = NaivePayment(
            code=doc["TransID"],
            amount_minor=int(Decimal(str(doc["TransAmount"])) * 100),
            msisdn=str(doc.get("MSISDN", "")),
            account=str(doc.get("BillRefNumber", "")),
            body=raw.decode(),
        )
        with sessions.begin() as session:
            session.add(payment)
        return jsonify({"ResultCode": 0, "ResultDesc": "Accepted"})

    return app
