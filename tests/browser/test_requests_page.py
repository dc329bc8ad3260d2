"""The console's Payment requests page, in Chromium, against a seeded `momo serve` whose
M-PESA Express is a fake Daraja: the page asks, the fake's STK result comes to momo's
webhook, and the page shows the request settle without a reload."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    PATH_TOKEN,
    Seeded,
    Server,
    Shots,
    press_more,
    pump_until,
    sign_in,
)
from tests.fakes import HELD, PAY, DarajaFake, Delivery, StkResult
from tests.fakes.daraja import CANCELLED, INSUFFICIENT_FUNDS, RESULT_DESCS
from tests.integration.conftest import free_port, momo_serve, wait_until

pytestmark = pytest.mark.browser

HEADERS = ["#", "Customer", "Phone", "Amount", "Provider", "Status", "Asked at", "Result"]
STK_PATH = f"/webhooks/daraja/{PATH_TOKEN}/stk"
#: counts the page's questions about one request (GET /payment-requests/<id>) as they
#: are asked, in ``window.askedAbout``
COUNT_QUESTIONS = """
window.askedAbout = [];
const fetchAnswer = window.fetch;
window.fetch = (url, ...rest) => {
  const one = /\\/payment-requests\\/(\\d+)$/.exec(String(url));
  if (one) window.askedAbout.push(Number(one[1]));
  return fetchAnswer(url, ...rest);
};
"""


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    """Daraja's sandbox, on loopback; each push waits for the test to decide how it ends."""
    with DarajaFake() as fake:
        fake.default_outcome = None
        yield fake
    assert fake.errors == []


@pytest.fixture
def with_provider() -> bool:
    """Whether momo is given M-PESA Express (the fake Daraja); a test parametrizes it off."""
    return True


@pytest.fixture
def server(
    tmp_path: Path, browser: Any, with_provider: bool, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """The browser tests' `momo serve`, its M-PESA Express pointed at the fake Daraja,
    which posts its STK results to this momo's public URL."""
    workdir = tmp_path / "serve"
    workdir.mkdir()
    port = free_port()
    provider: dict[str, str] = {}
    if with_provider:
        daraja: DarajaFake = request.getfixturevalue("daraja")
        provider = daraja.momo_env(f"http://127.0.0.1:{port}")
    with momo_serve(
        workdir,
        port=port,
        MOMO_INSTANCE_PATH=str(workdir / "instance"),
        MOMO_MPESA_PATH_TOKEN=PATH_TOKEN,
        MOMO_SWEEP_INTERVAL_SECONDS="1",
        **provider,
    ) as (base, env, proc):
        yield Server(base, env, workdir, proc)


def open_requests(page: Page) -> None:
    page.get_by_role("link", name="Payment requests").click()
    expect(page.locator("#requests-title")).to_be_visible()
    expect(page.locator("#requests-loading")).to_be_hidden()


def rows(page: Page) -> Any:
    return page.locator("#requests-table tbody tr")


def row_of(page: Page, request_id: int) -> Any:
    return page.locator(f'#requests-table tbody tr[data-request-id="{request_id}"]')


def status_of(page: Page, request_id: int) -> Any:
    return row_of(page, request_id).locator("td.status")


def headers(page: Page) -> list[str]:
    return [h.strip() for h in page.locator("#requests-table thead th").all_inner_texts()]


def open_ask(page: Page) -> Any:
    page.get_by_role("button", name="Ask to pay").click()
    dialog = page.locator("#ask")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("combobox", name="Customer")).to_be_focused()
    return dialog


def pick(dialog: Any, typed: str, account: str) -> None:
    dialog.get_by_role("combobox", name="Customer").press_sequentially(typed)
    dialog.get_by_role("option", name=re.compile(f"^{account}")).click()


