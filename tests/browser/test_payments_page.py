"""The console's sign-in and Payments page, in Chromium, against a seeded `momo serve`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Seeded, Shots, c2b, press_more, pump_until, sign_in
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.browser

ASSOCIATED_HEADERS = ["#", "Customer", "Code", "Phone", "Amount", "Date Paid"]
UNASSOCIATED_HEADERS = ["#", "Name", "Amount", "Code", "Date Paid", "Why"]


def headers(page: Page) -> list[str]:
    return [h.strip() for h in page.locator("#payments-table thead th").all_inner_texts()]


def column(page: Page, index: int) -> list[str]:
    return page.locator(f"#payments-table tbody tr td:nth-child({index})").all_inner_texts()


def unassociated_button(page: Page) -> Any:
    return page.locator("#show-unassociated")


def rows(page: Page) -> Any:
    return page.locator("#payments-table tbody tr")


def row_of(page: Page, code: str) -> Any:
    return rows(page).filter(has_text=code)


def a_full_first_page(seeded: Seeded, context: Any, newer: int) -> Page:
    """A viewer's Payments page once ``newer`` payments (50 or more) were made by hand:
    a full first page, with the seed's callbacks older than all of it."""
    seeded.hand_payments(newer)
    page = context.new_page()
    sign_in(page, seeded.server, seeded.tokens["viewer"])
    expect(rows(page)).to_have_count(50)
    return page


