"""One logging setup for every process: text or JSON lines, the ids of a payment's story,
the webhook token masked, and an access line per request."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest
from flask.testing import FlaskClient

from core.config import ConfigError
from core.logs import bound, configure_logging, log_settings
from tests.conftest import PATH_TOKEN, sample_bytes


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where configured lines go; the root logger is put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_time_level_logger_message_and_the_bound_ids(stream: io.StringIO) -> None:
    configure_logging(env={"MOMO_LOG_FORMAT": "json"}, stream=stream)

    with bound(request_id="r-1", inbox_id=7):
        logging.getLogger("tasks.work").info(
            "credited %s", "TKQ4A91B2C", extra={"code": "TKQ4A91B2C"}
        )
    logging.getLogger("tasks.work").warning("after")

    first, second = lines(stream)
    assert first["level"] == "INFO" and first["logger"] == "tasks.work"
    assert first["message"] == "credited TKQ4A91B2C"
    assert (first["request_id"], first["inbox_id"], first["code"]) == ("r-1", 7, "TKQ4A91B2C")
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    # ids end with their stretch of work
    assert "request_id" not in second and "inbox_id" not in second


def test_a_webhook_token_is_masked_in_any_logger_s_message_and_traceback(
    stream: io.StringIO,
) -> None:
    configure_logging(env={"MOMO_LOG_FORMAT": "json"}, stream=stream)
    path = f"/webhooks/daraja/{PATH_TOKEN}/c2b/confirmation"

    try:
        raise ValueError(f"bad body at {path}")
    except ValueError:
        logging.getLogger("some.library").exception("failed on %s", path)

    (line,) = lines(stream)
    assert PATH_TOKEN not in json.dumps(line)
    assert "/webhooks/daraja/***/c2b/confirmation" in line["message"]
    assert "/webhooks/daraja/***/c2b/confirmation" in line["exc"]


def test_text_lines_show_the_ids_after_the_message(stream: io.StringIO) -> None:
    configure_logging(env={}, stream=stream)

    with bound(task_id="t-9"):
        logging.getLogger("tasks.work").info("inbox batch done")

    text = stream.getvalue()
    assert " INFO tasks.work: inbox batch done [task_id=t-9]" in text


def test_the_level_is_read_and_configuring_again_replaces_the_handler(stream: io.StringIO) -> None:
    configure_logging(env={"MOMO_LOG_LEVEL": "warning"}, stream=stream)
    configure_logging(env={"MOMO_LOG_LEVEL": "warning"}, stream=stream)

    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")

    assert stream.getvalue().count("shown") == 1
    assert "hidden" not in stream.getvalue()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MOMO_LOG_FORMAT": "yaml"}, "MOMO_LOG_FORMAT='yaml'"),
        ({"MOMO_LOG_LEVEL": "loud"}, "MOMO_LOG_LEVEL='LOUD'"),
    ],
)
def test_a_bad_setting_is_refused_naming_it_and_the_choices(env: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as refused:
        log_settings(env)
    assert "one of" in str(refused.value)


def test_the_command_writes_json_lines_and_refuses_a_bad_format(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
    env |= {"MOMO_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "MOMO_LOG_FORMAT": "json"}
    # a misspelt variable is warned about at start: a line to read
    env["MOMO_TIMEZON"] = "Africa/Nairobi"
    momo = [sys.executable, "-c", "from momo.cli import main; main()"]

    done = subprocess.run(
        [*momo, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any("MOMO_TIMEZON" in line["message"] and line["level"] == "WARNING" for line in logged)

    env["MOMO_LOG_FORMAT"] = "xml"
    refused = subprocess.run(
        [*momo, "check"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 1
    assert "MOMO_LOG_FORMAT='xml' is not one of: text, json" in refused.stderr


class TestAccessLog:
    def access(self, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "momo.access"]

    def test_a_callback_is_logged_with_the_token_masked_and_the_request_id_sent_back(
        self, client: FlaskClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, "momo.access")
        path = f"/webhooks/daraja/{PATH_TOKEN}/c2b/confirmation"

        answer = client.post(
            path,
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            content_type="application/json",
        )

        (record,) = self.access(caplog)
        assert answer.status_code == 200
        assert record.path == "/webhooks/daraja/***/c2b/confirmation"  # type: ignore[attr-defined]
        assert PATH_TOKEN not in record.getMessage()
        assert (record.method, record.status) == ("POST", 200)  # type: ignore[attr-defined]
        assert record.request_id == answer.headers["X-Request-ID"]  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]

    def test_the_query_string_is_left_out_and_a_plain_caller_id_is_kept(
        self, client: FlaskClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, "momo.access")

        answer = client.get("/api/v1/customers?q=0712345678", headers={"X-Request-ID": "edge-42"})

        (record,) = self.access(caplog)
        assert answer.status_code == 401
        assert record.path == "/api/v1/customers"  # type: ignore[attr-defined]
        assert "0712345678" not in record.getMessage()
        assert record.status == 401  # type: ignore[attr-defined]
        assert record.request_id == "edge-42" == answer.headers["X-Request-ID"]  # type: ignore[attr-defined]

    def test_a_caller_id_that_is_not_plain_is_replaced(
        self, client: FlaskClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, "momo.access")

        answer = client.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 80})

        (record,) = self.access(caplog)
        assert record.request_id == answer.headers["X-Request-ID"]  # type: ignore[attr-defined]
        assert len(answer.headers["X-Request-ID"]) == 32
