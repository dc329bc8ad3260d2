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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import VENV_BIN, momo_serve

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
        if os.environ.get("MOMO_REQUIRE_SERVICES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
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
