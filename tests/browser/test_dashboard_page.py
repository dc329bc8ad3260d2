"""The console's Dashboard page, in Chromium, against a seeded `momo serve`: every figure
it shows is the API's."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Seeded, Shots, c2b, sign_in
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.browser

NAIROBI = ZoneInfo("Africa/Nairobi")
CARDS = ("today", "this_week", "this_month", "all_time", "unassociated_total")


def money(amount: str) -> str:
    """format.js money(): "1500.00" -> "KES 1,500.00", with a no-break space."""
    whole, fraction = amount.split(".")
    return f"KES\u00a0{int(whole):,}.{fraction}"


def revenue(seeded: Seeded, **params: str) -> dict[str, Any]:
    answer = seeded.server.api(
        seeded.tokens["viewer"], "GET", "/dashboard/revenue", params={"period": "day", **params}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def bar_label(bucket: dict[str, Any], period: str) -> str:
    """What a bar says: "3 Nov 2025: KES 1,500.00, 1 payment", in the business's days."""
    start = datetime.fromisoformat(bucket["start"]).astimezone(NAIROBI)
    # the console's dates are British English, as format.js dateTime(): "14 Sept 2026"
    short = "Sept" if start.month == 9 else f"{start:%b}"
    name = (
        f"{start:%B %Y}"
        if period == "month"
        else ("Week of " if period == "week" else "") + f"{start.day} {short} {start.year}"
    )
    count = bucket["count"]
    return f"{name}: {money(bucket['amount'])}, {count} payment{'' if count == 1 else 's'}"


def pay_now(seeded: Seeded, code: str, amount: str) -> None:
    """An M-PESA payment for ACC1042 paid this minute, Nairobi time."""
    when = datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S")
    seeded.server.callback(c2b(code, when, amount, "ACC1042", "254712345678", "WANJIKU"))


def board(page: Page) -> Any:
    return page.locator("#dashboard")


def open_dashboard(page: Page, seeded: Seeded) -> None:
    sign_in(page, seeded.server, seeded.tokens["viewer"])
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#dashboard-title")).to_be_visible()


def card(page: Page, name: str) -> Any:
    return page.locator(f'#dashboard [data-total="{name}"]')


def bars(page: Page) -> Any:
    return page.locator("#dashboard svg .chart-bucket")


def expect_chart(page: Page, answer: dict[str, Any]) -> None:
    """One bar per bucket of the API's series, each saying the API's amount and count, and
    the table beside it with the same figures."""
    labels = [bar_label(bucket, answer["period"]) for bucket in answer["series"]]
    expect(bars(page)).to_have_count(len(labels))
    assert bars(page).evaluate_all("gs => gs.map(g => g.getAttribute('aria-label'))") == labels
    assert page.locator("#dashboard svg .chart-bucket title").all_text_contents() == labels
    amounts = page.locator("#db-table tbody td:nth-of-type(1)").all_text_contents()
    assert amounts == [money(bucket["amount"]) for bucket in answer["series"]]


