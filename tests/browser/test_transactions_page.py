"""The console's Transactions page, in Chromium, against a seeded `momo serve`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import PATH_TOKEN, Seeded, Shots, press_more, sign_in
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.browser

HEADERS = ["When", "Kind", "Status", "Account", "Amount", "Code", "Phone", "Note"]
KINDS = {
    "payment_credit": "Payment received",
    "manual_payment": "Payment made by hand",
    "disassociation": "Disassociation",
    "purchase": "Purchase",
    "failed_attempt": "Failed attempt",
}
#: the seeded callbacks' three credits, one payment by hand, one purchase, one
#: disassociation and two STK attempts (one cancelled by the payer, one failed)
EVERY_ROW = 8


def stk_result(seeded: Seeded, reference: str, code: int, words: str) -> None:
    """An M-PESA Express result for a push, as Daraja posts it: a non-zero ResultCode
    moves no money and is kept as a failed attempt (1032: the payer cancelled)."""
    body = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-2",
                "CheckoutRequestID": reference,
                "ResultCode": code,
                "ResultDesc": words,
            }
        }
    }
    url = f"{seeded.server.base}/webhooks/daraja/{PATH_TOKEN}/stk"
    answer = requests.post(url, json=body, timeout=30)
    assert answer.status_code == 200, answer.text


def log(seeded: Seeded, **params: str) -> list[dict[str, Any]]:
    answer = seeded.server.api(seeded.tokens["viewer"], "GET", "/transactions", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


@pytest.fixture
def busy(seeded: Seeded) -> Seeded:
    """The seed, plus a payment by hand, a purchase, a disassociation and two failed STK
    attempts: every kind of row the log has."""
    server, admin, operator = seeded.server, seeded.tokens["admin"], seeded.tokens["operator"]
    seeded.hand_payments(1)
    plan = {"code": "DAY-1GB", "name": "1 GB, 24 hours", "price": "50.00", "validity_minutes": 1440}
    assert server.api(admin, "POST", "/plans", json=plan).status_code == 201
    bought = server.api(operator, "POST", "/customers/ACC1042/purchases", json={"plan": "DAY-1GB"})
    assert bought.status_code == 201, bought.text
    first = seeded.payment("TKQ0000001")
    undone = server.api(operator, "POST", f"/payments/{first['id']}/disassociate", json={})
    assert undone.status_code == 200, undone.text
    stk_result(seeded, "ws_CO_CANCELLED0001", 1032, "Request cancelled by user")
    stk_result(seeded, "ws_CO_FAILED000002", 1, "The balance is insufficient for the transaction")
    wait_until(lambda: len(log(seeded)) == EVERY_ROW)
    return seeded


def open_log(page: Page, seeded: Seeded, role: str = "viewer") -> None:
    sign_in(page, seeded.server, seeded.tokens[role])
    page.get_by_role("link", name="Transactions").click()
    expect(page.locator("#transactions-title")).to_be_visible()


def log_on(page: Page) -> Any:
    """The Transactions page (the hidden Payments page has a search box too)."""
    return page.locator("#transactions")


def rows(page: Page) -> Any:
    return page.locator("#tx-table tbody tr")


def cells(page: Page, name: str) -> Any:
    return page.locator(f'#tx-table tbody td[data-label="{name}"]')


def column(page: Page, name: str) -> list[str]:
    return [text.strip() for text in cells(page, name).all_inner_texts()]


def nairobi_today() -> datetime:
    return datetime.now(ZoneInfo("Africa/Nairobi"))


class TestTheLog:
    def test_every_kind_is_listed_newest_first_with_failed_and_cancelled_attempts_marked(
        self, busy: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        open_log(page, busy)

        expect(rows(page)).to_have_count(EVERY_ROW)
        headers = [h.strip() for h in page.locator("#tx-table thead th").all_inner_texts()]
        assert headers == HEADERS
        api = log(busy)
        assert column(page, "Kind") == [KINDS[t["kind"]] for t in api]
        assert set(column(page, "Kind")) == set(KINDS.values())

        cancelled = rows(page).filter(has_text="ws_CO_CANCELLED0001")
        expect(cancelled).to_have_class("tx-cancelled")
        expect(cancelled.locator('td[data-label="Status"]')).to_have_text("Cancelled")
        expect(cancelled.locator('td[data-label="Note"]')).to_have_text(
            "Request cancelled by user (result 1032)"
        )
        failed = rows(page).filter(has_text="ws_CO_FAILED000002")
        expect(failed).to_have_class("tx-failed")
        expect(failed.locator('td[data-label="Status"]')).to_have_text("Failed")

        purchase = rows(page).filter(has_text="Purchase")
        expect(purchase.locator('td[data-label="Amount"]')).to_have_text("-KES\u00a050.00")
        expect(purchase.locator('td[data-label="Account"]')).to_have_text("ACC1042")
        undone = rows(page).filter(has_text="Disassociation")
        expect(undone.locator('td[data-label="Amount"]')).to_have_text("-KES\u00a0100.00")
        expect(undone.locator('td[data-label="Code"]')).to_have_text("TKQ0000001")
        credit = rows(page).filter(has_text="TKQ4A91B2C")
        expect(credit.locator('td[data-label="Amount"]')).to_have_text("+KES\u00a01,500.00")
        expect(credit.locator('td[data-label="Phone"]')).to_have_text("+254712345678")
        # the time is the business's (Nairobi), not the browser's (New York)
        stamp = next(t for t in api if t["code"] == "TKQ4A91B2C")["at"]
        local = datetime.fromisoformat(stamp).astimezone(ZoneInfo("Africa/Nairobi"))
        expect(credit.locator('td[data-label="When"]')).to_have_text(
            f"{local.day} {local:%b %Y, %H:%M}"
        )
        shot(page, "transactions")

    def test_more_pages_on_through_the_cursor(self, seeded: Seeded, context: Any) -> None:
        seeded.hand_payments(50)
        page = context.new_page()
        open_log(page, seeded)
        expect(rows(page)).to_have_count(50)
        more = page.get_by_role("button", name="More")
        expect(more).to_be_visible()

        press_more(page, more)

        expect(rows(page)).to_have_count(53)
        expect(more).to_be_hidden()
        ids = page.locator("#tx-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)")
        assert ids == [t["id"] for t in log(seeded, limit="100")]


class TestFilters:
    def test_kind_and_status_narrow_the_log_and_stay_in_the_address(
        self, busy: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        open_log(page, busy)
        expect(rows(page)).to_have_count(EVERY_ROW)

        log_on(page).get_by_label("Kind").select_option("purchase")
        expect(cells(page, "Kind")).to_have_text(["Purchase"])
        assert "kind%3Dpurchase" in page.url

        log_on(page).get_by_label("Kind").select_option("failed_attempt")
        expect(rows(page)).to_have_count(2)
        log_on(page).get_by_label("Status").select_option("cancelled")
        expect(cells(page, "Code")).to_have_text(["ws_CO_CANCELLED0001"])
        shot(page, "cancelled")

        log_on(page).get_by_label("Kind").select_option("")
        log_on(page).get_by_label("Status").select_option("failed")
        expect(cells(page, "Code")).to_have_text(["ws_CO_FAILED000002"])

        log_on(page).get_by_label("Status").select_option("completed")
        expect(rows(page)).to_have_count(EVERY_ROW - 2)
        assert "Failed attempt" not in column(page, "Kind")

        # the address keeps the filters: a reload shows the same list
        log_on(page).get_by_label("Kind").select_option("disassociation")
        expect(rows(page)).to_have_count(1)
        page.reload()
        expect(log_on(page).get_by_label("Kind")).to_have_value("disassociation")
        expect(log_on(page).get_by_label("Status")).to_have_value("completed")
        expect(cells(page, "Code")).to_have_text(["TKQ0000001"])

        page.get_by_role("button", name="Clear filters").click()
        expect(rows(page)).to_have_count(EVERY_ROW)

    def test_account_narrows_the_log_to_one_customer(self, busy: Seeded, context: Any) -> None:
        page = context.new_page()
        open_log(page, busy)
        expect(rows(page)).to_have_count(EVERY_ROW)

        log_on(page).get_by_label("Account").fill("acc2001")
        log_on(page).get_by_label("Account").press("Enter")

        expect(cells(page, "Account")).to_have_text(["ACC2001"])
        assert column(page, "Kind") == ["Payment made by hand"]

    def test_dates_are_the_business_s_days_and_narrow_the_log(
        self, busy: Seeded, context: Any
    ) -> None:
        today = nairobi_today().date()
        tomorrow, yesterday = today + timedelta(days=1), today - timedelta(days=1)
        page = context.new_page()
        open_log(page, busy)
        expect(rows(page)).to_have_count(EVERY_ROW)

        log_on(page).get_by_label("From").fill(tomorrow.isoformat())
        expect(page.locator("#tx-empty")).to_be_visible()
        expect(rows(page)).to_have_count(0)

        log_on(page).get_by_label("From").fill(today.isoformat())
        expect(rows(page)).to_have_count(EVERY_ROW)

        log_on(page).get_by_label("From").fill("")
        log_on(page).get_by_label("To (including)").fill(yesterday.isoformat())
        expect(rows(page)).to_have_count(0)

        # "To" includes its own day: the API is asked up to the next local midnight
        with page.expect_request("**/api/v1/transactions?*") as asked:
            log_on(page).get_by_label("To (including)").fill(today.isoformat())
        assert f"to={tomorrow.isoformat()}" in asked.value.url
        expect(rows(page)).to_have_count(EVERY_ROW)


class TestKeyboard:
    def test_the_filters_work_from_the_keyboard(self, busy: Seeded, context: Any) -> None:
        page = context.new_page()
        open_log(page, busy)
        expect(rows(page)).to_have_count(EVERY_ROW)

        log_on(page).get_by_label("Kind").focus()
        page.keyboard.press("ArrowDown")
        expect(cells(page, "Kind")).to_have_text(["Payment received"] * 3)
        # Status, the dates (a stop for each of their parts) and Account come first
        search = log_on(page).get_by_label("Search")
        for _ in range(12):
            page.keyboard.press("Tab")
            if search.evaluate("box => box === document.activeElement"):
                break
        expect(search).to_be_focused()
        page.keyboard.type("TKQ4A91B2C")
        page.keyboard.press("Enter")
        expect(cells(page, "Code")).to_have_text(["TKQ4A91B2C"])

        page.keyboard.press("Tab")
        expect(log_on(page).get_by_role("button", name="Clear filters")).to_be_focused()
        page.keyboard.press("Enter")
        expect(rows(page)).to_have_count(EVERY_ROW)
        expect(log_on(page).get_by_label("Kind")).to_be_focused()


class TestRefusals:
    def test_a_filter_the_api_refuses_is_shown_in_its_words(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        open_log(page, seeded)
        expect(rows(page)).to_have_count(3)

        log_on(page).get_by_label("Search").fill("7" * 101)
        log_on(page).get_by_label("Search").press("Enter")

        alert = page.locator("#tx-error")
        expect(alert).to_have_text(
            "The transactions could not be loaded: q must be at most 100 characters"
        )
        expect(alert).to_have_attribute("role", "alert")
        expect(rows(page)).to_have_count(0)
        shot(page, "refused")

        log_on(page).get_by_label("Search").fill("TKQ4A91B2C")
        log_on(page).get_by_label("Search").press("Enter")
        expect(alert).to_be_hidden()
        expect(rows(page)).to_have_count(1)

    def test_from_after_to_is_refused_in_the_api_s_words(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        open_log(page, seeded)
        expect(rows(page)).to_have_count(3)

        log_on(page).get_by_label("From").fill("2025-11-05")
        log_on(page).get_by_label("To (including)").fill("2025-11-04")

        alert = page.locator("#tx-error")
        expect(alert).to_have_text("The transactions could not be loaded: from must be before to")
        expect(rows(page)).to_have_count(0)

        # To includes its own day: From and To on one day is that day, not refused
        log_on(page).get_by_label("To (including)").fill("2025-11-05")
        expect(alert).to_be_hidden()


class TestPhone:
    def test_a_phone_width_reads_without_sideways_scrolling(
        self, busy: Seeded, phone: Any, shot: Shots
    ) -> None:
        page = phone.new_page()
        open_log(page, busy)
        expect(rows(page)).to_have_count(EVERY_ROW)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        label = page.evaluate(
            "getComputedStyle(document.querySelector('#tx-table tbody td'), '::before').content"
        )
        assert label == '"When"'
        shot(page, "phone")
