"""Prometheus metrics: what every momo process counts, and what ``/metrics`` shows.

Counted as it happens, in the process it happens in:

- ``momo_http_request_duration_seconds{route,method,status}``: every request to web and
  api, labelled by the route's template (``/api/v1/payments/<payment_id>``), never the
  path, which carries webhook tokens, phones and ids; the webhook's fast path is the route
  ``webhook_fast``, a path no route matches is ``unmatched``.
- ``momo_callbacks_total{provider,kind,outcome}``: each callback the webhook kept or could
  not keep (``accepted``, ``spooled``, ``rejected``, ``validation``, ``failed``).
- ``momo_callback_to_credit_seconds{provider}``: from a callback's arrival in the inbox to
  the commit that credited its customer, observed by the worker.

Read from the database and the disk when ``/metrics`` is asked (a ``StateCollector``), so
they are the database's numbers at that moment, kept in no process's memory: the age of
the oldest pending inbox row, pending and dead rows, unassociated payments and their
money, what waits in the spool, and the last ``momo check``.

Under a pre-forking server (gunicorn, granian's workers, Celery's prefork pool) each
process counts on its own: with ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps
every process's values in files there and ``/metrics`` adds them up. The directory must be
empty when the server starts, and one server's alone.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    write_to_textfile,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from core.config import ConfigError
from matcher.check import last_check_run
from matcher.db import answer_within
from matcher.models import INBOX_DEAD, INBOX_PENDING, UNASSOCIATED, InboxItem, Payment

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger(__name__)

#: prometheus_client's own variable (it reads it when imported); momo only asks which way
#: the library counts, to show every process's values or this one's
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: the environ key naming the route that answered: Flask's matched rule (left there at the
#: request's teardown), or a name a WSGI layer below Flask gives
ROUTE_KEY = "momo.route"
#: the route label of callbacks the webhook's fast path answered without Flask
FAST_ROUTE = "webhook_fast"
#: the route label of a request no route matched (a 404 of the router)
UNMATCHED_ROUTE = "unmatched"
#: methods counted by name; any other a client invents is "other", so none adds a series
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: callback outcomes, as counted where the webhook stores a callback
ACCEPTED, SPOOLED, REJECTED, VALIDATION, FAILED = (
    "accepted",
    "spooled",
    "rejected",
    "validation",
    "failed",
)

REQUEST_SECONDS = Histogram(
    "momo_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CALLBACKS = Counter(
    "momo_callbacks",
    "Provider callbacks the webhook kept (or could not keep), by provider, kind and outcome.",
    ["provider", "kind", "outcome"],
)
CREDIT_SECONDS = Histogram(
    "momo_callback_to_credit_seconds",
    "From a callback's arrival in the inbox to the commit that credited its customer.",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)


_failed_once: list[str] = []


def _counting_failed(what: str) -> None:
    # Counting never fails the work it counts (a callback stored, a request answered, a
    # batch committed): said once per process, then left to the scrape's gaps to show.
    if what not in _failed_once:
        _failed_once.append(what)
        log.exception("could not count %s (metrics); the work itself went on", what)


def count_callback(provider: str, kind: str, outcome: str) -> None:
    try:
        CALLBACKS.labels(provider, kind, outcome).inc()
    except Exception:
        _counting_failed("a callback")


def observe_credits(credited: Iterable[tuple[str, float]]) -> None:
    """``(provider, seconds since the callback arrived)`` of each payment credited."""
    try:
        for provider, seconds in credited:
            CREDIT_SECONDS.labels(provider).observe(max(seconds, 0.0))
    except Exception:
        _counting_failed("a credit")


# --- requests -----------------------------------------------------------------------------


def _route(environ: Mapping[str, Any]) -> str:
    return str(environ.get(ROUTE_KEY, UNMATCHED_ROUTE))


def _note_route(_: BaseException | None = None) -> None:
    # at the request's teardown, which every request Flask served reaches (whatever hook
    # answered it): the rule the router matched, for the access log's measure to read
    rule = request.url_rule
    if rule is not None:
        request.environ.setdefault(ROUTE_KEY, rule.rule)


def observe_request(environ: Mapping[str, Any], status: int, seconds: float) -> None:
    """One answered request, under its route's template (given to ``core.logs.AccessLog``,
    which times every request already)."""
    method = environ.get("REQUEST_METHOD", "")
    try:
        REQUEST_SECONDS.labels(
            _route(environ), method if method in METHODS else "other", str(status)
        ).observe(seconds)
    except Exception:
        _counting_failed("a request")


# --- what /metrics shows ------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR; ConfigError naming it when it is set to no writable
    directory: every request would fail counting itself, so the process must not start."""
    folder = os.environ.get(MULTIPROC_VARIABLE) or None
    if folder is not None and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        raise ConfigError(
            f"{MULTIPROC_VARIABLE}={folder!r} is not a directory this process can write: "
            "create it (empty, one server's alone) or leave the variable unset"
        )
    return folder


