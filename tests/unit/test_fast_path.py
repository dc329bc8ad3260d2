"""FastAccept: the webhook's common case answered below Flask, exactly as Flask answers it.

Every test here watches which layer answered: a request the fast path takes
never reaches Flask, and one it hands over reaches Flask once with its body
intact. Parity is checked against the same app with FastAccept bypassed.
"""

from __future__ import annotations

import io
import ipaddress
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder, TestResponse, run_wsgi_app

from core.config import Settings
from core.logs import AccessLog
from core.runtime import Runtime
from ingest.fast import FastAccept
from ingest.providers import ADAPTERS, build_runtime
from ingest.providers.mpesa import UNAVAILABLE
from ingest.spool import Spool
from ingest.store import COLUMNS, StoreFailed
from ingest.views import writer_for
from matcher.db import make_engine
from matcher.migrate import upgrade
from matcher.models import INBOX_PENDING, INBOX_PROCESSED, INBOX_REJECTED, InboxItem
from momo.app import create_app
from tests.conftest import PATH_TOKEN, mpesa_block, sample_bytes, webhook_url
from tests.unit.test_webhooks import ACK, PAYMENT_SAMPLES, VALIDATION_ACCEPTED

SAFARICOM = ipaddress.ip_network("196.201.214.0/24")
#: inbox columns that must match between the two paths (id and arrival time differ by nature)
COMPARED = [c for c in COLUMNS if c != "received_at"]
CONFIRMATION = "c2b_confirmation_paybill_plain.json"


# --- an app whose layers are watched --------------------------------------------------------


