"""Browser tests: Debian's Chromium, driven by Playwright, against a real `momo serve`.

Nothing is downloaded at test time: Playwright is pointed at /usr/bin/chromium
(``apt-get install chromium``; ``MOMO_TEST_CHROMIUM`` names another binary). Without it
the tests skip, saying how to install it; with ``MOMO_REQUIRE_SERVICES=1`` (CI) they fail.
Each test's pages are saved as screenshots under ``tests/browser/screenshots/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import lacking
from tests.integration.conftest import VENV_BIN, momo_serve, wait_until

CHROMIUM = Path(os.environ.get("MOMO_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).parent / "screenshots"
#: the path token `momo serve` is given, so tests can post callbacks
PATH_TOKEN = "browser-path-token-8c41d2e07b5a9f36e1d4"


def _chromium_missing() -> str | None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return None
    return (
        f"no Chromium at {CHROMIUM}: install Debian's with `sudo apt-get install -y chromium` "
        "(or set MOMO_TEST_CHROMIUM to a Chromium binary); the browser tests download nothing"
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = _chromium_missing()
    if missing:
        lacking(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Server:
    """A running `momo serve` on the embedded default, in its own folder."""

    base: str
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes]

    def token(self, role: str, name: str | None = None) -> str:
        """A new token of ``role``, made as README says: `momo token create`."""
        done = subprocess.run(
            [str(VENV_BIN / "momo"), "token", "create", "--name", name or role, "--role", role],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    def api(self, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method,
            f"{self.base}/api/v1{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )

    def callback(self, body: dict[str, Any]) -> None:
        """An M-PESA C2B confirmation, as Daraja posts it."""
        url = f"{self.base}/webhooks/daraja/{PATH_TOKEN}/c2b/confirmation"
        answer = requests.post(url, json=body, timeout=30)
        assert answer.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}, answer.text


@pytest.fixture
def server(tmp_path: Path, browser: Any) -> Iterator[Server]:
    """`momo serve` (SQLite, in-process worker) on a free port, stopped by its pid whatever
    the test does."""
    workdir = tmp_path / "serve"
    workdir.mkdir()
    with momo_serve(
        workdir,
        MOMO_INSTANCE_PATH=str(workdir / "instance"),
        MOMO_MPESA_PATH_TOKEN=PATH_TOKEN,
        MOMO_SWEEP_INTERVAL_SECONDS="1",
    ) as (base, env, proc):
        yield Server(base, env, workdir, proc)


class Shots:
    """Saves a page's screenshot as ``<test>-<n>-<label>.png`` under ``SCREENSHOTS``."""

    def __init__(self, test: str) -> None:
        self.prefix = re.sub(r"[^A-Za-z0-9_]+", "-", test).strip("-")
        self.count = 0
        SCREENSHOTS.mkdir(exist_ok=True)
        for old in SCREENSHOTS.glob(f"{self.prefix}-*.png"):
            old.unlink()

    def __call__(self, page: Any, label: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile: nothing kept from another test."""
    # a zone far from the business's (Africa/Nairobi): times must follow the business
    ctx = browser.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id="America/New_York"
    )
    try:
        yield ctx
    finally:
        ctx.close()


def c2b(code: str, when: str, amount: str, reference: str, msisdn: str, name: str) -> dict:
    return {
        "TransactionType": "Pay Bill",
        "TransID": code,
        "TransTime": when,
        "TransAmount": amount,
        "BusinessShortCode": "4130669",
        "BillRefNumber": reference,
        "MSISDN": msisdn,
        "FirstName": name,
    }


@dataclass
class Seeded:
    server: Server
    tokens: dict[str, str]

    def count(self, status: str) -> int:
        answer = self.server.api(self.tokens["admin"], "GET", f"/payments/count?status={status}")
        return int(answer.json()["count"])

    def balance(self, account: str) -> str:
        answer = self.server.api(self.tokens["admin"], "GET", f"/customers/{account}")
        return str(answer.json()["balance"])

    def payment(self, code: str) -> dict[str, Any]:
        for status in ("associated", "unassociated"):
            answer = self.server.api(
                self.tokens["admin"], "GET", "/payments", params={"status": status, "q": code}
            )
            items = [p for p in answer.json()["items"] if p["code"] == code]
            if items:
                return dict(items[0])
        raise AssertionError(f"no payment {code}")

    def payment_with_reference(self, account: str, reference: str) -> dict[str, Any]:
        """``account``'s payment recorded by hand with ``reference`` typed as its receipt."""
        answer = self.server.api(
            self.tokens["admin"], "GET", "/payments", params={"account": account}
        )
        items = [p for p in answer.json()["items"] if p["reference"] == reference]
        assert len(items) == 1, answer.text
        return dict(items[0])

    def hand_payments(self, count: int) -> None:
        """``count`` payments made by hand for ACC2001, paid now: newer than the callbacks."""
        for n in range(count):
            made = self.server.api(
                self.tokens["operator"],
                "POST",
                "/payments",
                json={"account_number": "ACC2001", "amount": f"{n + 1}.00"},
            )
            assert made.status_code == 201, made.text


@pytest.fixture
def seeded(server: Server) -> Seeded:
    """Three customers (two sharing a phone), three associated payments and two
    unassociated ones (no match; a phone two customers share), and a token per role."""
    admin = server.token("admin")
    tokens = {"admin": admin}
    for role in ("operator", "viewer"):
        made = server.api(admin, "POST", "/tokens", json={"name": f"{role}-1", "role": role})
        assert made.status_code == 201, made.text
        tokens[role] = made.json()["token"]
    for account, name, phones in (
        ("ACC1042", "Wanjiku Kamau", ["0712 345 678"]),
        ("ACC2001", "Otieno Shop", ["0722 000 111"]),
        ("ACC2002", "Otieno Home", ["0722000111"]),
    ):
        made = server.api(
            admin,
            "POST",
            "/customers",
            json={"account_number": account, "name": name, "phones": phones},
        )
        assert made.status_code == 201, made.text
    for body in (
        c2b("TKQ0000001", "20251101090000", "100.00", "ACC1042", "254712345678", "WANJIKU"),
        c2b("TKQ0000002", "20251102100000", "250.00", "ACC1042", "254712345678", "WANJIKU"),
        c2b("TKQ4A91B2C", "20251103143015", "1500.00", "ACC1042", "254712345678", "WANJIKU"),
        c2b("TKQ0000004", "20251104080000", "75.00", "NOBODY", "254733999888", "ALICE"),
        c2b("TKQ0000005", "20251105120000", "300.00", "", "254722000111", "OTIENO"),
    ):
        server.callback(body)
    seeded = Seeded(server, tokens)
    wait_until(lambda: (seeded.count("associated"), seeded.count("unassociated")) == (3, 2))
    return seeded


def sign_in(page: Page, server: Server, token: str) -> None:
    page.goto(f"{server.base}/console")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#payments")).to_be_visible()


def press_more(page: Page, more: Any = None) -> None:
    """Press the list's More button without scrolling to it. Scrolled into view it presses
    itself (lists load as they scroll), and a click made by scrolling there would race that
    load: the last page makes the button go while the click still waits for it."""
    more = more if more is not None else page.get_by_role("button", name="More")
    expect(more).to_be_visible()
    expect(more).to_be_enabled()
    more.dispatch_event("click")


def pump_until(page: Page, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``check`` while Playwright delivers the page's events (a plain sleep would
    hold them back)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        page.wait_for_timeout(25)


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A fresh browser profile the size of a phone (390x844, touch), in a zone far from
    the business's, as ``context`` is."""
    ctx = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        timezone_id="America/New_York",
    )
    try:
        yield ctx
    finally:
        ctx.close()
