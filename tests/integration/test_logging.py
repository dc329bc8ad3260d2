"""A payment's story in the logs of real processes: gunicorn serving the webhook and the
API, a Celery worker crediting it, all with MOMO_LOG_FORMAT=json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import PATH_TOKEN, Stack, stack_of_its_own, wait_until
from tests.integration.test_pipeline import confirmation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def json_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_of_its_own(
        redis_url, tmp_path_factory.mktemp("logs"), lambda _: {"MOMO_LOG_FORMAT": "json"}
    ) as stack:
        yield stack


def json_lines(text: str) -> list[dict[str, Any]]:
    # Celery's start-up banner is printed, not logged: every logged line is JSON
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_credited_callback_is_told_in_json_lines_tied_by_their_ids(json_stack: Stack) -> None:
    json_stack.add_customer("ACC7001", "0712345678")

    answer = json_stack.post(
        "c2b/confirmation", confirmation(TransID="TKL0GS0001", BillRefNumber="ACC7001")
    )

    assert answer.status_code == 200
    request_id = answer.headers["X-Request-ID"]
    wait_until(lambda: json_stack.balance("ACC7001") == "1500.00")

    web = json_lines(json_stack.log("web"))
    (access,) = [
        line
        for line in web
        if line["logger"] == "momo.access" and line.get("request_id") == request_id
    ]
    assert access["path"] == "/webhooks/mpesa/***/c2b/confirmation"
    assert (access["method"], access["status"]) == ("POST", 200)

    def processed() -> list[dict[str, Any]]:
        return [
            line
            for line in json_lines(json_stack.log("worker"))
            if "momo.process_inbox" in line["message"] and "succeeded" in line["message"]
        ]

    done = wait_until(processed)
    assert all(line["task_id"] and line["task_id"] in line["message"] for line in done)
    assert {line["level"] for line in done} == {"INFO"}

    # the story tied end to end: the webhook's access line and the worker's line for the
    # row share the receipt code; the worker's names the inbox row and the task
    assert access["code"] == "TKL0GS0001"
    (row,) = [
        line
        for line in json_lines(json_stack.log("worker"))
        if line.get("code") == "TKL0GS0001" and line["message"].startswith("inbox row ")
    ]
    assert row["message"] == f"inbox row {row['inbox_id']}: credited"
    assert row["task_id"] in {line["task_id"] for line in done}

    for name in ("web", "worker", "beat"):
        assert PATH_TOKEN not in json_stack.log(name), name
