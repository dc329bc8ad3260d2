"""Recovering and reconciling at volume: what reading the provider's own record costs.

    python -m bench.reconcile [--payments 20000] [--smoke]

On a PostgreSQL database of its own, with the worker's own code in this process:

- baseline: N C2B confirmations stored in the inbox and recorded (drain_inbox), the
  path every callback takes;
- recovery: N records of a pull (another N receipts, their confirmations "lost") fed
  through ``tasks.recovery.recover``: parsed, stored, recorded, the provider's record and
  the span kept; then the same N again, all already known (a second pull);
- report: ``momo reconcile`` over the span holding all 3N payments and 2N provider
  records, against a baseline that reads the same payments' amounts in one query.

Figures are ratios to the baselines measured in the same run; absolute times are shown
beside them.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bench.common import PATH_TOKEN, bench_database, say, write_json
from core.config import Settings
from ingest.providers import build_runtime
from ingest.providers.mpesa import MpesaSettings
from matcher.customers import save_customer
from matcher.db import make_engine
from matcher.migrate import upgrade
from matcher.models import InboxItem, Payment
from matcher.reconcile import reconcile
from tasks.recovery import Coverage, recover
from tasks.work import drain_inbox

NAIROBI = ZoneInfo("Africa/Nairobi")
CUSTOMERS = 1000


def _phone(i: int) -> str:
    return f"2547{i % CUSTOMERS:08d}"


def _confirmation(i: int, paid: datetime) -> bytes:
    return json.dumps(
        {
            "TransactionType": "Pay Bill",
            "TransID": f"B{i:09d}",
            "TransTime": paid.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S"),
            "TransAmount": f"{100 + i % 900}.00",
            "BusinessShortCode": "600000",
            "BillRefNumber": f"ACC{i % CUSTOMERS}",
            "MSISDN": _phone(i),
            "FirstName": "JOHN",
        }
    ).encode()


def _pull_record(i: int, paid: datetime) -> bytes:
    return json.dumps(
        {
            "transactionId": f"P{i:09d}",
            "trxDate": paid.astimezone(NAIROBI).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "msisdn": int(_phone(i)[3:]),
            "sender": "JOHN DOE",
            "transactiontype": "c2b-pay-bill-debit",
            "billreference": f"ACC{i % CUSTOMERS}",
            "amount": f"{100 + i % 900}.0",
            "organizationname": "MOMO BENCH",
        }
    ).encode()


def _drain_all(runtime: object) -> None:
    while drain_inbox(runtime).claimed:  # type: ignore[arg-type]
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="a few hundred, to check it runs")
    args = parser.parse_args()
    n = 300 if args.smoke else args.payments
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=40)
    step = (now - start) / max(n, 1)

    with bench_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        runtime = build_runtime(
            Settings(
                database_url=url,
                providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN)},
                batch_size=500,
            )
        )
        try:
            with runtime.sessions.begin() as session:
                for c in range(CUSTOMERS):
                    save_customer(
                        session,
                        account_number=f"ACC{c}",
                        name=f"Customer {c}",
                        phones=[f"+{_phone(c)}"],
                        actor="bench",
                        region="KE",
                    )
            say(f"{CUSTOMERS} customers; {n} payments each way")

            for s in range(0, n, 2000):
                with runtime.sessions.begin() as session:
                    session.add_all(
                        InboxItem(
                            provider="mpesa",
                            kind="c2b/confirmation",
                            body=_confirmation(i, start + step * i),
                            headers={},
                        )
                        for i in range(s, min(n, s + 2000))
                    )
            began = time.perf_counter()
            _drain_all(runtime)
            baseline = time.perf_counter() - began
            say(f"baseline: {n} confirmations recorded in {baseline:.2f} s ({n / baseline:.0f}/s)")

            records = [(f"record {i}", _pull_record(i, start + step * i)) for i in range(n)]
            coverage = Coverage("pull", start, now, "bench")
            began = time.perf_counter()
            first = recover(runtime, "mpesa", "pull", records, coverage=coverage)
            recovery = time.perf_counter() - began
            assert first.credited == n, first
            say(f"recovery: {first} in {recovery:.2f} s ({n / recovery:.0f}/s)")
            began = time.perf_counter()
            again = recover(runtime, "mpesa", "pull", records, coverage=coverage)
            known = time.perf_counter() - began
            assert again.already_known == n, again
            say(f"second pull: {again} in {known:.2f} s ({n / known:.0f}/s)")

            # as autovacuum would have by then: the planner knows the tables' sizes
            with runtime.engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
            first_day = start.astimezone(NAIROBI).date()
            last_day = now.astimezone(NAIROBI).date()
            with runtime.sessions.begin() as session:
                began = time.perf_counter()
                total = session.scalar(
                    select(func.sum(Payment.amount_minor)).where(
                        Payment.paid_at >= start - timedelta(days=1)
                    )
                )
                read = time.perf_counter() - began
            with runtime.sessions.begin() as session:
                began = time.perf_counter()
                report = reconcile(
                    session, provider="mpesa", first=first_day, last=last_day, zone=NAIROBI
                )
                reporting = time.perf_counter() - began
            say(
                f"report: {report.unexplained} unexplained ({len(report.missing_from_provider)} "
                f"callbacks the record lacks, {len(report.recovered)} recovered) in "
                f"{reporting:.2f} s; one query over the same payments: {read:.3f} s "
                f"(total {total})"
            )
        finally:
            runtime.close()

    figures = {
        "payments": n,
        "baseline_record_s": round(baseline, 3),
        "recovery_s": round(recovery, 3),
        "recovery_vs_baseline": round(recovery / baseline, 2),
        "second_pull_s": round(known, 3),
        "second_pull_vs_baseline": round(known / baseline, 2),
        "report_s": round(reporting, 3),
        "report_vs_one_query": round(reporting / read, 1) if read else None,
    }
    say(json.dumps(figures))
    if not args.smoke:
        write_json("reconcile", figures)


if __name__ == "__main__":
    main()