class TestSignIn:
    def test_an_operator_signs_in_and_sees_the_associated_list_newest_first(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        page.goto(f"{seeded.server.base}/console")
        expect(page.get_by_label("API token")).to_be_focused()
        shot(page, "sign-in")

        sign_in(page, seeded.server, seeded.tokens["operator"])

        expect(page.locator("#who")).to_have_text("operator-1 (operator)")
        # the browser is in New York: the bar says whose clock the times are on
        expect(page.locator("#zone")).to_have_text("Times in Africa/Nairobi")
        # the keyboard starts at the page, and its next stop is the page's first button
        expect(page.locator("#payments-title")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.locator("#show-regular")).to_be_focused()
        expect(page.locator("#payments-table tbody tr")).to_have_count(3)
        assert headers(page) == [*ASSOCIATED_HEADERS, "Action"]
        assert column(page, 3) == ["TKQ4A91B2C", "TKQ0000002", "TKQ0000001"]
        first = page.locator("#payments-table tbody tr").first
        # TransTime is Nairobi time: shown as paid there, though the browser is in New York
        expect(first.locator("td").nth(5)).to_have_text("3 Nov 2025, 14:30")
        expect(first.locator("td").nth(4)).to_have_text("KES 1,500.00")
        expect(first.locator("td").nth(1)).to_have_text("ACC1042")
        expect(first.locator("td").nth(3)).to_have_text("+254712345678")
        shot(page, "payments")

    def test_a_wrong_token_is_refused_with_a_message_and_nothing_is_kept(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        page.goto(f"{seeded.server.base}/console")

        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Paste an API token to sign in.")

        page.get_by_label("API token").fill("momo_not-a-token-anyone-made")
        page.get_by_label("API token").press("Enter")

        alert = page.locator("#sign-in-error")
        expect(alert).to_contain_text("That token was refused: it is unknown or revoked.")
        expect(page.locator("#payments")).to_be_hidden()
        expect(page.get_by_label("API token")).to_have_value("")
        assert page.evaluate("sessionStorage.length") == 0
        shot(page, "refused")

    def test_the_token_lasts_as_long_as_the_tab(self, seeded: Seeded, context: Any) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])

        page.reload()
        expect(page.locator("#who")).to_have_text("viewer-1 (viewer)")

        other_tab = context.new_page()
        other_tab.goto(f"{seeded.server.base}/console")
        expect(other_tab.get_by_label("API token")).to_be_visible()
        expect(other_tab.locator("#payments")).to_be_hidden()

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("API token")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0

    def test_a_server_that_does_not_answer_keeps_the_tab_s_token(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        page.route("**/api/v1/me", lambda route: route.abort())

        page.reload()

        expect(page.locator("#sign-in-error")).to_contain_text(
            "momo did not answer: check that the server is running"
        )
        expect(page.locator("#sign-in-error")).to_contain_text("Reload the page to try again.")
        page.unroute("**/api/v1/me")
        page.reload()
        expect(page.locator("#who")).to_have_text("operator-1 (operator)")

    def test_a_token_revoked_while_signed_in_is_asked_for_again(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        # the page has read all it reads on opening: the next request is the click's
        expect(rows(page)).to_have_count(3)
        expect(page.locator("#unassociated-count")).to_have_text("2")
        me = seeded.server.api(seeded.tokens["operator"], "GET", "/me").json()
        revoked = seeded.server.api(seeded.tokens["admin"], "DELETE", f"/tokens/{me['id']}")
        assert revoked.status_code == 200

        unassociated_button(page).click()

        expect(page.locator("#sign-in-error")).to_contain_text("sign in again")
        expect(page.locator("#payments")).to_be_hidden()


class TestViews:
    def test_unassociated_shows_its_count_and_regular_switches_back(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        expect(unassociated_button(page)).to_contain_text("2")
        expect(page.locator("#show-regular")).to_have_attribute("aria-pressed", "true")

        unassociated_button(page).click()

        expect(unassociated_button(page)).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#payments-table tbody tr")).to_have_count(2)
        assert headers(page) == [*UNASSOCIATED_HEADERS, "Action"]
        assert column(page, 4) == ["TKQ0000005", "TKQ0000004"]
        assert column(page, 2) == ["OTIENO", "ALICE"]
        assert column(page, 6) == ["Shared phone (ACC2001, ACC2002)", "No match"]
        expect(page.get_by_role("button", name="Disassociate")).to_have_count(0)
        shot(page, "unassociated")

        page.locator("#show-regular").click()

        expect(page.locator("#payments-table tbody tr")).to_have_count(3)
        assert headers(page) == [*ASSOCIATED_HEADERS, "Action"]

    def test_a_payment_from_no_phone_number_says_invalid_phone(
        self, seeded: Seeded, context: Any
    ) -> None:
        seeded.server.callback(c2b("TKQ0000006", "20251106090000", "40.00", "", "12345", "BAKARI"))
        wait_until(lambda: seeded.count("unassociated") == 3)
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        expect(unassociated_button(page)).to_contain_text("3")

        unassociated_button(page).click()

        expect(rows(page)).to_have_count(3)
        assert column(page, 4) == ["TKQ0000006", "TKQ0000005", "TKQ0000004"]
        assert column(page, 6) == ["Invalid phone", "Shared phone (ACC2001, ACC2002)", "No match"]

    def test_more_fetches_the_next_cursor_page(self, seeded: Seeded, context: Any) -> None:
        seeded.hand_payments(50)
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        rows = page.locator("#payments-table tbody tr")
        expect(rows).to_have_count(50)
        expect(page.get_by_role("button", name="More")).to_be_visible()

        press_more(page)

        expect(rows).to_have_count(53)
        expect(page.get_by_role("button", name="More")).to_be_hidden()
        ids = [int(i) for i in column(page, 1)]
        assert len(set(ids)) == 53
        # the seeded callbacks were paid in 2025, the hand-made payments now: they come last
        assert column(page, 3)[-3:] == ["TKQ4A91B2C", "TKQ0000002", "TKQ0000001"]


class TestDisassociate:
    def test_cancel_changes_nothing(self, seeded: Seeded, context: Any, shot: Shots) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        requests_sent: list[str] = []
        page.on("request", lambda r: requests_sent.append(f"{r.method} {r.url}"))

        page.get_by_role("button", name="Disassociate payment").first.click()
        dialog = page.locator("#confirm")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("heading")).to_have_text("Are you sure?")
        expect(dialog).to_contain_text("TKQ4A91B2C")
        shot(page, "confirm")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()

        # the keyboard's way out: Escape cancels too
        page.get_by_role("button", name="Disassociate payment").first.focus()
        page.keyboard.press("Enter")
        expect(dialog).to_be_visible()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        assert not [r for r in requests_sent if r.startswith("POST")]
        expect(page.locator("#payments-table tbody tr")).to_have_count(3)
        expect(unassociated_button(page)).to_contain_text("2")
        assert (seeded.count("associated"), seeded.count("unassociated")) == (3, 2)

    def test_confirm_moves_the_payment_and_refreshes_lists_and_count_in_place(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        page.evaluate("window.sameDocument = true")

        page.get_by_role("button", name="Disassociate payment").first.click()
        page.locator("#confirm").get_by_role("button", name="Disassociate").click()

        expect(page.locator("#notice")).to_contain_text(
            "was disassociated from ACC1042; their balance is now KES 350.00"
        )
        expect(page.locator("#payments-table tbody tr")).to_have_count(2)
        assert column(page, 3) == ["TKQ0000002", "TKQ0000001"]
        expect(unassociated_button(page)).to_contain_text("3")
        assert page.evaluate("window.sameDocument") is True
        assert (seeded.count("associated"), seeded.count("unassociated")) == (2, 3)
        shot(page, "disassociated")

        unassociated_button(page).click()
        expect(page.locator("#payments-table tbody tr")).to_have_count(3)
        assert "Disassociated" in column(page, 6)

    def test_a_refusal_is_shown_with_the_api_s_words(self, seeded: Seeded, context: Any) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        # another operator moves the payment first; this screen still shows it associated
        shown = page.locator("#payments-table tbody tr").first.get_attribute("data-payment-id")
        moved = seeded.server.api(
            seeded.tokens["admin"], "POST", f"/payments/{shown}/disassociate", json={}
        )
        assert moved.status_code == 200

        page.get_by_role("button", name="Disassociate payment").first.click()
        page.locator("#confirm").get_by_role("button", name="Disassociate").click()

        expect(page.locator("#error")).to_contain_text(f"Payment #{shown} was not disassociated:")
        expect(page.locator("#error")).not_to_contain_text("undefined")


class TestRoles:
    def test_a_viewer_sees_no_change_buttons(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])

        expect(page.locator("#payments-table tbody tr")).to_have_count(3)
        assert headers(page) == ASSOCIATED_HEADERS
        expect(page.get_by_role("button", name="Disassociate")).to_have_count(0)
        expect(page.get_by_role("button", name="Make Payment")).to_have_count(0)
        unassociated_button(page).click()
        expect(page.locator("#payments-table tbody tr")).to_have_count(2)
        assert headers(page) == UNASSOCIATED_HEADERS
        expect(page.locator("#payments-table button")).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("^Associate"))).to_have_count(0)
        shot(page, "viewer")