class CountingWriter:
    """The app's own inbox writer, counting the rows it is given."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.rows: list[dict[str, Any]] = []

    def store(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        self.real.store(row)

    def close(self) -> None:
        self.real.close()


class RefusingWriter:
    """An inbox writer that fails every write with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.rows: list[dict[str, Any]] = []

    def store(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        raise self.error

    def close(self) -> None:
        pass


@dataclass
class Edge:
    """A webhook app on a database of its own, and which layer answered its requests."""

    app: Flask
    runtime: Runtime
    client: FlaskClient
    writer: Any
    #: requests FastAccept looked at, and those it answered itself
    accept_calls: int = 0
    fast_answers: int = 0
    #: requests that reached the Flask app
    handed_over: int = 0
    #: how often the workers were told there is new inbox work
    nudges: int = 0

    def post(self, kind: str, body: bytes, token: str = PATH_TOKEN, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("content_type", "application/json")
        return self.client.post(webhook_url(kind, token), data=body, **kwargs)

    def refuse_writes(self, error: Exception) -> RefusingWriter:
        writer = RefusingWriter(error)
        self.app.extensions["momo_inbox_writer"] = writer
        self.writer = writer
        return writer

    def rows(self) -> list[dict[str, Any]]:
        with self.runtime.sessions() as session:
            items = session.scalars(select(InboxItem).order_by(InboxItem.id))
            return [{c: getattr(item, c) for c in COMPARED} for item in items]

    def nudge(self) -> None:
        self.nudges += 1

    def assert_flask_answered(self, requests: int = 1) -> None:
        assert (self.fast_answers, self.handed_over) == (0, requests)

    def assert_fast_path_answered(self, requests: int = 1) -> None:
        assert (self.fast_answers, self.handed_over) == (requests, 0)


MakeEdge = Callable[..., Edge]


def watch(edge: Edge, *, fast_path: bool) -> None:
    """Count what FastAccept answers and what reaches Flask; without ``fast_path``,
    requests go straight to Flask, as they did before FastAccept was installed."""
    fast = edge.app.extensions["momo_fast_accept"]
    assert isinstance(fast, FastAccept)
    accept, inner = fast._accept, fast.inner

    def watched_accept(environ: Any, path: str) -> tuple[str, bytes] | None:
        edge.accept_calls += 1
        answer = accept(environ, path)
        if answer is not None:
            edge.fast_answers += 1
        return answer

    def watched_inner(environ: Any, start_response: Any) -> Any:
        edge.handed_over += 1
        return inner(environ, start_response)

    setattr(fast, "_accept", watched_accept)  # noqa: B010 (mypy refuses assigning a method)
    fast.inner = watched_inner
    if not fast_path:
        # install() replaced app.wsgi_app (no ProxyFix here), inside the access log: put
        # Flask's own callable back there
        outer = edge.app.wsgi_app
        assert isinstance(outer, AccessLog) and outer.app is fast
        outer.app = watched_inner


@pytest.fixture
def make_edge(tmp_path: Path) -> Iterator[MakeEdge]:
    built: list[Runtime] = []

    def make(name: str = "fast", *, fast_path: bool = True, **overrides: Any) -> Edge:
        folder = tmp_path / name
        folder.mkdir()
        settings = Settings(
            database_url=f"sqlite:///{folder / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            instance_path=folder / "instance",
        ).with_overrides(**overrides)
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        runtime = build_runtime(settings)
        built.append(runtime)
        app = create_app(runtime=runtime)
        app.config["TESTING"] = True
        writer = CountingWriter(writer_for(app))
        app.extensions["momo_inbox_writer"] = writer
        edge = Edge(app=app, runtime=runtime, client=app.test_client(), writer=writer)
        runtime.nudge = edge.nudge
        watch(edge, fast_path=fast_path)
        return edge

    yield make
    for runtime in built:
        runtime.close()


def same_answer(a: TestResponse, b: TestResponse) -> None:
    assert a.status_code == b.status_code
    assert a.data == b.data
    assert a.headers["Content-Type"] == b.headers["Content-Type"]
    assert a.headers.get("Content-Length") == b.headers.get("Content-Length")
    assert a.headers.get("Retry-After") == b.headers.get("Retry-After")
    assert a.headers.get("X-Content-Type-Options") == b.headers.get("X-Content-Type-Options")
    assert a.headers.get("X-Content-Type-Options") == "nosniff"


def chunked_environ(body: bytes, kind: str = "c2b/confirmation") -> dict[str, Any]:
    """A POST as a server passes a chunked request on: no Content-Length, input terminated."""
    environ = EnvironBuilder(
        path=webhook_url(kind),
        method="POST",
        input_stream=io.BytesIO(body),
        headers=Headers({"Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    return environ


# --- the common case: same answer, same row, from the fast path -----------------------------


class TestParityWithFlask:
    @pytest.mark.parametrize(("name", "kind", "code"), PAYMENT_SAMPLES)
    def test_each_accepted_sample_gets_flasks_answer_and_row_without_reaching_flask(
        self, make_edge: MakeEdge, name: str, kind: str, code: str
    ) -> None:
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)
        body = sample_bytes(name)
        headers = {"User-Agent": "Daraja-test/1.0", "X-Real-IP": "196.201.214.200"}

        answer = fast.post(kind, body, headers=headers)
        expected = flask_only.post(kind, body, headers=headers)

        fast.assert_fast_path_answered()
        assert flask_only.accept_calls == 0  # the reference really bypassed FastAccept
        assert flask_only.handed_over == 1
        same_answer(answer, expected)
        assert answer.status_code == 200
        assert answer.get_json() == ACK
        assert fast.rows() == flask_only.rows()
        [row] = fast.rows()
        assert (row["code"], row["status"], row["body"]) == (code, INBOX_PENDING, body)
        assert row["headers"]["X-Real-IP"] == "196.201.214.200"
        assert len(fast.writer.rows) == 1
        assert fast.nudges == flask_only.nudges == 1

    def test_behind_a_trusted_proxy_the_forwarded_address_is_checked_and_kept_alike(
        self, make_edge: MakeEdge
    ) -> None:
        settings = {
            "providers": mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)),
            "trusted_proxy_hops": 1,
        }
        fast = make_edge("fast", **settings)
        flask_only = make_edge("flask", **settings)
        # with ProxyFix installed the fast path sits inside it; bypass it there instead
        proxy_fix: Any = flask_only.app.wsgi_app.app  # inside the access log
        fast_accept = flask_only.app.extensions["momo_fast_accept"]
        assert proxy_fix.app is fast_accept
        proxy_fix.app = fast_accept.inner
        body = sample_bytes(CONFIRMATION)
        request: dict[str, Any] = {
            "headers": {"X-Forwarded-For": "196.201.214.200"},
            "environ_base": {"REMOTE_ADDR": "10.0.0.5"},
        }

        answer = fast.post("c2b/confirmation", body, **request)
        expected = flask_only.post("c2b/confirmation", body, **request)

        fast.assert_fast_path_answered()
        assert flask_only.accept_calls == 0
        same_answer(answer, expected)
        assert answer.get_json() == ACK
        assert fast.rows() == flask_only.rows()
        assert [row["client_addr"] for row in fast.rows()] == ["196.201.214.200"]

    def test_a_body_of_exactly_64_kib_is_still_taken_by_the_fast_path(
        self, make_edge: MakeEdge
    ) -> None:
        edge = make_edge()
        body = sample_bytes(CONFIRMATION)
        padded = body + b" " * (64 * 1024 - len(body))

        answer = edge.post("c2b/confirmation", padded)

        assert answer.status_code == 200
        edge.assert_fast_path_answered()
        assert [row["body"] for row in edge.rows()] == [padded]


# --- everything else: Flask answers, with the body handed on intact -------------------------


class TestHandOverToFlask:
    @pytest.mark.parametrize("token", [PATH_TOKEN + "x", PATH_TOKEN[:-1], "t\u00e9st-path-token"])
    def test_a_wrong_token_is_answered_404_by_flask_and_nothing_is_stored(
        self, make_edge: MakeEdge, token: str
    ) -> None:
        edge = make_edge()

        answer = edge.post("c2b/confirmation", sample_bytes(CONFIRMATION), token=token)

        assert answer.status_code == 404
        edge.assert_flask_answered()
        assert edge.rows() == []

    def test_wrong_tokens_still_count_towards_the_limit_and_the_right_token_still_passes(
        self, make_edge: MakeEdge
    ) -> None:
        edge = make_edge(unauthenticated_per_minute=3)
        body = sample_bytes(CONFIRMATION)

        statuses = [
            edge.post("c2b/confirmation", body, token="wrong").status_code for _ in range(4)
        ]

        assert statuses == [404, 404, 404, 429]
        edge.assert_flask_answered(4)
        assert edge.rows() == []
        good = edge.post("c2b/confirmation", body)
        assert good.status_code == 200
        assert edge.fast_answers == 1

    @pytest.mark.parametrize("kind", ["c2b/other", "c2b", "b2c/result", "stk/extra", "stk/"])
    def test_an_unknown_kind_is_answered_404_by_flask(self, make_edge: MakeEdge, kind: str) -> None:
        edge = make_edge()

        answer = edge.post(kind, sample_bytes(CONFIRMATION))

        assert answer.status_code == 404
        edge.assert_flask_answered()
        assert edge.rows() == []

    def test_an_unknown_provider_is_answered_404_by_flask(self, make_edge: MakeEdge) -> None:
        edge = make_edge()

        answer = edge.client.post(
            f"/webhooks/airtel/{PATH_TOKEN}/c2b/confirmation",
            data=sample_bytes(CONFIRMATION),
            content_type="application/json",
        )

        assert answer.status_code == 404
        edge.assert_flask_answered()
        assert edge.accept_calls == 1
        assert edge.rows() == []

    @pytest.mark.parametrize("kind", ["c2b/confirmation", "stk"])
    def test_get_is_answered_405_by_flask(self, make_edge: MakeEdge, kind: str) -> None:
        edge = make_edge()

        answer = edge.client.get(webhook_url(kind))

        assert answer.status_code == 405
        edge.assert_flask_answered()
        assert edge.accept_calls == 0
        assert edge.rows() == []

    @pytest.mark.parametrize(
        ("kind", "body", "reason"),
        [
            ("c2b/confirmation", b"this is not json", "invalid_json"),
            ("c2b/confirmation", b"\xff\xfe{}", "invalid_json"),
            ("c2b/confirmation", b'["TKQ4A91B2C"]', "not_an_object"),
            ("c2b/confirmation", b"{}", "missing_field"),
            ("c2b/confirmation", b"", "invalid_json"),
            ("stk", b'{"Body": {}}', "missing_field"),
            ("stk", sample_bytes(CONFIRMATION), "missing_field"),
            ("c2b/confirmation", sample_bytes("stk_callback_success.json"), "missing_field"),
        ],
    )
    def test_a_body_not_in_the_providers_shape_is_kept_once_as_rejected_by_flask(
        self, make_edge: MakeEdge, kind: str, body: bytes, reason: str
    ) -> None:
        edge = make_edge()

        answer = edge.post(kind, body)

        assert answer.status_code == 400
        assert answer.get_json()["reason"] == reason
        edge.assert_flask_answered()
        [row] = edge.rows()
        assert (row["status"], row["reason"], row["body"], row["kind"]) == (
            INBOX_REJECTED,
            reason,
            body,
            kind,
        )
        assert len(edge.writer.rows) == 1

    @pytest.mark.parametrize("mode", ["accept", "reject-unknown-account"])
    def test_a_validation_request_is_answered_by_flask_exactly_as_without_the_fast_path(
        self, make_edge: MakeEdge, mode: str
    ) -> None:
        fast = make_edge("fast", providers=mpesa_block(PATH_TOKEN, validation=mode))
        flask_only = make_edge(
            "flask", fast_path=False, providers=mpesa_block(PATH_TOKEN, validation=mode)
        )
        body = sample_bytes("c2b_validation.json")

        answer = fast.post("c2b/validation", body)
        expected = flask_only.post("c2b/validation", body)

        fast.assert_flask_answered()
        assert fast.accept_calls == 1
        same_answer(answer, expected)
        assert fast.rows() == flask_only.rows()
        [row] = fast.rows()
        assert row["status"] == INBOX_PROCESSED
        if mode == "accept":
            assert answer.get_json() == VALIDATION_ACCEPTED

    def test_a_content_length_over_64_kib_is_answered_413_by_flask_and_nothing_stored(
        self, make_edge: MakeEdge
    ) -> None:
        edge = make_edge()
        body = sample_bytes(CONFIRMATION)
        oversized = body + b" " * (64 * 1024 + 1 - len(body))

        answer = edge.post("c2b/confirmation", oversized)

        assert answer.status_code == 413
        assert answer.get_json()["ResultCode"] != 0
        edge.assert_flask_answered()
        assert edge.rows() == []

    def test_an_address_outside_the_allow_list_is_answered_403_by_flask(
        self, make_edge: MakeEdge
    ) -> None:
        edge = make_edge(
            providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)),
            unauthenticated_per_minute=1,
        )
        body = sample_bytes(CONFIRMATION)

        first = edge.post("c2b/confirmation", body)
        second = edge.post("c2b/confirmation", body)

        assert (first.status_code, second.status_code) == (403, 429)
        edge.assert_flask_answered(2)
        assert edge.rows() == []

    def test_an_address_inside_the_allow_list_is_taken_by_the_fast_path(
        self, make_edge: MakeEdge
    ) -> None:
        edge = make_edge(providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)))

        answer = edge.post(
            "c2b/confirmation",
            sample_bytes(CONFIRMATION),
            environ_base={"REMOTE_ADDR": "196.201.214.7"},
        )

        assert answer.get_json() == ACK
        edge.assert_fast_path_answered()
        assert [row["client_addr"] for row in edge.rows()] == ["196.201.214.7"]

    def test_a_chunked_request_without_content_length_is_stored_once_by_flask(
        self, make_edge: MakeEdge
    ) -> None:
        edge = make_edge()
        body = sample_bytes(CONFIRMATION)

        app_iter, status, _ = run_wsgi_app(edge.app, chunked_environ(body), buffered=True)

        assert status.startswith("200")
        assert json.loads(b"".join(app_iter)) == ACK
        edge.assert_flask_answered()
        [row] = edge.rows()
        assert row["body"] == body
        assert row["status"] == INBOX_PENDING
        assert "Content-Length" not in row["headers"]

    def test_a_chunked_request_over_64_kib_gets_the_answer_flask_gives_it(
        self, make_edge: MakeEdge
    ) -> None:
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)
        body = sample_bytes(CONFIRMATION) + b" " * (64 * 1024)

        answer = run_wsgi_app(fast.app, chunked_environ(body), buffered=True)
        expected = run_wsgi_app(flask_only.app, chunked_environ(body), buffered=True)

        fast.assert_flask_answered()
        assert answer[1] == expected[1]
        assert b"".join(answer[0]) == b"".join(expected[0])
        assert answer[1].startswith("413")
        assert fast.rows() == flask_only.rows() == []

    def test_a_chunked_body_over_64_kib_is_refused_413_and_not_stored(
        self, make_edge: MakeEdge
    ) -> None:
        edge = make_edge()
        body = sample_bytes(CONFIRMATION) + b" " * (64 * 1024)

        _, status, _ = run_wsgi_app(edge.app, chunked_environ(body), buffered=True)

        assert status.startswith("413")
        assert edge.rows() == []

    @pytest.mark.parametrize("coding", ["chunked", "Chunked", "gzip, chunked", "identity"])
    def test_a_body_framed_by_content_length_and_transfer_encoding_is_refused_400_unstored(
        self, make_edge: MakeEdge, coding: str
    ) -> None:
        """The server de-chunks the body; a Content-Length covering a valid prefix of it must
        not get that prefix stored."""
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)
        body = sample_bytes(CONFIRMATION)
        dechunked = body + b' , "more": "of the real body"}'

        def ambiguous() -> dict[str, Any]:
            environ = chunked_environ(dechunked)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["HTTP_TRANSFER_ENCODING"] = coding
            return environ

        answer = run_wsgi_app(fast.app, ambiguous(), buffered=True)
        expected = run_wsgi_app(flask_only.app, ambiguous(), buffered=True)

        assert answer[1].startswith("400")
        assert (answer[1], b"".join(answer[0])) == (expected[1], b"".join(expected[0]))
        refusal = json.loads(b"".join(answer[0]))
        assert refusal["ResultCode"] != 0
        assert "Content-Length and Transfer-Encoding" in refusal["detail"]
        fast.assert_flask_answered()
        assert fast.rows() == flask_only.rows() == []
        assert fast.writer.rows == []

    @pytest.mark.parametrize("coding", ["gzip", "gzip, chunked", "chunked, identity"])
    def test_a_transfer_coding_other_than_chunked_is_refused_400_unstored(
        self, make_edge: MakeEdge, coding: str
    ) -> None:
        edge = make_edge()
        environ = chunked_environ(sample_bytes(CONFIRMATION))
        environ["HTTP_TRANSFER_ENCODING"] = coding

        app_iter, status, _ = run_wsgi_app(edge.app, environ, buffered=True)

        assert status.startswith("400")
        assert "is not supported" in json.loads(b"".join(app_iter))["detail"]
        assert edge.rows() == []

    def test_an_api_request_framed_twice_gets_a_problem_400(self, make_edge: MakeEdge) -> None:
        edge = make_edge()
        environ = chunked_environ(b"{}")
        environ["PATH_INFO"] = "/api/v1/customers"
        environ["CONTENT_LENGTH"] = "2"

        app_iter, status, headers = run_wsgi_app(edge.app, environ, buffered=True)

        assert status.startswith("400")
        assert headers["Content-Type"] == "application/problem+json"
        assert json.loads(b"".join(app_iter))["code"] == "bad_request"

    @pytest.mark.parametrize(
        "content_length",
        ["abc", "-1", "99999999999999999999"],
    )
    def test_an_unusable_content_length_gets_the_answer_flask_gives_it(
        self, make_edge: MakeEdge, content_length: str
    ) -> None:
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)
        body = sample_bytes(CONFIRMATION)
        overrides = {"CONTENT_LENGTH": content_length}

        answer = fast.post("c2b/confirmation", body, environ_overrides=overrides)
        expected = flask_only.post("c2b/confirmation", body, environ_overrides=overrides)

        fast.assert_flask_answered()
        same_answer(answer, expected)
        assert answer.status_code != 200
        assert fast.rows() == flask_only.rows()

    def test_a_body_shorter_than_its_content_length_gets_the_answer_flask_gives_it(
        self, make_edge: MakeEdge
    ) -> None:
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)
        body = sample_bytes(CONFIRMATION)
        overrides = {"CONTENT_LENGTH": str(len(body) + 10)}

        answer = fast.post("c2b/confirmation", body, environ_overrides=overrides)
        expected = flask_only.post("c2b/confirmation", body, environ_overrides=overrides)

        fast.assert_flask_answered()
        same_answer(answer, expected)
        assert answer.status_code != 200
        assert fast.rows() == flask_only.rows() == []


