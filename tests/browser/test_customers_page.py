"""The console's Customers pages, in Chromium, against a seeded `momo serve`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Seeded, Shots, press_more, pump_until, sign_in

pytestmark = pytest.mark.browser

LIST_HEADERS = ["Account", "Name", "Phones", "Balance"]


def kes(amount: str) -> str:
    """What the console shows for the API's ``amount``: "1850.00" -> "KES 1,850.00"."""
    sign = "-" if amount.startswith("-") else ""
    whole, fraction = amount.lstrip("-").split(".")
    return f"{sign}KES {int(whole):,}.{fraction}"


def rows(page: Page) -> Any:
    return page.locator("#customers-table tbody tr")


def accounts(page: Page) -> list[str]:
    return page.locator("#customers-table tbody tr td:nth-child(1)").all_inner_texts()


def search_box(page: Page) -> Any:
    return page.locator("#customers").get_by_label("Search")


def part(page: Page, name: str) -> Any:
    return page.locator(f"#customer-{name} tbody tr")


def open_customers(page: Page) -> None:
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Customers").click()
    expect(page.locator("#customers-title")).to_have_text("Customers")


def open_customer(page: Page, seeded: Seeded, account: str) -> None:
    """Sign in as an operator and open ``account``'s page from the list."""
    sign_in(page, seeded.server, seeded.tokens["operator"])
    open_customers(page)
    page.get_by_role("link", name=account, exact=True).click()
    expect(page.locator("#customer-balance")).to_be_visible()


def add_plans(seeded: Seeded) -> None:
    """Three plans on sale (one dearer than ACC1042's 1850.00) and one taken off sale."""
    admin = seeded.tokens["admin"]
    for code, name, price, minutes in (
        ("HOUR-100MB", "100 MB, 1 hour", "10.00", 60),
        ("DAY-1GB", "1 GB, 24 hours", "50.00", 1440),
        ("MONTH-50GB", "50 GB, 30 days", "2500.00", 43200),
        ("OLD-PLAN", "Retired plan", "5.00", 60),
    ):
        body = {"code": code, "name": name, "price": price, "validity_minutes": minutes}
        made = seeded.server.api(admin, "POST", "/plans", json=body)
        assert made.status_code == 201, made.text
    retired = seeded.server.api(admin, "PATCH", "/plans/OLD-PLAN", json={"active": False})
    assert retired.status_code == 200, retired.text


def purchases(seeded: Seeded, account: str) -> list[dict[str, Any]]:
    answer = seeded.server.api(seeded.tokens["admin"], "GET", f"/customers/{account}/purchases")
    return list(answer.json()["items"])


def customer(seeded: Seeded, account: str) -> dict[str, Any]:
    answer = seeded.server.api(seeded.tokens["admin"], "GET", f"/customers/{account}")
    return dict(answer.json())


def open_buy(page: Page) -> Any:
    page.get_by_role("button", name="Buy a plan").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("radio")).to_have_count(3)
    return dialog