def ask(seeded: Seeded, account: str, amount: str, **more: str) -> dict[str, Any]:
    """A request made through the API, as another operator would."""
    made = seeded.server.api(
        seeded.tokens["operator"],
        "POST",
        "/payment-requests",
        json={"account_number": account, "amount": amount, **more},
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def shown_request(seeded: Seeded, page: Page) -> dict[str, Any]:
    """The newest request on the page, as the API has it."""
    expect(rows(page).first).to_be_visible()
    request_id = int(rows(page).first.get_attribute("data-request-id") or "0")
    answer = seeded.server.api(seeded.tokens["admin"], "GET", f"/payment-requests/{request_id}")
    return dict(answer.json())


def settle(daraja: DarajaFake, item: dict[str, Any], outcome: StkResult) -> Delivery:
    """Daraja's STK result for ``item``, posted to momo's webhook now; momo's answer."""
    reference = item["provider_reference"]
    daraja.decide(reference, outcome)
    delivery = daraja.post_callback(reference)
    assert delivery.url.endswith(STK_PATH), delivery.url
    assert delivery.status == 200, (delivery.status, delivery.answer, delivery.error)
    return delivery


def nothing_waiting(seeded: Seeded) -> bool:
    """Every callback momo stored has been worked."""
    answer = seeded.server.api(seeded.tokens["admin"], "GET", "/inbox?status=pending")
    return answer.json()["items"] == []


class TestAskToPay:
    def test_asked_with_the_keyboard_alone_it_turns_paid_on_the_screen_and_credits_once(
        self, seeded: Seeded, daraja: DarajaFake, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        page.get_by_role("link", name="Payment requests").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#requests-empty")).to_contain_text("No payment requests yet")
        assert headers(page) == HEADERS

        page.get_by_role("button", name="Ask to pay").focus()
        page.keyboard.press("Enter")
        dialog = page.locator("#ask")
        customer = dialog.get_by_role("combobox", name="Customer")
        expect(customer).to_be_focused()
        page.keyboard.type("Wanjiku")
        expect(dialog.get_by_role("option", name=re.compile("^ACC1042"))).to_have_attribute(
            "aria-selected", "true"
        )
        page.keyboard.press("Enter")
        expect(customer).to_have_value("ACC1042 Wanjiku Kamau")
        # an empty phone asks on the customer's first, and the dialog says which
        expect(dialog.locator("#ask-phone-hint")).to_have_text(
            "Leave it empty to ask on ACC1042's first phone, +254712345678."
        )
        page.keyboard.press("Tab")
        expect(dialog.get_by_label("Phone")).to_be_focused()
        page.keyboard.press("Tab")
        expect(dialog.get_by_label("Amount")).to_be_focused()
        page.keyboard.type("1500")
        shot(page, "ask-to-pay")
        page.keyboard.press("Enter")

        expect(dialog).to_be_hidden()
        expect(page.get_by_role("button", name="Ask to pay")).to_be_focused()
        item = shown_request(seeded, page)
        expect(status_of(page, item["id"])).to_have_text("Pending")
        cells = row_of(page, item["id"]).locator("td")
        expect(cells).to_have_text(
            [str(item["id"]), "ACC1042", "+254712345678", "KES 1,500.00", "M-PESA", "Pending",
             re.compile(r"\d{1,2} \w{3} \d{4}, \d\d:\d\d"), "Waiting for the customer…"]
        )  # fmt: skip
        expect(page.locator("#requests-notice")).to_contain_text(
            f"Request #{item['id']} sent: ACC1042 is asked to pay KES 1,500.00 on +254712345678"
        )
        (push,) = daraja.calls(PAY)
        assert str(push.json["PhoneNumber"]) == "254712345678"
        assert str(push.json["Amount"]) == "1500"
        shot(page, "pending")

        settle(daraja, item, StkResult(callback=HELD))

        # no reload: the page asked momo about the pending request until it changed
        expect(status_of(page, item["id"])).to_have_text("Paid")
        notice = page.get_by_role("status")
        expect(notice).to_contain_text(
            f"Request #{item['id']} was paid: KES 1,500.00 credited to ACC1042"
        )
        assert notice.get_attribute("aria-live") == "polite"
        paid = seeded.server.api(seeded.tokens["admin"], "GET", f"/payment-requests/{item['id']}")
        expect(row_of(page, item["id"]).locator("td").last).to_have_text(
            f"Payment #{paid.json()['payment_id']}"
        )
        assert seeded.balance("ACC1042") == "3350.00"
        shot(page, "paid")

        # Daraja repeats itself: the same result again credits nothing more
        daraja.post_callback(item["provider_reference"])
        wait_until(lambda: nothing_waiting(seeded))
        assert seeded.balance("ACC1042") == "3350.00"

    def test_failed_cancelled_and_short_paid_prompts_are_shown_in_the_provider_s_words(
        self, seeded: Seeded, daraja: DarajaFake, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_requests(page)
        made = []
        for account, amount in (("ACC2001", "250"), ("ACC1042", "40"), ("ACC2002", "1500")):
            dialog = open_ask(page)
            pick(dialog, account, account)
            dialog.get_by_label("Amount").fill(amount)
            dialog.get_by_role("button", name="Submit").click()
            expect(dialog).to_be_hidden()
            expect(rows(page)).to_have_count(len(made) + 1)
            made.append(shown_request(seeded, page))
        short, cancelled, underpaid = made
        for item in made:
            expect(status_of(page, item["id"])).to_have_text("Pending")

        settle(daraja, short, StkResult(code=INSUFFICIENT_FUNDS, callback=HELD))
        settle(daraja, cancelled, StkResult(code=CANCELLED, callback=HELD))
        settle(daraja, underpaid, StkResult(amount=Decimal("1000"), callback=HELD))

        expect(status_of(page, short["id"])).to_have_text("Failed")
        expect(status_of(page, cancelled["id"])).to_have_text("Cancelled")
        expect(status_of(page, underpaid["id"])).to_have_text("Paid")
        notice = page.locator("#requests-notice")
        expect(notice).to_contain_text(
            f"Request #{short['id']} (KES 250.00 from ACC2001) failed: "
            f"{RESULT_DESCS[INSUFFICIENT_FUNDS]}"
        )
        expect(notice).to_contain_text(
            f"Request #{cancelled['id']} (KES 40.00 from ACC1042) was cancelled: "
            f"{RESULT_DESCS[CANCELLED]}"
        )
        # another amount than asked is paid, and not credited: an operator decides
        payment_id = seeded.server.api(
            seeded.tokens["admin"], "GET", f"/payment-requests/{underpaid['id']}"
        ).json()["payment_id"]
        payment = seeded.server.api(seeded.tokens["admin"], "GET", f"/payments/{payment_id}")
        assert payment.json()["account_number"] is None
        expect(notice).to_contain_text(
            f"Request #{underpaid['id']} was paid with KES 1,000.00, not the KES 1,500.00 "
            f"asked: payment #{payment_id} ({payment.json()['code']}) waits among the "
            "unassociated payments"
        )
        expect(row_of(page, short["id"]).locator("td").last).to_have_text(
            RESULT_DESCS[INSUFFICIENT_FUNDS]
        )
        expect(row_of(page, underpaid["id"]).locator("td").last).to_contain_text(
            f"Payment #{payment_id}: paid 1000.00, not the amount asked"
        )
        balances = [seeded.balance(a) for a in ("ACC2001", "ACC1042", "ACC2002")]
        assert balances == ["0.00", "1850.00", "0.00"]
        shot(page, "settled")

        # each status a list of its own
        page.get_by_label("Status").select_option("cancelled")
        expect(rows(page)).to_have_count(1)
        expect(status_of(page, cancelled["id"])).to_have_text("Cancelled")
        page.get_by_label("Status").select_option("expired")
        expect(rows(page)).to_have_count(0)
        expect(page.locator("#requests-empty")).to_have_text("No expired payment requests.")

    def test_a_double_clicked_submit_prompts_the_customer_once(
        self, seeded: Seeded, daraja: DarajaFake, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_requests(page)
        posts: list[Any] = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        # Daraja is slow to answer: momo's answer, and the page's, wait for it
        daraja.hang_next(PAY, 1.0)

        dialog = open_ask(page)
        pick(dialog, "Otieno S", "ACC2001")
        dialog.get_by_label("Phone").fill("0722 000 111")
        dialog.get_by_label("Amount").fill("120")
        submit = dialog.get_by_role("button", name="Submit")
        submit.dblclick()
        expect(submit).to_be_disabled()

        expect(dialog).to_be_hidden()
        expect(rows(page)).to_have_count(1)
        item = shown_request(seeded, page)
        assert (item["account_number"], item["phone"], item["amount"]) == (
            "ACC2001",
            "+254722000111",
            "120.00",
        )
        assert len(daraja.calls(PAY)) == 1
        assert [r.url for r in posts] == [f"{seeded.server.base}/api/v1/payment-requests"]
        assert posts[0].headers.get("idempotency-key")
        listed = seeded.server.api(seeded.tokens["admin"], "GET", "/payment-requests")
        assert len(listed.json()["items"]) == 1

    def test_submit_again_after_a_lost_answer_prompts_the_customer_once(
        self, seeded: Seeded, daraja: DarajaFake, context: Any
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_requests(page)
        keys: list[str | None] = []
        page.on(
            "request",
            lambda r: keys.append(r.headers.get("idempotency-key")) if r.method == "POST" else None,
        )

        def asking(url: str) -> bool:
            return url.endswith("/api/v1/payment-requests")

        def lose_the_answer(route: Any) -> None:
            # momo asks Daraja; its answer never reaches the page
            if route.request.method != "POST":
                route.continue_()
                return
            route.fetch()
            route.abort()

        page.route(asking, lose_the_answer)
        dialog = open_ask(page)
        pick(dialog, "Wanjiku", "ACC1042")
        dialog.get_by_label("Amount").fill("700")
        dialog.get_by_role("button", name="Submit").click()
        expect(dialog.get_by_role("alert")).to_contain_text("momo did not answer")
        expect(dialog).to_be_visible()
        assert len(daraja.calls(PAY)) == 1

        page.unroute(asking, lose_the_answer)
        dialog.get_by_role("button", name="Submit").click()

        expect(dialog).to_be_hidden()
        expect(rows(page)).to_have_count(1)
        expect(rows(page).first.locator("td.status")).to_have_text("Pending")
        assert len(daraja.calls(PAY)) == 1
        assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]

    def test_a_refusal_is_shown_in_the_dialog_and_a_corrected_submit_is_a_new_request(
        self, seeded: Seeded, daraja: DarajaFake, context: Any, shot: Shots
    ) -> None:
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_requests(page)
        dialog = open_ask(page)
        alert = dialog.get_by_role("alert")

        dialog.get_by_role("button", name="Submit").click()
        expect(alert).to_contain_text("Choose the customer to ask")
        assert daraja.calls(PAY) == []

        # what momo says when Daraja refuses, learnt from the API itself
        daraja.refuse_next(PAY, "invalid_phone", times=2)
        refused = seeded.server.api(
            seeded.tokens["operator"],
            "POST",
            "/payment-requests",
            json={"account_number": "ACC1042", "amount": "300"},
        )
        assert (refused.status_code, refused.json()["code"]) == (422, "provider_refused")
        detail = refused.json()["detail"]

        pick(dialog, "ACC1042", "ACC1042")
        dialog.get_by_label("Amount").fill("300")
        dialog.get_by_role("button", name="Submit").click()

        expect(alert).to_have_text(detail)
        expect(dialog).to_be_visible()
        shot(page, "refused")
        # momo keeps the refused request, as failed: it is in the list behind the dialog
        expect(rows(page)).to_have_count(2)
        expect(rows(page).first.locator("td.status")).to_have_text("Failed")

        # Submit again is another request (the refused one's key would only replay it)
        dialog.get_by_role("button", name="Submit").click()
        expect(dialog).to_be_hidden()
        expect(rows(page)).to_have_count(3)
        expect(rows(page).first.locator("td.status")).to_have_text("Pending")
        assert len(daraja.calls(PAY)) == 3

    @pytest.mark.parametrize("with_provider", [False])
    def test_a_momo_without_a_provider_says_so_in_the_dialog(
        self, seeded: Seeded, context: Any, shot: Shots
    ) -> None:
        refused = seeded.server.api(
            seeded.tokens["operator"],
            "POST",
            "/payment-requests",
            json={"account_number": "ACC1042", "amount": "300"},
        )
        assert refused.json()["code"] == "provider_not_configured", refused.text
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_requests(page)
        dialog = open_ask(page)
        pick(dialog, "ACC1042", "ACC1042")
        dialog.get_by_label("Amount").fill("300")
        dialog.get_by_role("button", name="Submit").click()

        expect(dialog.get_by_role("alert")).to_have_text(refused.json()["detail"])
        shot(page, "no-provider")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("button", name="Ask to pay")).to_be_focused()


class TestWatching:
    def test_a_viewer_sees_no_ask_to_pay_and_watches_a_request_turn_paid(
        self, seeded: Seeded, daraja: DarajaFake, context: Any, shot: Shots
    ) -> None:
        item = ask(seeded, "ACC1042", "250")
        page = context.new_page()
        sign_in(page, seeded.server, seeded.tokens["viewer"])
        open_requests(page)

        expect(status_of(page, item["id"])).to_have_text("Pending")
        expect(page.get_by_role("button", name="Ask to pay")).to_have_count(0)
        expect(page.locator("#ask")).to_have_count(0)
        shot(page, "viewer")

        settle(daraja, item, StkResult(callback=HELD))

        expect(status_of(page, item["id"])).to_have_text("Paid")
        expect(page.locator("#requests-notice")).to_contain_text(
            f"Request #{item['id']} was paid: KES 250.00 credited to ACC1042"
        )

    def test_watching_stops_when_nothing_is_pending_and_when_the_page_closes(
        self, seeded: Seeded, daraja: DarajaFake, context: Any
    ) -> None:
        first, second = ask(seeded, "ACC1042", "100"), ask(seeded, "ACC2001", "200")
        page = context.new_page()
        # the page's timers run on a clock the test can move on, and every question the
        # page asks about one request is counted as it is asked
        page.clock.install()
        page.add_init_script(COUNT_QUESTIONS)
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_requests(page)

        def asked() -> list[int]:
            return list(page.evaluate("window.askedAbout"))

        pump_until(page, lambda: {first["id"], second["id"]} <= set(asked()))
        settle(daraja, first, StkResult(callback=HELD))
        expect(status_of(page, first["id"])).to_have_text("Paid")
        # the paid one is no longer asked about; the pending one still is
        paid_at = len(asked())
        pump_until(page, lambda: asked()[paid_at:].count(second["id"]) >= 2)
        assert first["id"] not in asked()[paid_at:]

        settle(daraja, second, StkResult(callback=HELD))
        expect(status_of(page, second["id"])).to_have_text("Paid")
        # none pending: however long the page stays open, it asks about none
        settled = len(asked())
        page.clock.run_for(60_000)
        assert len(asked()) == settled

        third = ask(seeded, "ACC1042", "300")
        page.get_by_label("Status").select_option("pending")
        expect(status_of(page, third["id"])).to_have_text("Pending")
        pump_until(page, lambda: third["id"] in asked())
        # another page: nothing is asked about any more, though one is still pending
        page.get_by_role("link", name="Payments").click()
        expect(page.locator("#requests")).to_be_hidden()
        left = len(asked())
        page.clock.run_for(60_000)
        assert len(asked()) == left


class TestLooks:
    def test_the_list_pages_on_with_more_and_reads_on_a_phone(
        self, seeded: Seeded, daraja: DarajaFake, phone: Any, shot: Shots
    ) -> None:
        daraja.refuse_next(PAY, "invalid_amount", times=52)
        for n in range(52):
            made = seeded.server.api(
                seeded.tokens["operator"],
                "POST",
                "/payment-requests",
                json={"account_number": "ACC2001", "amount": str(n + 1)},
            )
            assert made.status_code == 422, made.text
        item = ask(seeded, "ACC1042", "1500")
        page = phone.new_page()
        sign_in(page, seeded.server, seeded.tokens["operator"])
        open_requests(page)
        expect(rows(page)).to_have_count(50)
        expect(status_of(page, item["id"])).to_have_text("Pending")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        label = page.evaluate(
            "getComputedStyle(document.querySelector('#requests-table tbody td'), "
            "'::before').content"
        )
        assert label == '"#"'

        press_more(page)
        expect(rows(page)).to_have_count(53)
        expect(page.get_by_role("button", name="More")).to_be_hidden()
        ids = [int(r.get_attribute("data-request-id") or "0") for r in rows(page).all()]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 53

        page.get_by_label("Status").select_option("pending")
        expect(rows(page)).to_have_count(1)
        shot(page, "phone-pending")
        dialog = open_ask(page)
        pick(dialog, "ACC1042", "ACC1042")
        dialog.get_by_label("Amount").fill("500")
        box = dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        shot(page, "phone-ask")
