"""A webhook path's token never reaches a log line: momo's, Flask's, werkzeug's or gunicorn's."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from core.redact import PATH_LOGGERS, mask_webhook_paths
from ingest.providers import ADAPTERS
from tests.conftest import PATH_TOKEN, sample_bytes, webhook_url

URL = webhook_url("c2b/confirmation")
MASKED = "/webhooks/mpesa/***/c2b/confirmation"


def everything_logged(records: list[logging.LogRecord]) -> str:
    """Each record as a plain handler prints it: message, traceback and stack."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


class TestMaskWebhookPaths:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation", MASKED),
            (
                f'"POST /webhooks/mpesa/{PATH_TOKEN}/stk HTTP/1.1" 200 -',
                '"POST /webhooks/mpesa/***/stk HTTP/1.1" 200 -',
            ),
            (
                f"http://127.0.0.1:8000/webhooks/mpesa/{PATH_TOKEN}/c2b/validation?x=1",
                "http://127.0.0.1:8000/webhooks/mpesa/***/c2b/validation?x=1",
            ),
            (
                f"/webhooks/mpesa/{PATH_TOKEN} then /webhooks/airtel/other-token/x",
                "/webhooks/mpesa/*** then /webhooks/airtel/***/x",
            ),
            ("/api/v1/payments?q=x", "/api/v1/payments?q=x"),
            ("/webhooks/mpesa/", "/webhooks/mpesa/"),
        ],
    )
    def test_the_token_segment_of_every_webhook_path_is_masked(
        self, text: str, expected: str
    ) -> None:
        assert mask_webhook_paths(text) == expected


class TestLogs:
    def test_an_unhandled_webhook_error_is_logged_without_the_token(
        self, app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken_parse(kind: str, body: bytes, ctx: Any) -> Any:
            raise RuntimeError(f"parser bug on POST {URL}")

        monkeypatch.setattr(ADAPTERS["mpesa"], "parse", broken_parse)
        caplog.set_level(logging.INFO)

        answer = app.test_client().post(
            URL, data=sample_bytes("c2b_confirmation_paybill_plain.json")
        )

        assert answer.status_code == 500
        logged = everything_logged(caplog.records)
        assert "unhandled error on POST " + MASKED in logged
        assert "RuntimeError: parser bug on POST " + MASKED in logged  # the traceback too
        assert PATH_TOKEN not in logged

    @pytest.mark.parametrize("logger", PATH_LOGGERS)
    def test_a_record_with_a_webhook_path_is_masked_on_every_server_logger(
        self, app: Flask, caplog: pytest.LogCaptureFixture, logger: str
    ) -> None:
        caplog.set_level(logging.INFO)
        log = logging.getLogger(logger)
        if logger == "gunicorn.access":
            # gunicorn's access log formats a mapping of "atoms"
            log.info('%(h)s "%(r)s" %(s)s', {"h": "127.0.0.1", "r": f"POST {URL}", "s": "404"})
        else:
            log.info('127.0.0.1 - - "%s" %s', f"POST {URL} HTTP/1.1", 404)

        assert everything_logged(caplog.records).count(MASKED) == 1
        assert PATH_TOKEN not in everything_logged(caplog.records)

    def test_werkzeugs_request_log_under_momo_serve_is_masked(
        self, app: Flask, caplog: pytest.LogCaptureFixture
    ) -> None:
        from werkzeug._internal import _log  # what werkzeug's request handler logs through

        caplog.set_level(logging.INFO)
        _log("info", '127.0.0.1 - - [01/Dec/2026 10:00:00] "%s" %s %s', f"POST {URL}", 200, "-")

        assert MASKED in everything_logged(caplog.records)
        assert PATH_TOKEN not in everything_logged(caplog.records)