def process_metrics() -> bytes:
    """This process's counts, or every process's under PROMETHEUS_MULTIPROC_DIR."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def exposition(registry: CollectorRegistry | None) -> bytes:
    """The text ``/metrics`` answers: the counts, then what ``registry`` reads at scrape."""
    body = process_metrics()
    return body + generate_latest(registry) if registry is not None else body


CONTENT_TYPE = CONTENT_TYPE_LATEST


#: a scrape waits no longer than this for the database
SCRAPE_SECONDS = 2.0


class StateCollector:
    """Gauges read when scraped: the inbox, unassociated money and dead rows (with
    ``database``), the spool (with the runtime's spool), and the last ``momo check``.

    A database that does not answer within ``SCRAPE_SECONDS`` makes
    ``momo_database_up`` 0 and leaves the database's gauges out, so an alert on them does
    not fire on stale numbers; the scrape still answers.
    """

    def __init__(self, runtime: Runtime, *, database: bool) -> None:
        self.runtime = runtime
        self.database = database

    def collect(self) -> Iterator[Metric]:
        if self.database:
            yield from self._database()
        spool = self.runtime.spool
        if spool is not None:
            try:
                backlog = spool.backlog()
            except OSError:
                log.warning("could not read the spool's backlog for /metrics", exc_info=True)
            else:
                yield GaugeMetricFamily(
                    "momo_spool_bytes",
                    "Bytes of acknowledged callbacks waiting in the spool to drain into the inbox.",
                    value=backlog["bytes"],
                )
                yield GaugeMetricFamily(
                    "momo_spool_files", "Spool files waiting to drain.", value=backlog["files"]
                )

    def _database(self) -> Iterator[Metric]:
        engine = self.runtime.engine
        try:
            with answer_within(SCRAPE_SECONDS), engine.connect() as connection:
                if engine.dialect.name == "postgresql":
                    # the server gives up too, not only this client
                    connection.execute(
                        text(f"SET LOCAL statement_timeout = {int(SCRAPE_SECONDS * 1000)}")
                    )
                oldest = connection.execute(
                    select(InboxItem.received_at)
                    .where(InboxItem.status == INBOX_PENDING)
                    .order_by(InboxItem.id)
                    .limit(1)
                ).scalar()
                pending, dead = (
                    connection.execute(
                        select(func.count()).where(InboxItem.status == status)
                    ).scalar_one()
                    for status in (INBOX_PENDING, INBOX_DEAD)
                )
                last_check = last_check_run(connection)
                unassociated, money = connection.execute(
                    select(func.count(), func.coalesce(func.sum(Payment.amount_minor), 0)).where(
                        Payment.status == UNASSOCIATED
                    )
                ).one()
                connection.rollback()
        except SQLAlchemyError as exc:
            log.warning("/metrics could not read the database: %s", type(exc).__name__)
            yield GaugeMetricFamily(
                "momo_database_up", "1 when the database answered this scrape.", value=0
            )
            return
        yield GaugeMetricFamily(
            "momo_database_up", "1 when the database answered this scrape.", value=1
        )
        lag = 0.0
        if oldest is not None:
            lag = max(0.0, time.time() - oldest.timestamp())
        yield GaugeMetricFamily(
            "momo_inbox_lag_seconds",
            "Age of the oldest pending inbox row (0: none pending).",
            value=lag,
        )
        yield GaugeMetricFamily("momo_inbox_pending", "Inbox rows pending.", value=pending)
        yield GaugeMetricFamily(
            "momo_inbox_dead",
            "Inbox rows given up as dead: each needs an operator (fix, then replay).",
            value=dead,
        )
        yield GaugeMetricFamily(
            "momo_unassociated_payments",
            "Payments associated with no customer.",
            value=unassociated,
        )
        yield GaugeMetricFamily(
            "momo_unassociated_minor",
            "Money of the unassociated payments, in minor units (cents) of MOMO_CURRENCY.",
            value=int(money),
        )
        if last_check is not None:
            yield from _CheckResult(
                last_check.violations, last_check.finished_at.timestamp()
            ).collect()


def instrument(app: Flask) -> Flask:
    """``app`` answering ``GET /metrics`` (its requests are counted by the access log's
    ``observe_request``).

    The database's gauges are read by the app that serves the operator API (``api``, or
    ``momo serve``'s both), the spool's by the one that has a spool (the webhook's): one
    scrape target each, so no number is reported twice. No token is asked: nothing shown
    names a customer, a payer or a path; keep it off the public listener (deploy/nginx).
    """
    multiprocess_dir()  # a wrong one stops the start, not every request
    runtime: Runtime = app.extensions["momo"]
    database = "api" in app.blueprints
    registry = CollectorRegistry()
    registry.register(StateCollector(runtime, database=database))

    def metrics() -> Response:
        return Response(exposition(registry), content_type=CONTENT_TYPE)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
    app.teardown_request(_note_route)
    return app


# --- momo check's result ------------------------------------------------------------------

CHECK_FILE = "momo_check.prom"


def check_file(instance_path: Path) -> Path:
    """Where ``momo check`` leaves its result: a Prometheus text file, which
    node_exporter's textfile collector can read as well as momo's ``/metrics``."""
    return instance_path / "metrics" / CHECK_FILE


class _CheckResult:
    def __init__(self, violations: int, finished: float) -> None:
        self.violations, self.finished = violations, finished

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "momo_check_ok",
            "1 when the last momo check found no violation.",
            value=0 if self.violations else 1,
        )
        yield GaugeMetricFamily(
            "momo_check_violations", "Violations the last momo check found.", value=self.violations
        )
        yield GaugeMetricFamily(
            "momo_check_last_run_timestamp_seconds",
            "When the last momo check finished (Unix time).",
            value=self.finished,
        )


def write_check_result(path: Path, violations: int, *, now: float | None = None) -> None:
    """Record a finished ``momo check`` (written whole, then renamed into place)."""
    # a collector of its own, not Gauges: under PROMETHEUS_MULTIPROC_DIR a Gauge would
    # leave this command's value among the servers' files
    registry = CollectorRegistry()
    registry.register(_CheckResult(violations, time.time() if now is None else now))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


# --- the worker's own listener ------------------------------------------------------------


def metrics_listen(env: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """``(host, port)`` of MOMO_METRICS_PORT (``PORT`` on 127.0.0.1, or ``HOST:PORT``), or
    None when unset; ConfigError naming it when it is neither."""
    env = os.environ if env is None else env
    raw = env.get("MOMO_METRICS_PORT", "").strip()
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"MOMO_METRICS_PORT={raw!r} is not a port (9102) or HOST:PORT (0.0.0.0:9102)"
        )
    return host, int(port)


def worker_registry() -> CollectorRegistry:
    """What a worker's listener shows: every pool process's counts under
    PROMETHEUS_MULTIPROC_DIR, else this process's."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def process_gone(pid: int) -> None:
    """A pool process exited: its live values (none of momo's gauges are live) go."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)
