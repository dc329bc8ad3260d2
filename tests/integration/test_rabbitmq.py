"""On RabbitMQ (MOMO_TEST_BROKER=amqp://...): the queue momo declares and where a delayed
task waits. The rest of the suite runs on RabbitMQ too and checks the payments."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from tasks.celery_app import PROCESS_INBOX, QUEUE, make_producer
from tests.conftest import lacking, sample
from tests.integration.conftest import ON_RABBITMQ, Stack, amqp_vhost, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ON_RABBITMQ, reason="needs MOMO_TEST_BROKER=amqp://..."),
]


def rabbitmqctl(*args: str) -> list[dict[str, Any]]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        message = "rabbitmqctl is not on PATH: the broker's own view cannot be read"
        lacking(message)
    done = subprocess.run(
        [ctl, "-q", *args, "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return rows


def test_callbacks_go_through_a_durable_quorum_queue(stack: Stack) -> None:
    stack.add_customer("RMQ-1", "254700111222")
    body = sample("c2b_confirmation_paybill_plain.json")
    body.update(TransID="RMQ0000001", BillRefNumber="RMQ-1", TransAmount="12.00")

    assert stack.post("c2b/confirmation", body).status_code == 200

    wait_until(lambda: stack.balance("RMQ-1") == "12.00")
    vhost = amqp_vhost(stack.env["MOMO_BROKER_URL"])
    queues = {
        q["name"]: q for q in rabbitmqctl("list_queues", "-p", vhost, "name", "type", "durable")
    }
    assert queues[QUEUE]["type"] == "quorum"
    assert queues[QUEUE]["durable"] is True
    exchanges = {e["name"]: e for e in rabbitmqctl("list_exchanges", "-p", vhost, "name", "type")}
    assert exchanges[QUEUE]["type"] == "topic"


def test_a_task_sent_for_later_waits_in_the_broker_not_in_a_worker(stack: Stack) -> None:
    producer = make_producer(stack.runtime.settings)
    vhost = amqp_vhost(stack.env["MOMO_BROKER_URL"])

    def waiting_in_delay_queues() -> int:
        rows = rabbitmqctl("list_queues", "-p", vhost, "name", "messages")
        return sum(q["messages"] for q in rows if q["name"].startswith("celery_delayed_"))

    before = waiting_in_delay_queues()
    # as a retry's countdown would send it (an hour: it runs after this session, harmlessly)
    producer.send_task(PROCESS_INBOX, countdown=3600)
    producer.close()

    wait_until(lambda: waiting_in_delay_queues() > before)
