"""The harness itself: Chromium reaches a real `momo serve` and screenshots land in place."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import SCREENSHOTS, Server, Shots

pytestmark = pytest.mark.browser


def test_chromium_reads_the_served_api_document(server: Server, context: Any, shot: Shots) -> None:
    page = context.new_page()
    answer = page.goto(f"{server.base}/api/v1/openapi.json")

    assert answer is not None and answer.status == 200
    assert '"openapi": "3.1' in page.content() or '"openapi":"3.1' in page.content()
    saved = shot(page, "openapi")
    assert saved.parent == SCREENSHOTS and saved.stat().st_size > 0