class TestList:
    def test_every_customer_is_listed_with_their_balance_and_a_link_to_their_page(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_customers(page)

        expect(rows(page)).to_have_count(3)
        headers = page.locator("#customers-table thead th").all_inner_texts()
        assert [h.strip() for h in headers] == LIST_HEADERS
        assert accounts(page) == ["ACC1042", "ACC2001", "ACC2002"]
        first = rows(page).first.locator("td")
        expect(first.nth(1)).to_have_text("Wanjiku Kamau")
        expect(first.nth(2)).to_have_text("+254712345678")
        expect(first.nth(3)).to_have_text(kes(seeded.balance("ACC1042")))
        expect(page.get_by_role("button", name="New customer")).to_be_visible()
        shot(page, "customers")

        rows(page).nth(1).get_by_role("link", name="ACC2001").click()

        assert page.url.endswith("#/customers/ACC2001")
        expect(page.locator("#customers-title")).to_have_text("Otieno Shop")
        expect(page.locator("#customers-title")).to_be_focused()

    def test_more_brings_the_next_page(self, seeded: Seeded, context: Any) -> None:
        for n in range(50):
            made = seeded.server.api(
                seeded.tokens["operator"],
                "POST",
                "/customers",
                json={"account_number": f"ACC9{n:03d}", "name": f"Customer {n}"},
            )
            assert made.status_code == 201, made.text
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        open_customers(page)
        expect(rows(page)).to_have_count(50)

        press_more(page)

        expect(rows(page)).to_have_count(53)
        expect(page.get_by_role("button", name="More")).to_be_hidden()
        assert len(set(accounts(page))) == 53


def searches(seen: list[str]) -> list[str]:
    return [url for url in seen if "/api/v1/customers?" in url and "q=" in url]


class TestSearch:
    def test_search_narrows_to_the_customer_and_a_long_query_is_one_request(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        open_customers(page)
        expect(rows(page)).to_have_count(3)
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url) if "/api/v1/" in r.url else None)

        search_box(page).focus()
        # a key every 80 ms: no pause of 300 ms until the last one
        page.keyboard.type("Otieno Home", delay=80)

        expect(page.locator("#customers-search-status")).to_have_text("1 customer matches.")
        assert accounts(page) == ["ACC2002"]
        # any request for shorter text would have left before the one answered above
        assert len(seen) == 1, seen
        assert searches(seen) == seen and "q=Otieno+Home" in seen[0]
        shot(page, "search")

        # a phone, written as people write it: both customers who share it
        search_box(page).fill("0722 000 111")
        expect(page.locator("#customers-search-status")).to_have_text("2 customers match.")
        assert accounts(page) == ["ACC2001", "ACC2002"]

        search_box(page).fill("nobody at all")
        expect(page.get_by_text('No customer\'s account, name or phone matches "nobody at all".'))

        search_box(page).fill("")
        expect(rows(page)).to_have_count(3)

    def test_a_stale_answer_never_overwrites_a_newer_one(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        open_customers(page)
        expect(rows(page)).to_have_count(3)
        held: list[Any] = []
        page.route(
            lambda url: "/api/v1/customers?" in url and "q=" in url, lambda r: held.append(r)
        )
        box = search_box(page)

        box.fill("Otieno")
        pump_until(page, lambda: len(held) == 1)
        box.fill("wanj")
        pump_until(page, lambda: len(held) == 2)

        # the newer answer first, then the older one, late
        held[1].continue_()
        expect(page.locator("#customers-search-status")).to_have_text("1 customer matches.")
        with page.expect_event("requestfinished", lambda r: "q=Otieno" in r.url):
            held[0].continue_()
        # the late answer has been read: a task queued after it has run
        page.evaluate("() => new Promise((done) => setTimeout(done))")

        expect(page.locator("#customers-search-status")).to_have_text("1 customer matches.")
        assert accounts(page) == ["ACC1042"]


class TestCustomerPage:
    def test_a_customer_s_page_shows_the_api_s_balance_and_their_history(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        open_customer(page, seeded, "ACC1042")

        expect(page.locator("#customer-balance")).to_have_text(kes(seeded.balance("ACC1042")))
        expect(page.locator("#customers-title")).to_have_text("Wanjiku Kamau")
        expect(page.locator(".customer-facts")).to_contain_text("ACC1042")
        expect(page.locator(".customer-facts")).to_contain_text("+254712345678")
        expect(part(page, "payments")).to_have_count(3)
        codes = page.locator("#customer-payments tbody td:nth-child(2)").all_inner_texts()
        assert codes == ["TKQ4A91B2C", "TKQ0000002", "TKQ0000001"]
        expect(part(page, "transactions")).to_have_count(3)
        first = part(page, "transactions").first.locator("td")
        expect(first.nth(1)).to_have_text("Payment received")
        expect(first.nth(2)).to_have_text("+KES 1,500.00")
        expect(page.get_by_text("No vouchers bought yet.")).to_be_visible()
        shot(page, "customer")

    def test_another_customer_s_page_lists_only_their_own_payments(
        self, seeded: Seeded, context: Any
    ) -> None:
        seeded.hand_payments(2)
        page = context.new_page()
        open_customer(page, seeded, "ACC2001")

        expect(part(page, "payments")).to_have_count(2)
        expect(page.locator("#customer-balance")).to_have_text(kes(seeded.balance("ACC2001")))
        expect(part(page, "transactions").first.locator("td").nth(1)).to_have_text(
            "Payment made by hand"
        )

    def test_an_unknown_account_says_so_with_a_way_back(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])

        page.evaluate("location.hash = '#/customers/NO%20SUCH'")

        expect(page.get_by_role("alert")).to_have_text("No customer has account number NO SUCH.")
        shot(page, "unknown")
        page.get_by_role("link", name="All customers").click()
        expect(rows(page)).to_have_count(3)


class TestEdit:
    def test_a_refused_phone_shows_the_api_s_words_and_a_new_phone_is_saved(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        open_customer(page, seeded, "ACC1042")
        page.evaluate("window.sameDocument = true")
        edit = page.get_by_role("button", name="Edit name and phones")

        edit.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_label("Name")).to_be_focused()
        expect(dialog.get_by_label("Phones")).to_have_value("+254712345678")
        dialog.get_by_label("Phones").fill("0712345678, 12345")
        dialog.get_by_role("button", name="Save").click()

        refused = seeded.server.api(
            seeded.tokens["admin"],
            "PATCH",
            "/customers/ACC1042",
            json={"name": "Wanjiku Kamau", "phones": ["0712345678", "12345"]},
        )
        assert refused.status_code == 400, refused.text
        expect(dialog.get_by_role("alert")).to_have_text(refused.json()["detail"])
        expect(dialog).to_be_visible()
        shot(page, "refused-phone")

        # ALICE's unmatched 75.00 came from this phone: giving it to ACC1042 credits it
        dialog.get_by_label("Phones").fill("0712345678\n0733 999 888")
        dialog.get_by_role("button", name="Save").click()

        expect(dialog).to_be_hidden()
        expect(edit).to_be_focused()
        assert customer(seeded, "ACC1042")["phones"] == ["+254712345678", "+254733999888"]
        expect(page.locator(".customer-facts")).to_contain_text("+254712345678, +254733999888")
        expect(page.get_by_role("status")).to_contain_text("1 earlier payment from a new phone")
        expect(page.locator("#customer-balance")).to_have_text(kes(seeded.balance("ACC1042")))
        assert seeded.balance("ACC1042") == "1925.00"
        expect(part(page, "payments")).to_have_count(4)
        expect(part(page, "transactions")).to_have_count(4)
        assert page.evaluate("window.sameDocument") is True
        shot(page, "edited")


class TestNewCustomer:
    def test_a_duplicate_is_refused_in_the_api_s_words_and_a_new_one_lands_on_its_page(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_customers(page)

        page.get_by_role("button", name="New customer").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_label("Account number")).to_be_focused()
        dialog.get_by_label("Account number").fill("ACC1042")
        dialog.get_by_label("Name").fill("Wanjiru Njeri")
        dialog.get_by_label("Phones").fill("0711 222 333, +254 722 444 555")
        dialog.get_by_role("button", name="Create").click()

        duplicate = seeded.server.api(
            seeded.tokens["admin"],
            "POST",
            "/customers",
            json={"account_number": "ACC1042", "name": "Wanjiru Njeri"},
        )
        assert duplicate.status_code == 409, duplicate.text
        expect(dialog.get_by_role("alert")).to_have_text(duplicate.json()["detail"])
        shot(page, "duplicate")

        dialog.get_by_label("Account number").fill("ACC3001")
        dialog.get_by_label("Phones").fill("0711 222 333\n999")
        dialog.get_by_role("button", name="Create").click()
        bad_phone = seeded.server.api(
            seeded.tokens["admin"],
            "POST",
            "/customers",
            json={"account_number": "ACC3001", "name": "Wanjiru Njeri", "phones": ["999"]},
        )
        assert bad_phone.status_code == 400, bad_phone.text
        expect(dialog.get_by_role("alert")).to_have_text(bad_phone.json()["detail"])

        dialog.get_by_label("Phones").fill("0711 222 333, +254 722 444 555")
        dialog.get_by_role("button", name="Create").dblclick()

        expect(page.locator("#customers-title")).to_have_text("Wanjiru Njeri")
        assert page.url.endswith("#/customers/ACC3001")
        expect(page.get_by_role("status")).to_have_text(
            "Customer ACC3001 (Wanjiru Njeri) was created."
        )
        expect(page.locator("#customer-balance")).to_have_text("KES 0.00")
        made = customer(seeded, "ACC3001")
        assert made["name"] == "Wanjiru Njeri"
        assert made["phones"] == ["+254711222333", "+254722444555"]
        shot(page, "created")


class TestBuyPlan:
    def test_a_double_clicked_buy_buys_once_lowers_the_balance_and_lists_the_voucher(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        add_plans(seeded)
        page = context.new_page()
        open_customer(page, seeded, "ACC1042")
        page.evaluate("window.sameDocument = true")
        posts: list[Any] = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)

        dialog = open_buy(page)
        expect(dialog).to_contain_text("balance of KES 1,850.00")
        # by price; the plan off sale is not offered
        expect(dialog.get_by_role("radio").first).to_be_checked()
        expect(dialog).not_to_contain_text("Retired plan")
        day = dialog.get_by_role("radio", name=re.compile("^1 GB, 24 hours"))
        expect(day).to_have_accessible_description("DAY-1GB, valid 1 day")
        day.check()
        shot(page, "buy")
        dialog.get_by_role("button", name="Buy").dblclick()

        expect(dialog).to_be_hidden()
        expect(page.locator("#customer-balance")).to_have_text("KES 1,800.00")
        assert seeded.balance("ACC1042") == "1800.00"
        [bought] = purchases(seeded, "ACC1042")
        assert bought["plan"] == "DAY-1GB"
        expect(part(page, "purchases")).to_have_count(1)
        cells = part(page, "purchases").first.locator("td")
        expect(cells.nth(0)).to_have_text(bought["voucher_code"])
        expect(cells.nth(1)).to_have_text("DAY-1GB")
        expect(cells.nth(2)).to_have_text("KES 50.00")
        expect(page.get_by_role("status")).to_contain_text(
            f"Voucher {bought['voucher_code']} (DAY-1GB, KES 50.00) was bought"
        )
        expect(part(page, "transactions")).to_have_count(4)
        first = part(page, "transactions").first.locator("td")
        expect(first.nth(1)).to_have_text("Plan bought")
        expect(first.nth(2)).to_have_text("-KES 50.00")
        expect(first.nth(3)).to_have_text(f"Voucher {bought['voucher_code']}")
        assert [r.url for r in posts] == [
            f"{seeded.server.base}/api/v1/customers/ACC1042/purchases"
        ]
        assert posts[0].headers.get("idempotency-key")
        assert page.evaluate("window.sameDocument") is True
        shot(page, "bought")

        # each opening is a new purchase, with its own key
        dialog = open_buy(page)
        expect(dialog).to_contain_text("balance of KES 1,800.00")
        dialog.get_by_role("button", name="Buy").click()
        expect(page.locator("#customer-balance")).to_have_text("KES 1,790.00")
        assert len(purchases(seeded, "ACC1042")) == 2
        assert posts[1].headers.get("idempotency-key") != posts[0].headers.get("idempotency-key")

    def test_insufficient_balance_is_shown_as_the_api_words_it_and_changes_nothing(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        add_plans(seeded)
        page = context.new_page()
        open_customer(page, seeded, "ACC1042")

        dialog = open_buy(page)
        dialog.get_by_role("radio", name=re.compile("^50 GB, 30 days")).check()
        dialog.get_by_role("button", name="Buy").click()

        alert = dialog.get_by_role("alert")
        expect(alert).to_have_text("Insufficient balance: available 1850.00, required 2500.00")
        expect(dialog).to_be_visible()
        shot(page, "insufficient")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert seeded.balance("ACC1042") == "1850.00"
        assert purchases(seeded, "ACC1042") == []
        expect(page.locator("#customer-balance")).to_have_text("KES 1,850.00")
        expect(part(page, "purchases")).to_have_count(0)

    def test_keyboard_only_from_sign_in_to_a_purchase(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        add_plans(seeded)
        page = context.new_page()
        page.goto(f"{seeded.server.base}/console")
        expect(page.get_by_label("API token")).to_be_focused()
        page.keyboard.type(seeded.tokens["operator"])
        page.keyboard.press("Enter")
        expect(page.locator("#payments")).to_be_visible()

        def tab_to(target: Any) -> None:
            for _ in range(30):
                if target.evaluate("node => node === document.activeElement"):
                    break
                page.keyboard.press("Tab")
            expect(target).to_be_focused()

        tab_to(page.get_by_role("link", name="Customers"))
        page.keyboard.press("Enter")
        expect(rows(page)).to_have_count(3)
        tab_to(search_box(page))
        page.keyboard.type("wanj")
        expect(rows(page)).to_have_count(1)
        tab_to(page.get_by_role("link", name="ACC1042"))
        page.keyboard.press("Enter")
        expect(page.locator("#customers-title")).to_be_focused()

        buy = page.get_by_role("button", name="Buy a plan")
        tab_to(buy)
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog")
        cheapest = dialog.get_by_role("radio", name=re.compile("^100 MB"))
        expect(cheapest).to_be_focused()
        # Escape closes and gives the focus back; Enter opens again
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(buy).to_be_focused()
        page.keyboard.press("Enter")
        expect(cheapest).to_be_focused()
        page.keyboard.press("ArrowDown")
        expect(dialog.get_by_role("radio", name=re.compile("^1 GB"))).to_be_checked()
        tab_to(dialog.get_by_role("button", name="Buy"))
        shot(page, "keyboard")
        page.keyboard.press("Enter")

        expect(dialog).to_be_hidden()
        expect(buy).to_be_focused()
        expect(page.locator("#customer-balance")).to_have_text("KES 1,800.00")
        assert [p["plan"] for p in purchases(seeded, "ACC1042")] == ["DAY-1GB"]


class TestRoles:
    def test_a_viewer_sees_no_change_buttons(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        add_plans(seeded)
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        open_customers(page)
        expect(rows(page)).to_have_count(3)
        expect(page.locator("#customers button:visible")).to_have_count(0)
        expect(page.get_by_role("button", name="New customer")).to_have_count(0)

        page.get_by_role("link", name="ACC1042").click()

        expect(page.locator("#customer-balance")).to_have_text("KES 1,850.00")
        expect(part(page, "transactions")).to_have_count(3)
        expect(page.get_by_role("button", name="Buy a plan")).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("^Edit"))).to_have_count(0)
        expect(page.locator("#customers button:visible")).to_have_count(0)
        expect(page.locator("#customers dialog")).to_have_count(0)
        shot(page, "viewer")


class TestPhone:
    def test_a_phone_width_reads_without_sideways_scrolling(
        self, seeded: Seeded, phone: Any, shot: Shots
    ) -> None:
        add_plans(seeded)
        page = phone.new_page()

        def overflow() -> int:
            return int(
                page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
            )

        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_customers(page)
        expect(rows(page)).to_have_count(3)
        assert overflow() <= 0
        shot(page, "phone-customers")

        page.get_by_role("link", name="ACC1042").click()
        expect(part(page, "transactions")).to_have_count(3)
        expect(part(page, "payments")).to_have_count(3)
        assert overflow() <= 0
        # a card per transaction, each line labelled
        label = page.evaluate(
            "getComputedStyle(document.querySelector('#customer-transactions tbody td'),"
            " '::before').content"
        )
        assert label == '"Date"'
        shot(page, "phone-customer")

        dialog = open_buy(page)
        box = dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        shot(page, "phone-buy")