# --- an error inside the fast path before anything is stored --------------------------------


class TestParseErrors:
    def test_a_parser_that_fails_once_leaves_the_request_to_flask_which_stores_it_once(
        self, make_edge: MakeEdge, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        edge = make_edge()
        adapter = ADAPTERS["mpesa"]
        real_parse = adapter.parse
        calls: list[bytes] = []

        def parse_failing_first(kind: str, body: bytes, ctx: Any) -> Any:
            calls.append(body)
            if len(calls) == 1:
                raise RuntimeError("parser bug")
            return real_parse(kind, body, ctx)

        monkeypatch.setattr(adapter, "parse", parse_failing_first)
        body = sample_bytes(CONFIRMATION)

        answer = edge.post("c2b/confirmation", body)

        assert answer.status_code == 200
        assert answer.get_json() == ACK
        edge.assert_flask_answered()
        assert calls == [body, body]  # Flask read the same bytes the fast path had read
        assert len(edge.writer.rows) == 1
        [row] = edge.rows()
        assert (row["code"], row["status"]) == ("TKQ4A91B2C", INBOX_PENDING)

    def test_a_parser_that_always_fails_gets_flasks_500_and_nothing_is_stored(
        self, make_edge: MakeEdge, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)

        def broken_parse(kind: str, body: bytes, ctx: Any) -> Any:
            raise RuntimeError("parser bug")

        monkeypatch.setattr(ADAPTERS["mpesa"], "parse", broken_parse)
        body = sample_bytes(CONFIRMATION)

        answer = fast.post("c2b/confirmation", body)
        expected = flask_only.post("c2b/confirmation", body)

        fast.assert_flask_answered()
        same_answer(answer, expected)
        assert answer.status_code == 500
        assert answer.get_json()["ResultCode"] != 0
        assert fast.writer.rows == []
        assert fast.rows() == []
        assert fast.nudges == 0


# --- when the inbox cannot take the write ----------------------------------------------------


class TestStoreFailures:
    def test_a_failed_inbox_write_is_spooled_and_acknowledged_by_the_fast_path(
        self, make_edge: MakeEdge, tmp_path: Path
    ) -> None:
        edge = make_edge()
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        edge.runtime.spool = spool
        writer = edge.refuse_writes(StoreFailed("server closed the connection unexpectedly"))
        body = sample_bytes(CONFIRMATION)

        answer = edge.post("c2b/confirmation", body)

        assert answer.status_code == 200
        assert answer.get_json() == ACK
        edge.assert_fast_path_answered()
        assert len(writer.rows) == 1
        assert spool.has_records()
        assert edge.rows() == []
        assert edge.nudges == 1
        assert spool.drain(edge.runtime.sessions).stored == 1
        [row] = edge.rows()
        assert (row["body"], row["code"], row["status"]) == (body, "TKQ4A91B2C", INBOX_PENDING)

    @pytest.mark.parametrize("spool", ["none", "unwritable"])
    def test_when_neither_inbox_nor_spool_takes_it_the_answer_is_flasks_503(
        self, make_edge: MakeEdge, tmp_path: Path, spool: str
    ) -> None:
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)
        if spool == "unwritable":
            blocker = tmp_path / "not-a-dir"
            blocker.write_text("")
            for edge in (fast, flask_only):
                edge.runtime.spool = Spool(blocker / "spool", max_bytes=1 << 20, host="h1")
        writer = fast.refuse_writes(StoreFailed("could not connect"))
        flask_only.refuse_writes(StoreFailed("could not connect"))
        body = sample_bytes(CONFIRMATION)

        answer = fast.post("c2b/confirmation", body)
        expected = flask_only.post("c2b/confirmation", body)

        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.get_json() == UNAVAILABLE
        assert answer.get_json()["ResultCode"] != 0
        same_answer(answer, expected)
        fast.assert_fast_path_answered()  # not handed on: Flask would try the write again
        assert len(writer.rows) == 1
        assert fast.rows() == []
        assert fast.nudges == 0

    def test_an_unexpected_error_while_storing_gets_flasks_500_and_no_second_try(
        self, make_edge: MakeEdge
    ) -> None:
        fast, flask_only = make_edge("fast"), make_edge("flask", fast_path=False)
        writer = fast.refuse_writes(RuntimeError("stored or not, nobody knows"))
        flask_only.refuse_writes(RuntimeError("stored or not, nobody knows"))
        body = sample_bytes(CONFIRMATION)

        answer = fast.post("c2b/confirmation", body)
        expected = flask_only.post("c2b/confirmation", body)

        assert answer.status_code == 500
        assert answer.get_json() != ACK
        same_answer(answer, expected)
        fast.assert_fast_path_answered()
        assert len(writer.rows) == 1