class TestCards:
    def test_every_card_is_the_api_s_figure_for_the_same_token(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        pay_now(seeded, "TKQ0000006", "500.00")
        wait_until(lambda: revenue(seeded)["today"] == "500.00")
        answer = revenue(seeded)
        page = context.new_page()
        open_dashboard(page, seeded)

        for name in CARDS:
            expect(card(page, name)).to_have_text(money(answer[name]))
        # the seed's three credits and today's payment; its two unassociated payments
        expect(card(page, "all_time")).to_have_text("KES\u00a02,350.00")
        expect(card(page, "unassociated_total")).to_have_text("KES\u00a0375.00")
        count = seeded.count("unassociated")
        assert count == 2
        expect(board(page).locator("#db-unassociated-count")).to_have_text("2 payments waiting")
        expect_chart(page, answer)
        expect(bars(page).last).to_have_attribute(
            "aria-label", bar_label(answer["series"][-1], "day")
        )
        assert "KES\u00a0500.00, 1 payment" in bar_label(answer["series"][-1], "day")
        shot(page, "dashboard")

    def test_a_new_payment_shows_after_going_away_and_back(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        open_dashboard(page, seeded)
        expect(card(page, "today")).to_have_text("KES\u00a00.00")
        expect(card(page, "all_time")).to_have_text("KES\u00a01,850.00")

        pay_now(seeded, "TKQ0000007", "1200.00")
        wait_until(lambda: revenue(seeded)["today"] == "1200.00")
        page.get_by_role("link", name="Payments").click()
        expect(page.locator("#payments-table tbody tr")).to_have_count(4)
        page.get_by_role("link", name="Dashboard").click()

        answer = revenue(seeded)
        expect(card(page, "today")).to_have_text("KES\u00a01,200.00")
        for name in CARDS:
            expect(card(page, name)).to_have_text(money(answer[name]))
        expect(bars(page).last).to_have_attribute(
            "aria-label", bar_label(answer["series"][-1], "day")
        )
        expect_chart(page, answer)


class TestChart:
    def test_day_week_and_month_each_draw_the_api_s_series(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        pay_now(seeded, "TKQ0000008", "40.00")
        wait_until(lambda: revenue(seeded)["today"] == "40.00")
        page = context.new_page()
        open_dashboard(page, seeded)
        day = board(page).get_by_role("button", name="Day")
        week = board(page).get_by_role("button", name="Week")
        month = board(page).get_by_role("button", name="Month")
        expect(day).to_have_attribute("aria-pressed", "true")
        expect_chart(page, revenue(seeded))

        week.click()
        expect(week).to_have_attribute("aria-pressed", "true")
        expect(day).to_have_attribute("aria-pressed", "false")
        weekly = revenue(seeded, period="week")
        expect(bars(page).first).to_have_attribute(
            "aria-label", bar_label(weekly["series"][0], "week")
        )
        expect_chart(page, weekly)
        shot(page, "week")

        month.click()
        expect(month).to_have_attribute("aria-pressed", "true")
        monthly = revenue(seeded, period="month")
        expect(bars(page).first).to_have_attribute(
            "aria-label", bar_label(monthly["series"][0], "month")
        )
        expect_chart(page, monthly)
        # the scale is labelled: nothing at the foot, a round amount at the top
        scale = page.locator("#dashboard svg .chart-scale").all_text_contents()
        assert scale[-1] == "KES\u00a00.00"
        assert scale[0] == "KES\u00a050.00"

    def test_the_seed_s_days_read_as_the_api_gives_them(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        open_dashboard(page, seeded)

        board(page).get_by_label("From", exact=True).fill("2025-11-01")
        board(page).get_by_label("To", exact=True).fill("2025-11-05")

        expect(bars(page)).to_have_count(5)
        answer = revenue(seeded, **{"from": "2025-11-01", "to": "2025-11-05"})
        expect_chart(page, answer)
        assert bars(page).evaluate_all("gs => gs.map(g => g.getAttribute('aria-label'))") == [
            "1 Nov 2025: KES\u00a0100.00, 1 payment",
            "2 Nov 2025: KES\u00a0250.00, 1 payment",
            "3 Nov 2025: KES\u00a01,500.00, 1 payment",
            "4 Nov 2025: KES\u00a00.00, 0 payments",
            "5 Nov 2025: KES\u00a00.00, 0 payments",
        ]
        assert "from%3D2025-11-01" in page.url

        # the table, there for screen readers, is shown to everyone on asking
        table = board(page).locator("#db-table")
        wrap = board(page).locator("#db-table-wrap")
        toggle = board(page).get_by_role("button", name="Show as table")
        expect(toggle).to_have_attribute("aria-expanded", "false")
        assert wrap.bounding_box()["height"] <= 1  # type: ignore[index]
        toggle.focus()
        page.keyboard.press("Enter")
        expect(board(page).get_by_role("button", name="Hide the table")).to_have_attribute(
            "aria-expanded", "true"
        )
        expect(table.locator("tbody tr")).to_have_count(5)
        assert wrap.bounding_box()["height"] > 100  # type: ignore[index]
        expect(table.locator("tbody tr").nth(2)).to_have_text("3 Nov 2025KES\u00a01,500.001")
        shot(page, "seed-days")

        # the address keeps the dates: a reload shows the same chart
        page.reload()
        expect(bars(page)).to_have_count(5)
        expect(board(page).get_by_label("From", exact=True)).to_have_value("2025-11-01")

    def test_dates_the_api_refuses_are_shown_in_its_words(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        open_dashboard(page, seeded)
        expect(bars(page)).to_have_count(30)
        # the seed was paid in 2025: the last 30 days are empty, and the page says so
        expect(board(page).locator("figcaption")).to_have_text(
            "No payments on these days: pick other dates above."
        )

        board(page).get_by_label("From", exact=True).fill("2025-11-05")
        board(page).get_by_label("To", exact=True).fill("2025-11-01")

        alert = board(page).get_by_role("alert")
        expect(alert).to_have_text("The revenue could not be loaded: from must not be after to")
        expect(bars(page)).to_have_count(0)

        board(page).get_by_label("From", exact=True).fill("2025-10-31")
        expect(alert).to_be_hidden()
        expect(bars(page)).to_have_count(2)
        expect(bars(page).last).to_have_attribute(
            "aria-label", "1 Nov 2025: KES\u00a0100.00, 1 payment"
        )
        expect(board(page).locator("figcaption")).to_have_count(0)


class TestPhone:
    def test_a_phone_reads_the_cards_and_the_chart_without_sideways_scrolling(
        self, seeded: Seeded, phone: Any, shot: Shots
    ) -> None:
        page = phone.new_page()
        open_dashboard(page, seeded)
        answer = revenue(seeded)
        for name in CARDS:
            expect(card(page, name)).to_have_text(money(answer[name]))
        expect(bars(page)).to_have_count(len(answer["series"]))
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        chart = page.locator("#dashboard svg").bounding_box()
        assert chart is not None and chart["width"] <= 390
        board(page).get_by_label("From", exact=True).fill("2025-11-01")
        board(page).get_by_label("To", exact=True).fill("2025-11-05")
        expect(bars(page)).to_have_count(5)
        assert (
            page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            <= 0
        )
        shot(page, "phone")
