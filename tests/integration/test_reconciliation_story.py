"""Reconciling with M-PESA, as README's "Reconciling with M-PESA" walks an owner through it.

One story on a real stack (gunicorn, a Celery worker and beat, PostgreSQL), a fake Daraja
standing in for Safaricom on loopback: the owner registers the C2B URLs and the pull with
the commands README gives, run as an owner types them; customers pay; a confirmation is
lost and beat's next pull credits it; a statement exported from the portal recovers a
payment older than Daraja's 48 hours; an operator enters a payment by hand that its late
callback confirms, and invents another that stays listed; a reversal debits once though
its result comes twice; and `momo reconcile` says, day by day, where every shilling is.

The steps run in order and share the stack; each asserts only what an owner would look
at: balances, the API's answers, the commands' output and exit codes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.fakes import REVERSAL, DarajaFake
from tests.fakes.daraja import NOMINATED_NUMBER
from tests.integration.conftest import (
    PATH_TOKEN,
    VENV_BIN,
    Stack,
    stack_of_its_own,
    wait_until,
)

NAIROBI = ZoneInfo("Africa/Nairobi")
#: a receipt no M-PESA payment carries: an operator typed it
INVENTED = "SZX7K2M9QP"


@dataclass
class Story:
    """What the steps learn and later steps check."""

    #: receipt -> (account, amount) of every payment the story made, the old one apart
    paid: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the day of the statement's payment, outside Daraja's 48 hours
    old_day: date | None = None
    old_receipt: str = ""
    manual_id: int = 0
    invented_id: int = 0
    reversed_id: int = 0


@pytest.fixture(scope="module")
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture(scope="module")
def stack(
    daraja: DarajaFake, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """README's step 1 settings: the Daraja app, and beat pulling every minute (README
    says 30; a minute keeps the story short)."""

    def env_for(public_url: str) -> dict[str, str]:
        return daraja.momo_env(public_url) | {"MOMO_MPESA_PULL_EVERY_MINUTES": "1"}

    with stack_of_its_own(redis_url, tmp_path_factory.mktemp("story"), env_for) as running:
        yield running


@pytest.fixture(scope="module")
def story() -> Story:
    return Story()


def momo(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """A `momo` command as the owner runs it, with the stack's environment."""
    return subprocess.run(
        [str(VENV_BIN / "momo"), *args],
        cwd=stack.workdir,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def payment(stack: Stack, code: str, status: str = "associated") -> dict[str, Any]:
    found = stack.api("GET", "/payments", params={"q": code, "status": status})
    assert found.status_code == 200, found.text
    (item,) = [p for p in found.json()["items"] if p["code"] == code]
    return dict(item)


def nairobi_day(moment: datetime) -> date:
    return moment.astimezone(NAIROBI).date()


# --- 1. once: the C2B URLs and the pull are registered; a payment is credited -----------


def test_the_owner_registers_the_urls_and_the_pull_and_a_payment_is_credited(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    registered = momo(stack, "mpesa", "register-urls")

    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert "ConfirmationURL " + stack.base + "/webhooks/daraja/***/c2b/confirmation" in (
        registered.stdout
    )
    assert "Daraja registered them: 'Success'" in registered.stdout
    assert PATH_TOKEN not in registered.stdout + registered.stderr
    assert daraja.confirmation_url == f"{stack.base}/webhooks/daraja/{PATH_TOKEN}/c2b/confirmation"

    pulling = momo(stack, "mpesa", "pull", "register", "--nominated-number", NOMINATED_NUMBER)

    assert pulling.returncode == 0, pulling.stdout + pulling.stderr
    assert f"shortcode {daraja.shortcode} is registered for pulling" in pulling.stdout
    assert daraja.pull_registered
    assert daraja.pull_callback_url == f"{stack.base}/webhooks/daraja/{PATH_TOKEN}/pull"

    stack.add_customer("STORY-A", "0712 300 001")
    paid = daraja.pay_bill("1500", "254712300001", "STORY-A")
    assert daraja.deliveries[-1].status == 200
    story.paid[paid.receipt] = ("STORY-A", "1500.00")

    wait_until(lambda: stack.balance("STORY-A") == "1500.00", timeout=20)


# --- 2. a lost confirmation is credited at beat's next pull -----------------------------


def test_a_payment_whose_confirmation_was_lost_is_credited_after_the_next_pull(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    stack.add_customer("STORY-B", "0712300002")
    lost = daraja.pay_bill("450", "254712300002", "STORY-B", deliver=False)
    story.paid[lost.receipt] = ("STORY-B", "450.00")
    time.sleep(2)  # room for a confirmation to be worked, were one posted
    assert stack.balance("STORY-B") == "0.00"

    # beat pulls every minute: the first a minute after it started
    wait_until(lambda: stack.balance("STORY-B") == "450.00", timeout=150, interval=1)

    item = payment(stack, lost.receipt)
    assert (item["channel"], item["account_number"]) == ("pull", "STORY-B")
    assert "momo.pull_payments" in stack.log("beat")
    assert stack.balance("STORY-A") == "1500.00"  # listed too, and a duplicate


# --- 3. a statement recovers a payment older than Daraja's 48 hours ---------------------


def test_a_statement_recovers_a_payment_older_than_darajas_48_hours(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    stack.add_customer("STORY-F", "0712300006")
    old_day = datetime.now(NAIROBI).date() - timedelta(days=3)
    paid_at = datetime(old_day.year, old_day.month, old_day.day, 10, 15, 30, tzinfo=NAIROBI)
    old = daraja.pay_bill("2750", "254712300006", "STORY-F", deliver=False, paid_at=paid_at)
    story.old_day, story.old_receipt = old_day, old.receipt

    # Daraja no longer lists it: a pull that far back is refused before asking
    since = (paid_at - timedelta(hours=1)).isoformat()
    too_old = momo(stack, "mpesa", "pull", "--since", since)
    assert too_old.returncode == 1, too_old.stdout + too_old.stderr
    assert "import-statement" in too_old.stderr, too_old.stderr

    stamp = old_day.strftime("%d-%m-%Y")
    statement = stack.workdir / "statement.csv"
    statement.write_text(
        '"Organisation Name:","MOMO DEMO LTD"\n'
        f'"Time Period:","From {stamp} 00:00:00 To {stamp} 23:59:59"\n'
        "\n"
        '"Receipt No.","Completion Time","Initiation Time","Details","Transaction Status",'
        '"Paid In","Withdrawn","Balance","Other Party Info","A/C No."\n'
        f'"{old.receipt}","{paid_at:%Y-%m-%d %H:%M:%S}","{paid_at:%Y-%m-%d %H:%M:%S}",'
        '"Pay Bill Online","Completed","2,750.00","","102,750.00",'
        '"254712300006 - JOHN DOE","STORY-F"\n'
        f'"{old.receipt[:-1]}X","{paid_at:%Y-%m-%d} 10:16:00","{paid_at:%Y-%m-%d} 10:16:00",'
        '"Pay Bill Charge","Completed","","-27.50","102,722.50","",""\n',
        encoding="utf-8",
    )

    imported = momo(stack, "mpesa", "import-statement", str(statement))

    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "seen 1 payments: already known 0, recovered 1 (credited 1," in imported.stdout
    assert "skipped 1 withdrawals and charges" in imported.stdout
    assert stack.balance("STORY-F") == "2750.00"
    item = payment(stack, old.receipt)
    assert item["channel"] == "statement"

    again = momo(stack, "mpesa", "import-statement", str(statement))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already known 1, recovered 0" in again.stdout
    assert stack.balance("STORY-F") == "2750.00"


# --- 4. manual entries: one its late callback confirms, one invented --------------------


def test_a_manual_entry_is_confirmed_by_its_late_callback_and_found_by_the_payers_phone(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    stack.add_customer("STORY-C", "0712300003")
    # paid from a relative's phone, and the confirmation is lost
    paid = daraja.pay_bill("800", "254733300033", "STORY-C", deliver=False, first_name="AMINA")
    story.paid[paid.receipt] = ("STORY-C", "800.00")
    # the customer shows the SMS; the operator enters it under its receipt
    entered = stack.api(
        "POST",
        "/payments",
        json={
            "account_number": "STORY-C",
            "amount": "800.00",
            "reference": paid.receipt,
            "note": "customer showed the M-PESA SMS",
        },
    )
    assert entered.status_code == 201, entered.text
    story.manual_id = entered.json()["id"]
    assert entered.json()["confirmed_by"] is None
    assert stack.balance("STORY-C") == "800.00"
    unconfirmed = stack.api("GET", "/payments", params={"confirmed": "false"}).json()["items"]
    assert [p["code"] for p in unconfirmed] == [paid.receipt]
    before = stack.api("GET", "/payments", params={"q": "0733300033"}).json()["items"]
    assert before == []

    late = daraja.deliver_confirmation(paid.receipt)  # M-PESA's confirmation, late
    assert late.status == 200

    def confirmed() -> dict[str, Any] | None:
        item: dict[str, Any] = stack.api("GET", f"/payments/{story.manual_id}").json()
        return item if item["confirmed_by"] else None

    item = wait_until(confirmed, timeout=20)
    assert item["confirmed_by"] == "callback"
    assert item["confirmed_at"] is not None
    assert (item["channel"], item["phone"]) == ("manual", "+254733300033")
    assert item["account_number"] == "STORY-C"
    time.sleep(1)  # the callback credited nothing more
    assert stack.balance("STORY-C") == "800.00"
    by_phone = stack.api("GET", "/payments", params={"q": "0733 300 033"}).json()["items"]
    assert [p["id"] for p in by_phone] == [story.manual_id]
    assert stack.api("GET", "/payments", params={"confirmed": "false"}).json()["items"] == []


def test_a_manual_entry_under_an_invented_receipt_stays_listed_as_unconfirmed(
    stack: Stack, story: Story
) -> None:
    stack.add_customer("STORY-D", "0712300004")
    entered = stack.api(
        "POST",
        "/payments",
        json={"account_number": "STORY-D", "amount": "300.00", "reference": INVENTED},
    )
    assert entered.status_code == 201, entered.text
    story.invented_id = entered.json()["id"]
    story.paid[INVENTED] = ("STORY-D", "300.00")
    assert stack.balance("STORY-D") == "300.00"

    listed = stack.api("GET", "/payments", params={"confirmed": "false"})

    assert listed.status_code == 200, listed.text
    assert [(p["id"], p["code"]) for p in listed.json()["items"]] == [(story.invented_id, INVENTED)]


# --- 5. a reversal debits once, though its result is posted twice -----------------------


def test_a_reversal_debits_the_customer_once_though_its_result_comes_twice(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    stack.add_customer("STORY-E", "0712300005")
    paid = daraja.pay_bill("700", "254712300005", "STORY-E")
    story.paid[paid.receipt] = ("STORY-E", "700.00")
    wait_until(lambda: stack.balance("STORY-E") == "700.00", timeout=20)
    story.reversed_id = payment(stack, paid.receipt)["id"]

    daraja.result_copies = 2  # M-PESA posts the result twice
    try:
        asked = stack.api(
            "POST",
            f"/payments/{story.reversed_id}/reversal",
            json={"note": "paid to the wrong paybill"},
            headers={"Idempotency-Key": "story-reversal-1"},
        )
        assert asked.status_code == 202, asked.text
        assert asked.json()["reversal"]["status"] == "sent"
        conversation = asked.json()["reversal"]["conversation_id"].encode()
        wait_until(
            lambda: (
                [
                    d.status
                    for d in daraja.deliveries
                    if d.url.endswith("/reversal/result") and conversation in d.body
                ]
                == [200, 200]
            )
        )
    finally:
        daraja.result_copies = 1

    def reversed_state() -> dict[str, Any] | None:
        state: dict[str, Any] = stack.api("GET", f"/payments/{story.reversed_id}/reversal").json()
        return state if state["reversal"]["status"] == "reversed" else None

    state = wait_until(reversed_state)
    time.sleep(1.5)  # the second result has been worked too
    assert state["payment"]["reversal_receipt"] == daraja.c2b[paid.receipt].reversed_by
    assert stack.balance("STORY-E") == "0.00"
    entries = stack.api("GET", "/customers/STORY-E/transactions").json()["items"]
    assert sorted(e["amount"] for e in entries) == ["-700.00", "700.00"]
    assert len(daraja.calls(REVERSAL)) == 1


# --- 6. momo reconcile ----------------------------------------------------------------


def reconcile(
    stack: Stack, first: date, last: date, *extra: str
) -> subprocess.CompletedProcess[str]:
    return momo(stack, "reconcile", "--from", first.isoformat(), "--to", last.isoformat(), *extra)


def story_days(daraja: DarajaFake, story: Story) -> tuple[date, date]:
    """From the day of the story's first payment to today (the story may cross midnight)."""
    first = min(nairobi_day(daraja.c2b[code].paid_at) for code in story.paid if code in daraja.c2b)
    return first, datetime.now(NAIROBI).date()


def test_reconcile_names_the_unconfirmed_entry_and_what_was_not_read_and_exits_1(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    first, last = story_days(daraja, story)

    report = reconcile(stack, first, last)

    assert report.returncode == 1, report.stdout + report.stderr
    out = report.stdout
    assert "1 entered by hand, confirmed by no provider record" in out, out
    (line,) = [row for row in out.splitlines() if INVENTED in row]
    assert "300.00" in line and "STORY-D" in line and f"payment {story.invented_id}" in line
    assert "NOT READ from " in out  # beat's last pull to the end of today
    assert "UNEXPLAINED:" in out
    assert "reversed on the provider's word" in out
    # the lost confirmation, recovered by the pull, needs nothing
    (lost,) = [c for c, (account, _) in story.paid.items() if account == "STORY-B"]
    assert f"{lost}  450.00" in out


def test_after_a_pull_by_hand_every_shilling_of_the_difference_is_a_listed_entry(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    first, last = story_days(daraja, story)
    # README: a span not read within 48 hours is pulled by hand
    pulled = momo(stack, "mpesa", "pull", "--since", f"{first.isoformat()}T00:00")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert "recovered 0" in pulled.stdout

    shown = reconcile(stack, first, last, "--json")

    assert shown.returncode == 1, shown.stdout + shown.stderr
    report = json.loads(shown.stdout)
    assert report["explained"] is False
    assert [(i["code"], i["amount"]) for i in report["unconfirmed_manual"]] == [
        (INVENTED, "300.00")
    ]
    assert report["missing_in_momo"] == []
    assert report["missing_from_provider"] == []
    assert report["conflicts"] == []
    assert report["reversals_not_applied"] == []
    # only what lies ahead of now today is unread
    (gap,) = report["not_covered"]
    assert datetime.fromisoformat(gap["to"]) == datetime(
        last.year, last.month, last.day, tzinfo=NAIROBI
    ) + timedelta(days=1)
    assert [i["payment_id"] for i in report["reversed"]] == [story.reversed_id]
    # momo's minus the provider's is the invented entry, to the cent
    difference = sum(Decimal(day["difference"]) for day in report["days"])
    assert difference == Decimal("300.00")
    # the totals agree with the balances: what was paid in, less what was reversed
    momo_side = report["totals"]["momo"]
    balances = sum(Decimal(stack.balance(account)) for account, _ in story.paid.values())
    assert Decimal(momo_side["amount"]) - Decimal(momo_side["reversed"]) == balances
    assert Decimal(momo_side["amount"]) == sum(Decimal(amount) for _, amount in story.paid.values())
    assert Decimal(momo_side["reversed"]) == Decimal("700.00")
    assert momo_side["count"] == len(story.paid)

    api = stack.api(
        "GET", "/reconciliation", params={"from": first.isoformat(), "to": last.isoformat()}
    )
    assert api.status_code == 200, api.text
    assert api.json()["totals"] == report["totals"]
    assert api.json()["unconfirmed_manual"] == report["unconfirmed_manual"]


def test_a_day_where_everything_agrees_exits_0_and_says_so(stack: Stack, story: Story) -> None:
    assert story.old_day is not None
    day = story.old_day

    report = reconcile(stack, day, day)

    assert report.returncode == 0, report.stdout + report.stderr
    assert "explained: every payment on both sides is accounted for" in report.stdout
    assert "NOT READ" not in report.stdout
    assert f"provider's record read from {day.isoformat()}T00:00:00+03:00" in report.stdout

    shown = reconcile(stack, day, day, "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    totals = json.loads(shown.stdout)["totals"]
    assert (
        totals["provider"]
        == totals["momo"]
        == {
            "count": 1,
            "amount": stack.balance("STORY-F"),
            "reversed": "0.00",
        }
    )
    (recovered,) = json.loads(shown.stdout)["recovered"]
    assert (recovered["code"], recovered["source"]) == (story.old_receipt, "statement")


# --- 7. the owner checks the invented receipt, and does what the report says -----------


def test_a_lookup_of_the_invented_receipt_finds_no_payment(stack: Stack, story: Story) -> None:
    asked = stack.api("POST", "/payments/lookup", json={"code": INVENTED})
    assert asked.status_code == 202, asked.text

    def settled() -> dict[str, Any] | None:
        item: dict[str, Any] = stack.api("GET", f"/lookups/{asked.json()['id']}").json()
        return item if item["status"] not in ("pending", "sent") else None

    found = wait_until(settled)

    assert (found["status"], found["payment_id"]) == ("not_found", None)
    assert stack.api("GET", f"/payments/{story.invented_id}").json()["confirmed_by"] is None


def test_an_invented_entry_disassociated_as_the_report_advises_is_explained(
    stack: Stack, daraja: DarajaFake, story: Story
) -> None:
    undone = stack.api(
        "POST",
        f"/payments/{story.invented_id}/disassociate",
        json={"reason": "no such M-PESA payment: the receipt was made up"},
    )
    assert undone.status_code == 200, undone.text
    assert stack.balance("STORY-D") == "0.00"
    first, last = story_days(daraja, story)

    shown = reconcile(stack, first, last, "--json")

    report = json.loads(shown.stdout)
    assert report["unconfirmed_manual"] == []
    assert [line["payment_id"] for line in report["set_aside"]] == [story.invented_id]
    assert sum(Decimal(day["difference"]) for day in report["days"]) == 0
