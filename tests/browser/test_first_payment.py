"""README's "A first payment, step by step", done on the screen: the token README shows
how to make, the customer and the callback README gives (read from README itself, so the
two cannot drift apart), then the balance and the payment seen in the console."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, Shots, pump_until

pytestmark = pytest.mark.browser

README = Path(__file__).parents[2] / "README.md"


def readme_step(number: int) -> str:
    walk = README.read_text().split("## A first payment, step by step", 1)[1].split("\n```\n", 1)[0]
    return walk.split(f"# {number}. ", 1)[1].split("\n# ", 1)[0]


def readme_body(number: int) -> dict[str, Any]:
    """The JSON body of README's step ``number`` (its curl's ``-d '...'``)."""
    found = re.search(r"-d '(\{.*?\})'", readme_step(number), flags=re.DOTALL)
    assert found, f"README's step {number} has no -d '{{...}}' body"
    body: dict[str, Any] = json.loads(found.group(1))
    return body


def go(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Pages").get_by_role("link", name=name).click()


def test_readme_s_first_payment_done_on_the_screen(
    server: Server, context: Any, shot: Shots
) -> None:
    # 1. the token, made as README says (step 1: `momo token create --name me --role admin`)
    assert "momo token create --name me --role admin" in readme_step(1)
    token = server.token("admin", "me")
    customer = readme_body(2)
    callback = readme_body(3)
    page = context.new_page()
    page.goto(f"{server.base}/console")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("me (admin)")
    shot(page, "signed-in")

    # 2. the customer, through Customers > New customer, phones as README writes them
    go(page, "Customers")
    page.get_by_role("button", name="New customer").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Account number").fill(customer["account_number"])
    dialog.get_by_label("Name").fill(customer["name"])
    dialog.get_by_label("Phones").fill("\n".join(customer["phones"]))
    shot(page, "new-customer")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("#customers-title")).to_have_text(customer["name"])
    expect(page.locator("#customer-balance")).to_have_text("KES\u00a00.00")

    # 3. M-PESA confirms the payment: README's callback, as Daraja posts it
    server.callback(callback)
    code, account = callback["TransID"], customer["account_number"]

    # 4. the payment in the associated list, and the balance
    def credited() -> bool:
        answer = server.api(token, "GET", f"/customers/{account}")
        return bool(answer.json()["balance"] == "1500.00")

    pump_until(page, credited)
    go(page, "Payments")
    row = page.locator("#payments-table tbody tr").filter(has_text=code)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(account)
    expect(row).to_contain_text("KES\u00a01,500.00")
    # TransTime 20251103143015 is Nairobi time, shown as such whatever the browser's zone
    expect(row).to_contain_text("3 Nov 2025, 14:30")
    shot(page, "payment")

    go(page, "Customers")
    page.get_by_role("link", name=account, exact=True).click()
    expect(page.locator("#customer-balance")).to_have_text("KES\u00a01,500.00")
    shot(page, "balance")

    # README: "Send the same callback again: it is acknowledged and the balance stays 1500.00."
    server.callback(callback)
    # the worker's turn: once nothing waits in the inbox, a second credit would have landed
    pump_until(page, lambda: not server.api(token, "GET", "/inbox?status=pending").json()["items"])
    go(page, "Dashboard")
    expect(page.locator("#dashboard")).to_be_visible()
    go(page, "Customers")
    page.get_by_role("link", name=account, exact=True).click()
    expect(page.locator("#customer-balance")).to_have_text("KES\u00a01,500.00")
    answer = server.api(token, "GET", "/payments/count?status=associated").json()
    assert answer["count"] == 1