class TestKeyboardAndPhone:
    def test_a_phone_width_reads_without_sideways_scrolling_and_the_keyboard_works(
        self, seeded: Seeded, phone: Any, shot: Shots
    ) -> None:
        page = phone.new_page()
        page.goto(f"{seeded.server.base}/console")
        expect(page.get_by_label("API token")).to_be_focused()
        page.keyboard.type(seeded.tokens["operator"])
        page.keyboard.press("Enter")
        expect(page.locator("#payments-table tbody tr")).to_have_count(3)

        page.locator("#show-regular").focus()
        page.keyboard.press("Tab")
        expect(unassociated_button(page)).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#payments-table tbody tr")).to_have_count(2)
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Space")
        expect(page.locator("#payments-table tbody tr")).to_have_count(3)

        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        # a card per payment, each line labelled
        label = page.evaluate(
            "getComputedStyle(document.querySelector('tbody td'), '::before').content"
        )
        assert label == '"#"'
        shot(page, "phone")


class TestAssociate:
    def test_associate_through_the_dropdown_moves_the_payment_and_refreshes_in_place(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        page.evaluate("window.sameDocument = true")
        unassociated_button(page).click()
        expect(rows(page)).to_have_count(2)

        row_of(page, "TKQ0000004").get_by_role("button", name="Associate").click()

        dialog = page.locator("#associate")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("heading")).to_have_text(re.compile(r"^Associate payment #\d+$"))
        expect(dialog).to_contain_text("TKQ0000004: KES 75.00 from ALICE")
        customer = dialog.get_by_role("combobox", name="Customer")
        expect(customer).to_be_focused()
        customer.press_sequentially("wanj")
        options = dialog.get_by_role("option")
        expect(options).to_have_count(1)
        expect(options.first).to_contain_text("ACC1042 Wanjiku Kamau")
        shot(page, "dropdown")
        options.first.click()
        expect(customer).to_have_value("ACC1042 Wanjiku Kamau")
        dialog.get_by_role("button", name="Associate", exact=True).click()

        expect(page.locator("#notice")).to_contain_text(
            "was associated with ACC1042; their balance is now KES 1,925.00"
        )
        expect(dialog).to_be_hidden()
        expect(rows(page)).to_have_count(1)
        assert column(page, 4) == ["TKQ0000005"]
        expect(page.locator("#unassociated-count")).to_have_text("1")
        assert page.evaluate("window.sameDocument") is True
        assert (seeded.count("associated"), seeded.count("unassociated")) == (4, 1)
        assert seeded.payment("TKQ0000004")["account_number"] == "ACC1042"
        assert seeded.balance("ACC1042") == "1925.00"
        shot(page, "associated")

        page.locator("#show-regular").click()
        expect(rows(page)).to_have_count(4)
        assert "TKQ0000004" in column(page, 3)

    def test_a_shared_phone_payment_offers_its_candidates_first(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        unassociated_button(page).click()

        row_of(page, "TKQ0000005").get_by_role("button", name="Associate").click()

        dialog = page.locator("#associate")
        customer = dialog.get_by_role("combobox", name="Customer")
        expect(customer).to_be_focused()
        options = dialog.get_by_role("option")
        # the two customers who share the payer's phone, then everyone else
        expect(options).to_have_count(3)
        expect(options.nth(0)).to_contain_text("ACC2001 Otieno Shop")
        expect(options.nth(0)).to_contain_text("shares this phone")
        expect(options.nth(1)).to_contain_text("ACC2002 Otieno Home")
        expect(options.nth(1)).to_contain_text("shares this phone")
        expect(options.nth(2)).to_contain_text("ACC1042 Wanjiku Kamau")
        expect(options.nth(2)).not_to_contain_text("shares this phone")
        shot(page, "candidates")

        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        expect(customer).to_have_attribute(
            "aria-activedescendant", options.nth(1).get_attribute("id") or ""
        )
        page.keyboard.press("Enter")
        expect(customer).to_have_value("ACC2002 Otieno Home")
        expect(dialog).to_be_visible()
        page.keyboard.press("Enter")

        expect(page.locator("#notice")).to_contain_text(
            "was associated with ACC2002; their balance is now KES 300.00"
        )
        expect(rows(page)).to_have_count(1)
        expect(page.locator("#unassociated-count")).to_have_text("1")
        assert seeded.payment("TKQ0000005")["account_number"] == "ACC2002"
        assert (seeded.balance("ACC2002"), seeded.balance("ACC2001")) == ("300.00", "0.00")

    def test_a_refusal_is_shown_in_the_dialog_in_the_api_s_words(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        unassociated_button(page).click()
        # another operator associates the payment first; this screen still offers it
        shown = row_of(page, "TKQ0000004").get_attribute("data-payment-id")
        path = f"/payments/{shown}/associate"
        moved = seeded.server.api(
            seeded.tokens["admin"], "POST", path, json={"account_number": "ACC2001"}
        )
        assert moved.status_code == 200, moved.text
        again = seeded.server.api(
            seeded.tokens["admin"], "POST", path, json={"account_number": "ACC1042"}
        )
        assert again.status_code == 409

        row_of(page, "TKQ0000004").get_by_role("button", name="Associate").click()
        dialog = page.locator("#associate")
        dialog.get_by_role("combobox", name="Customer").press_sequentially("ACC1042")
        expect(dialog.get_by_role("option")).to_have_count(1)
        page.keyboard.press("Enter")
        page.keyboard.press("Enter")

        expect(dialog.get_by_role("alert")).to_have_text(again.json()["detail"])
        expect(dialog).to_be_visible()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert seeded.balance("ACC1042") == "1850.00"


def open_make_payment(page: Page) -> Any:
    page.get_by_role("button", name="Make Payment").click()
    dialog = page.locator("#make")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("combobox", name="Customer")).to_be_focused()
    return dialog


def pick(dialog: Any, typed: str, account: str) -> None:
    dialog.get_by_role("combobox", name="Customer").press_sequentially(typed)
    dialog.get_by_role("option", name=re.compile(f"^{account}")).click()


class TestMakePayment:
    def test_a_double_clicked_submit_records_one_payment(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        posts: list[Any] = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)

        dialog = open_make_payment(page)
        pick(dialog, "ACC2001", "ACC2001")
        dialog.get_by_label("Amount").fill("120.50")
        dialog.get_by_label("Receipt code").fill("cash-0042")
        shot(page, "make-payment")
        dialog.get_by_role("button", name="Submit").dblclick()

        expect(page.locator("#notice")).to_contain_text(
            "was recorded for ACC2001; their balance is now KES 120.50"
        )
        expect(dialog).to_be_hidden()
        # the new payment is in the list without a reload
        expect(rows(page)).to_have_count(4)
        expect(rows(page).first.locator("td").nth(4)).to_have_text("KES 120.50")
        # not a provider's receipt: momo gives the payment a code, and keeps what was typed
        made = seeded.payment_with_reference("ACC2001", "cash-0042")
        assert made["code"] != "cash-0042"
        expect(rows(page).first.locator('td[data-label="Code"]')).to_have_text(
            f"{made['code']} · cash-0042"
        )
        expect(page.locator("#notice")).to_contain_text(
            f"({made['code']}, KES 120.50, receipt cash-0042) was recorded"
        )
        assert seeded.balance("ACC2001") == "120.50"
        assert seeded.count("associated") == 4
        assert [r.url for r in posts] == [f"{seeded.server.base}/api/v1/payments"]
        assert posts[0].headers.get("idempotency-key")
        shot(page, "made")

    def test_submit_again_after_a_lost_answer_records_one_payment(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        keys: list[str | None] = []
        page.on(
            "request",
            lambda r: keys.append(r.headers.get("idempotency-key")) if r.method == "POST" else None,
        )

        def making(url: str) -> bool:
            return url.endswith("/api/v1/payments")

        def lose_the_answer(route: Any) -> None:
            # momo records the payment; its answer never reaches the page
            if route.request.method != "POST":
                route.continue_()
                return
            route.fetch()
            route.abort()

        page.route(making, lose_the_answer)
        dialog = open_make_payment(page)
        pick(dialog, "Otieno S", "ACC2001")
        dialog.get_by_label("Amount").fill("120.50")
        dialog.get_by_role("button", name="Submit").click()
        expect(dialog.get_by_role("alert")).to_contain_text("momo did not answer")
        expect(dialog).to_be_visible()
        assert seeded.balance("ACC2001") == "120.50"

        page.unroute(making, lose_the_answer)
        dialog.get_by_role("button", name="Submit").click()

        expect(page.locator("#notice")).to_contain_text(
            "was recorded for ACC2001; their balance is now KES 120.50"
        )
        assert seeded.balance("ACC2001") == "120.50"
        assert seeded.count("associated") == 4
        assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]

    def test_the_api_s_refusals_are_shown_as_they_are_and_a_corrected_submit_goes_through(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        admin = seeded.tokens["admin"]
        dialog = open_make_payment(page)
        alert = dialog.get_by_role("alert")

        dialog.get_by_role("button", name="Submit").click()
        expect(alert).to_contain_text("Choose the customer who paid")

        unknown = {"account_number": "NOSUCH", "amount": "10.00"}
        refused = seeded.server.api(admin, "POST", "/payments", json=unknown)
        assert refused.status_code == 404
        dialog.get_by_role("combobox", name="Customer").fill("NOSUCH")
        dialog.get_by_label("Amount").fill("10.00")
        dialog.get_by_role("button", name="Submit").click()
        expect(alert).to_have_text(refused.json()["detail"])

        too_precise = {"account_number": "ACC2001", "amount": "12.345"}
        refused = seeded.server.api(admin, "POST", "/payments", json=too_precise)
        assert refused.status_code == 400, refused.text
        dialog.get_by_role("combobox", name="Customer").fill("")
        pick(dialog, "ACC2001", "ACC2001")
        dialog.get_by_label("Amount").fill("12.345")
        dialog.get_by_role("button", name="Submit").click()
        expect(alert).to_have_text(refused.json()["detail"])

        dialog.get_by_label("Amount").fill("12.34")
        dialog.get_by_role("button", name="Submit").click()
        expect(page.locator("#notice")).to_contain_text("their balance is now KES 12.34")
        assert seeded.balance("ACC2001") == "12.34"

    def test_keyboard_only_through_make_payment(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        page.goto(f"{seeded.server.base}/console")
        expect(page.get_by_label("API token")).to_be_focused()
        page.keyboard.type(seeded.tokens["operator"])
        page.keyboard.press("Enter")
        expect(rows(page)).to_have_count(3)
        make = page.get_by_role("button", name="Make Payment")
        for _ in range(20):
            if make.evaluate("button => button === document.activeElement"):
                break
            page.keyboard.press("Tab")
        expect(make).to_be_focused()

        # Enter opens, Escape closes and gives the focus back
        page.keyboard.press("Enter")
        dialog = page.locator("#make")
        customer = dialog.get_by_role("combobox", name="Customer")
        expect(customer).to_be_focused()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(make).to_be_focused()

        page.keyboard.press("Enter")
        expect(customer).to_be_focused()
        page.keyboard.type("Otieno Shop")
        options = dialog.get_by_role("option")
        expect(options).to_have_count(1)
        # the first Escape closes the list only; an arrow opens it again
        page.keyboard.press("Escape")
        expect(page.locator("#make-options")).to_be_hidden()
        expect(dialog).to_be_visible()
        page.keyboard.press("ArrowDown")
        expect(options.first).to_have_attribute("aria-selected", "true")
        page.keyboard.press("Enter")
        expect(customer).to_have_value("ACC2001 Otieno Shop")
        page.keyboard.press("Tab")
        expect(dialog.get_by_label("Amount")).to_be_focused()
        page.keyboard.type("250")
        page.keyboard.press("Tab")
        expect(dialog.get_by_label("Receipt code")).to_be_focused()
        page.keyboard.type("cash-0043")
        shot(page, "keyboard")
        page.keyboard.press("Enter")

        expect(page.locator("#notice")).to_contain_text(
            "was recorded for ACC2001; their balance is now KES 250.00"
        )
        expect(dialog).to_be_hidden()
        expect(make).to_be_focused()
        assert seeded.balance("ACC2001") == "250.00"

    def test_the_dialog_fits_a_phone(self, seeded: Seeded, phone: Any, shot: Shots) -> None:
        page = phone.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        dialog = open_make_payment(page)
        page.keyboard.press("ArrowDown")
        expect(dialog.get_by_role("option")).to_have_count(3)
        box = dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        shot(page, "phone-make-payment")


def search_requests(seen: list[str]) -> list[str]:
    return [url for url in seen if "/api/v1/payments?" in url and "q=" in url]


class TestSearch:
    def test_typing_a_ten_letter_query_makes_one_server_request(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        # fifty newer payments: the one searched for is not on the first page
        page = a_full_first_page(seeded, context, newer=50)
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url) if "/api/v1/" in r.url else None)

        page.get_by_label("Search").focus()
        # a key every 80 ms: no pause of 300 ms until the last one
        page.keyboard.type("TKQ0000001", delay=80)

        # at once: no loaded row matches
        expect(rows(page)).to_have_count(0)
        # then the server's older match
        expect(rows(page)).to_have_count(1)
        assert column(page, 3) == ["TKQ0000001"]
        expect(page.locator("#search-status")).to_have_text(
            "1 payment matches, older ones included."
        )
        page.wait_for_timeout(600)
        assert len(seen) == 1, seen
        assert search_requests(seen) == seen
        assert "q=TKQ0000001" in seen[0] and "status=associated" in seen[0]
        shot(page, "older-match")

    def test_typing_filters_the_loaded_rows_before_the_server_answers(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        held: list[Any] = []
        page.route(lambda url: "/api/v1/payments?" in url and "q=" in url, lambda r: held.append(r))
        answered: list[str] = []
        page.on("response", lambda r: answered.append(r.url))
        box = page.get_by_label("Search")

        box.press_sequentially("250")
        expect(rows(page)).to_have_count(1)
        expect(rows(page).first.locator("td").nth(4)).to_have_text("KES 250.00")
        expect(page.locator("#search-status")).to_contain_text("looking for older ones")
        box.fill("")
        expect(rows(page)).to_have_count(3)
        box.press_sequentially("0712 345")
        expect(rows(page)).to_have_count(3)
        box.fill("tkq0000001")
        expect(rows(page)).to_have_count(1)
        assert column(page, 3) == ["TKQ0000001"]
        # none of it waited for the server: its search is asked after the pause, and held
        # (on a slow machine a pause in the typing above may have asked for earlier text too)
        pump_until(page, lambda: any("q=tkq0000001" in r.request.url for r in held))
        assert "q=tkq0000001" in held[-1].request.url
        assert search_requests(answered) == []
        for route in held:
            route.continue_()

    @pytest.mark.parametrize(
        ("typed", "code"),
        [
            ("0733 999 888", "TKQ0000004"),
            ("+254 733 999888", "TKQ0000004"),
            ("254722000111", "TKQ0000005"),
            ("0722-000-111", "TKQ0000005"),
        ],
    )
    def test_a_phone_in_any_spelling_finds_its_payment_on_the_screen_and_on_the_server(
        self, seeded: Seeded, context: Any, typed: str, code: str
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        unassociated_button(page).click()
        expect(rows(page)).to_have_count(2)
        held: list[Any] = []
        page.route(lambda url: "/api/v1/payments?" in url and "q=" in url, lambda r: held.append(r))

        page.get_by_label("Search").fill(typed)

        # the loaded rows are filtered before the server is asked
        expect(rows(page)).to_have_count(1)
        assert column(page, 4) == [code]
        pump_until(page, lambda: len(held) == 1)
        with page.expect_response(lambda r: "q=" in r.url) as answer:
            held[0].continue_()
        assert [p["code"] for p in answer.value.json()["items"]] == [code]
        expect(page.locator("#search-status")).to_have_text(
            "1 payment matches, older ones included."
        )
        assert column(page, 4) == [code]

    def test_the_search_line_counts_only_what_is_shown_while_more_matches_wait(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = a_full_first_page(seeded, context, newer=55)
        status = page.locator("#search-status")

        page.get_by_label("Search").fill("acc2001")

        expect(status).to_have_text("50 payments match so far; More shows older ones.")
        press_more(page)
        expect(rows(page)).to_have_count(55)
        expect(status).to_have_text("55 payments match, older ones included.")

    def test_a_stale_answer_never_overwrites_a_newer_one(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = a_full_first_page(seeded, context, newer=50)
        held: list[Any] = []
        page.route(lambda url: "/api/v1/payments?" in url and "q=" in url, lambda r: held.append(r))
        box = page.get_by_label("Search")

        box.fill("TKQ0000001")
        pump_until(page, lambda: len(held) == 1)
        box.fill("TKQ0000002")
        pump_until(page, lambda: len(held) == 2)
        assert "q=TKQ0000001" in held[0].request.url and "q=TKQ0000002" in held[1].request.url

        # the newer answer first, then the older one, late
        held[1].continue_()
        expect(rows(page)).to_have_count(1)
        assert column(page, 3) == ["TKQ0000002"]
        with page.expect_response(lambda r: "q=TKQ0000001" in r.url):
            held[0].continue_()
        page.wait_for_timeout(200)

        expect(rows(page)).to_have_count(1)
        assert column(page, 3) == ["TKQ0000002"]
        expect(page.locator("#search-status")).to_have_text(
            "1 payment matches, older ones included."
        )

    def test_an_action_while_searching_shows_fresh_matches(
        self, seeded: Seeded, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        unassociated_button(page).click()
        page.get_by_label("Search").fill("TKQ0000004")
        expect(rows(page)).to_have_count(1)
        expect(page.locator("#search-status")).to_contain_text("older ones included")

        rows(page).first.get_by_role("button", name="Associate").click()
        dialog = page.locator("#associate")
        pick(dialog, "ACC1042", "ACC1042")
        dialog.get_by_role("button", name="Associate", exact=True).click()

        expect(page.locator("#notice")).to_contain_text("was associated with ACC1042")
        expect(rows(page)).to_have_count(0)
        expect(page.locator("#no-match")).to_be_visible()
        expect(page.locator("#unassociated-count")).to_have_text("1")
        page.locator("#show-regular").click()
        expect(rows(page)).to_have_count(1)
        assert column(page, 3) == ["TKQ0000004"]
