"""The console's frame: the page bar, one address per page, and loading more on scroll."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Seeded, Shots, c2b, pump_until, sign_in

pytestmark = pytest.mark.browser

PAGES = ["Dashboard", "Payments", "Customers", "Transactions", "Payment requests"]


def nav(page: Any) -> Any:
    return page.get_by_role("navigation", name="Pages")


def test_the_page_bar_opens_each_page_and_marks_the_one_shown(
    seeded: Seeded, context: Any, shot: Shots
) -> None:
    page = context.new_page()
    sign_in(page, seeded.server, seeded.tokens["viewer"])
    bar = nav(page)
    assert bar.get_by_role("link").all_inner_texts() == PAGES
    expect(bar.get_by_role("link", name="Payments")).to_have_attribute("aria-current", "page")

    for name, section in (
        ("Customers", "#customers"),
        ("Transactions", "#transactions"),
        ("Dashboard", "#dashboard"),
        ("Payment requests", "#requests"),
        ("Payments", "#payments"),
    ):
        bar.get_by_role("link", name=name).click()
        expect(page.locator(section)).to_be_visible()
        # one page at a time
        expect(page.locator("main > section:visible")).to_have_count(1)
        expect(bar.locator("[aria-current=page]")).to_have_text(name)
    expect(page.locator("#payments-table tbody tr")).to_have_count(3)
    shot(page, "bar")


def test_an_address_opens_its_page_after_a_reload_and_an_unknown_one_opens_payments(
    seeded: Seeded, context: Any
) -> None:
    page = context.new_page()
    sign_in(page, seeded.server, seeded.tokens["viewer"])

    page.goto(f"{seeded.server.base}/console#/transactions")
    page.reload()
    # the tab kept its token: no sign-in, straight to the page the address names
    expect(page.locator("#transactions")).to_be_visible()
    expect(page.locator("#sign-in")).to_be_hidden()

    page.goto(f"{seeded.server.base}/console#/nothing-here")
    expect(page.locator("#payments")).to_be_visible()
    expect(nav(page).locator("[aria-current=page]")).to_have_text("Payments")

    # an address that is not properly encoded is not a blank page either
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{seeded.server.base}/console#/customers/ACC%ZZ")
    page.reload()
    expect(page.locator("#payments")).to_be_visible()
    expect(nav(page).locator("[aria-current=page]")).to_have_text("Payments")
    assert errors == []


def test_the_keyboard_reaches_every_page(seeded: Seeded, context: Any) -> None:
    page = context.new_page()
    sign_in(page, seeded.server, seeded.tokens["viewer"])
    nav(page).get_by_role("link", name="Dashboard").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#customers")).to_be_visible()
    expect(page.locator("#payments")).to_be_hidden()


def test_signing_out_hides_the_bar_and_every_page(seeded: Seeded, context: Any) -> None:
    page = context.new_page()
    sign_in(page, seeded.server, seeded.tokens["viewer"])
    nav(page).get_by_role("link", name="Customers").click()
    expect(page.locator("#customers")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()

    expect(page.locator("#sign-in")).to_be_visible()
    expect(nav(page)).to_be_hidden()
    expect(page.locator("main > section:visible")).to_have_count(1)


def test_scrolling_to_the_end_of_the_payments_loads_the_next_page(
    seeded: Seeded, context: Any
) -> None:
    seeded.hand_payments(50)
    page = context.new_page()
    sign_in(page, seeded.server, seeded.tokens["viewer"])
    rows = page.locator("#payments-table tbody tr")
    expect(rows).to_have_count(50)
    # nothing is loaded before the end of the list is in view
    page.wait_for_timeout(300)
    expect(rows).to_have_count(50)

    page.mouse.wheel(0, 100_000)

    expect(rows).to_have_count(53)
    expect(page.get_by_role("button", name="More")).to_be_hidden()


def test_the_link_of_the_page_shown_reads_it_again(seeded: Seeded, context: Any) -> None:
    page = context.new_page()
    sign_in(page, seeded.server, seeded.tokens["viewer"])
    bar = nav(page)
    bar.get_by_role("link", name="Payments").click()
    expect(page.locator("#payments-table tbody tr")).to_have_count(3)
    page.evaluate("window.sameDocument = true")
    seeded.server.callback(
        c2b("TKQ0000009", "20251106090000", "40.00", "ACC1042", "254712345678", "WANJIKU")
    )
    pump_until(page, lambda: seeded.count("associated") == 4)

    bar.get_by_role("link", name="Payments").click()

    expect(page.locator("#payments-table tbody tr")).to_have_count(4)
    expect(page.locator("#payments-table tbody tr").first).to_contain_text("TKQ0000009")
    assert page.evaluate("window.sameDocument") is True
