"""RabbitMQ as the broker: a durable quorum queue, and retries that wait in the broker.

Nothing here reaches a broker: the queue and exchange are the declarations Celery would
send. tests/integration runs the whole pipeline on a real RabbitMQ with MOMO_TEST_BROKER.
"""

from __future__ import annotations

import pytest

from core.config import Settings, load_settings
from tasks.celery_app import QUEUE, celery_config, make_producer, rabbitmq_options


@pytest.mark.parametrize("url", ["amqp://guest:guest@mq:5672/momo", "amqps://u:p@mq:5671/momo"])
def test_on_rabbitmq_the_queue_is_a_durable_quorum_queue_on_a_topic_exchange(
    settings: Settings, url: str
) -> None:
    producer = make_producer(settings.with_overrides(broker_url=url))

    queue = producer.amqp.queues[QUEUE]

    assert queue.queue_arguments == {"x-queue-type": "quorum"}
    assert queue.durable and not queue.auto_delete
    # a retry's countdown goes through RabbitMQ's delayed delivery, which needs a topic
    # exchange; on a direct one the task would wait in a worker slot
    assert queue.exchange.type == "topic"
    assert producer.conf.worker_detect_quorum_queues is True
    assert producer.conf.task_acks_late is True


@pytest.mark.parametrize("url", [None, "redis://127.0.0.1:6379/0", "rediss://cache:6380/0"])
def test_off_rabbitmq_the_queue_stays_as_it_was(settings: Settings, url: str | None) -> None:
    producer = make_producer(settings.with_overrides(broker_url=url))

    queue = producer.amqp.queues[QUEUE]

    assert not queue.queue_arguments
    assert queue.exchange.type == "direct"
    assert rabbitmq_options(url) == {}
    assert "task_default_queue_type" not in celery_config(settings.with_overrides(broker_url=url))


def test_an_amqp_broker_url_is_settings_momo_takes() -> None:
    loaded = load_settings(
        {
            "MOMO_BROKER_URL": "amqp://momo:secret@mq:5672/momo",
            "MOMO_DATABASE_URL": "postgresql+psycopg://momo@db/momo",
        }
    )

    assert loaded.broker_url == "amqp://momo:secret@mq:5672/momo"
    assert celery_config(loaded)["task_default_queue_type"] == "quorum"
