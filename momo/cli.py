"""The ``momo`` command: serve, migrate, run workers, manage tokens and customers."""

from __future__ import annotations

import csv
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from core.config import ConfigError, Settings, hide_passwords, path_token_weakness
from core.providers import listening
from ingest.providers import ADAPTERS, load_settings
from ingest.providers.mpesa_register import COMPLETED, RESPONSE_TYPES
from momo import serving

if TYPE_CHECKING:
    from core.providers import ProviderAdapter
    from core.runtime import Runtime
    from matcher.check import Violation
    from tasks.recovery import Recovery

log = logging.getLogger("momo")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _fail_on_config(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def database_problem(url: str, exc: BaseException) -> str | None:
    """One line naming MOMO_DATABASE_URL and what to do, when ``exc`` means momo cannot use
    the database at ``url`` at all (unreachable, missing, unsupported); else None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

    shown = f"MOMO_DATABASE_URL={hide_passwords(url)}"
    usable = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH"
    if isinstance(exc, ArgumentError | ImportError | ValueError):
        # Only when the URL itself is what fails: the same errors elsewhere are bugs.
        try:
            make_url(url).get_dialect().import_dbapi()
        except (ArgumentError, ValueError) as problem:
            return f"{shown} is not a database URL momo can use ({problem}); give {usable}"
        except ImportError as problem:
            return (
                f"{shown} needs the driver {problem.name or problem}, which is not installed; "
                f"give {usable} (momo ships psycopg 3 for PostgreSQL)"
            )
        return None
    if not isinstance(exc, OperationalError | InterfaceError):
        return None
    reason = " ".join(str(exc.orig).split()) if exc.orig is not None else str(exc)
    reason = reason.removeprefix("connection failed: ")
    database = make_url(url).database
    if "does not exist" in reason and database and f'"{database}"' in reason:
        return (
            f"{shown}: the database {database!r} does not exist ({reason}); create it "
            f"(e.g. createdb {database}) or correct the name, then run `momo db upgrade`"
        )
    if exc.statement is None and make_url(url).get_backend_name() == "sqlite":
        return (
            f"{shown}: cannot open the database file ({reason}); check that its directory "
            "exists and that momo may write there"
        )
    if exc.statement is None:
        return (
            f"{shown}: cannot connect to the database ({reason}); check that it is running "
            "and that the host, port, user and password in MOMO_DATABASE_URL are right"
        )
    return (
        f"{shown}: the database failed a query ({reason}); check that it is healthy "
        "(`momo check` once it answers)"
    )


class _Commands(click.Group):
    """Every command answers a database it cannot use with one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

        try:
            return super().invoke(ctx)
        except (ArgumentError, ImportError, ValueError, OperationalError, InterfaceError) as exc:
            try:
                url = load_settings().database_url
            except ConfigError:
                raise exc from None
            message = database_problem(url, exc)
            if message is None:
                raise
            raise click.ClickException(hide_passwords(message)) from None


@click.group(cls=_Commands)
@click.version_option(package_name="momo", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """momo: mobile-money payments in, matched and credited balances out."""
    from core.logs import configure_logging

    try:
        configure_logging(level="DEBUG" if verbose else None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


# --- database -----------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration not yet applied (safe to run again)."""
    from matcher.db import make_engine
    from matcher.migrate import current_revision, upgrade

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    click.echo(f"database at revision {after} (was {before or 'empty'})")


def _ensure_schema(settings: Settings, *, apply: bool) -> None:
    from matcher.db import make_engine
    from matcher.migrate import current_revision, head_revision, upgrade

    engine = make_engine(settings.database_url)
    try:
        if apply:
            upgrade(engine)
        elif current_revision(engine) != head_revision(engine):
            raise click.ClickException(
                "the database schema is not up to date: run `momo db upgrade` first"
            )
    finally:
        engine.dispose()


# --- serving ------------------------------------------------------------------------------

#: what the callback URLs `momo serve` prints carry in place of a token it does not show
TOKEN_PLACEHOLDER = "<path token>"  # noqa: S105 - a placeholder, not a secret


def _embedded_path_token(settings: Settings, adapter: ProviderAdapter) -> tuple[Settings, bool]:
    """The embedded default keeps a generated path token for each provider in the instance
    folder (in the file the adapter names).

    Returns the settings with that token, and whether it was generated just now: then,
    and only then, it is shown. A kept token too weak for today's rules (written by an
    older momo, or by hand) is replaced, and the operator told, rather than refused.
    """
    registration = adapter.registration
    path = settings.instance_path / registration.token_file
    if path.exists():
        token = path.read_text().strip()
        weakness = path_token_weakness(token, registration.token_variable)
        if weakness is None:
            return adapter.with_path_token(settings, token), False
        token = _new_path_token()
        replacement = path.with_name(path.name + ".new")
        replacement.unlink(missing_ok=True)  # left by a start that died half-way
        _write_secret(replacement, token)
        os.replace(replacement, path)
        click.echo(
            f"the {registration.title} path token kept in {path} {weakness}; replaced it with "
            f"a new one. Register the callback URLs below with {registration.registrar}: the "
            "old ones now answer 404.",
            err=True,
        )
    else:
        settings.instance_path.mkdir(parents=True, exist_ok=True)
        token = _new_path_token()
        _write_secret(path, token)
        click.echo(f"generated {registration.a_title} path token, kept in {path}")
    return adapter.with_path_token(settings, token), True


def _new_path_token() -> str:
    return secrets.token_hex(24)  # 48 characters, as `openssl rand -hex 24` makes


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--threads",
    default=serving.THREADS,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Requests served at once; more connections wait their turn.",
)
@click.option(
    "--timeout",
    default=serving.TIMEOUT_SECONDS,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds a connection may stay silent (mid-request or idle) before it is closed.",
)
def serve(host: str, port: int, threads: int, timeout: int) -> None:
    """Run webhooks and operator API (and, with no broker, the worker in-process).

    For the embedded default and trying momo out; production runs the Procfile's granian
    lines or deploy/'s gunicorn units.
    """
    from core.redact import MASK
    from momo.app import create_app

    settings = _settings()
    # A configured token is never printed (a terminal's or a unit's log would keep it); one
    # generated just now is shown this once, since nobody else knows it yet. In its place
    # the URLs say <path token>: a variable's or a file's name in them (MOMO_MPESA_...,
    # mpesa_path_token) would hold a word Daraja refuses to register.
    callbacks: list[tuple[ProviderAdapter, str, str]] = []
    for adapter in ADAPTERS.values():
        if not listening(adapter, settings):
            continue  # an optional provider not set up: no token, no URLs to register
        variable = adapter.registration.token_variable
        shown, origin = TOKEN_PLACEHOLDER, f"the path token is {variable}'s value"
        if settings.is_embedded and not adapter.path_token(settings):
            settings, generated = _embedded_path_token(settings, adapter)
            kept = settings.instance_path / adapter.registration.token_file
            origin = f"the path token is kept in {kept}"
            if generated:
                shown, origin = adapter.require_path_token(settings), f"{origin}; shown this once"
        callbacks.append((adapter, shown, origin))
    _ensure_schema(settings, apply=settings.is_embedded or settings.is_sqlite)
    app = _fail_on_config(lambda: create_app(settings))
    base = f"http://{host}:{port}"
    click.echo(f"momo serving on {base}  (database: {_database_shown(settings)})")
    click.echo(
        "queue: in-process worker (no MOMO_BROKER_URL)"
        if settings.is_embedded
        else f"queue: {hide_passwords(settings.broker_url or '')}; run `momo worker`, `momo beat`"
    )
    for adapter, shown, origin in callbacks:
        title, registrar = adapter.registration.title, adapter.registration.registrar
        click.echo(f"{title} callback URLs (register these with {registrar}, behind HTTPS):")
        for path in adapter.callback_paths(shown):
            click.echo(f"  {base}{path}")
        click.echo(f"  ({origin}; logs show it as {MASK})")
    click.echo(f"operator API: {base}/api/v1  (tokens: momo token create --name NAME --role admin)")
    click.echo(f"operator console: {base}/console  (sign in with such a token)")
    server = serving.make_server(host, port, app, threads=threads, timeout=timeout)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["momo"].close()


def _database_shown(settings: Settings) -> str:
    """The database URL with its password hidden; for SQLite, with the file it opened,
    since a relative path is read from the folder momo was started in."""
    from sqlalchemy.engine import make_url

    shown = hide_passwords(settings.database_url)
    if settings.is_sqlite:
        name = make_url(settings.database_url).database
        if name and name != ":memory:":
            return f"{shown}, the file {Path(name).resolve()}"
    return shown


def _exec_celery(args: list[str], *, help_asked: bool = False) -> NoReturn:
    argv = [sys.executable, "-m", "celery", "-A", "tasks", *args]
    if help_asked:
        # Celery's own options, which every `momo worker`/`momo beat` argument goes to;
        # reading them needs no broker
        shown = " ".join(arg for arg in args if arg not in HELP)
        click.echo(f"momo {args[0]} runs `celery -A tasks {shown} ...`, which takes these options:")
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "tasks", args[0], "--help"])  # noqa: S606
    settings = _settings()
    if not settings.broker_url:
        raise click.ClickException(
            "MOMO_BROKER_URL is not set: separate workers need a broker, e.g. "
            "MOMO_BROKER_URL=redis://127.0.0.1:6379/0 (without one, `momo serve` works the "
            "queue in-process)"
        )
    os.execv(sys.executable, argv)  # noqa: S606 - replaces this process with celery, by design


#: worker and beat hand every argument to Celery, --help included
CELERY_ARGS = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": [],
}


HELP = ("--help", "-h")


def _help_asked(args: list[str]) -> bool:
    return any(arg in HELP for arg in args)


@main.command(context_settings=CELERY_ARGS)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker (every argument goes to `celery worker`; --help lists them)."""
    _exec_celery(
        ["worker", "--loglevel", "INFO", "-E", *ctx.args], help_asked=_help_asked(ctx.args)
    )


@main.command(context_settings=CELERY_ARGS)
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Run Celery beat, which schedules the inbox sweeper (every argument goes to `celery
    beat`; --help lists them)."""
    _exec_celery(["beat", "--loglevel", "INFO", *ctx.args], help_asked=_help_asked(ctx.args))


# --- checks and the inbox -----------------------------------------------------------------


def spool_violations(settings: Settings, *, now: float | None = None) -> list[Violation]:
    """Spool files no drainer has emptied within a few drain intervals, and quarantined ones.

    A spool file holds callbacks that were acknowledged but are not in the inbox yet;
    one that lingers means no web process is draining it (or the database still refuses).
    """
    from ingest.spool import Spool
    from matcher.check import Violation

    found: list[Violation] = []
    spool = Spool.for_settings(settings)
    if not spool.directory.is_dir():
        return found
    now = time.time() if now is None else now
    limit = max(60, 3 * settings.spool_drain_seconds)
    quarantine = spool.quarantine_path
    if quarantine.exists() and quarantine.stat().st_size:
        found.append(
            Violation(
                "spool",
                f"quarantined records need an operator: {quarantine} holds callbacks the "
                "inbox could not take; read them, store or re-post each one, then remove "
                "the file",
            )
        )
    for path, stat in spool.waiting():
        if stat.st_size and now - stat.st_mtime > limit:
            found.append(
                Violation(
                    "spool",
                    f"{path} has held acknowledged callbacks for {int(now - stat.st_mtime)}s "
                    f"(more than {limit}s) without being drained into the inbox: run "
                    "`momo spool drain` where MOMO_SPOOL_DIR points at it",
                )
            )
    return found


@main.command()
@click.option(
    "--stuck-after",
    type=int,
    default=None,
    help="Seconds an inbox row may stay pending (default: 2 x MOMO_SWEEP_AFTER_SECONDS).",
)
def check(stuck_after: int | None) -> None:
    """Verify the books: balances equal their ledgers, payments net their amounts and
    purchases their prices, no receipt twice, no payment unmatched whose phone has one owner,
    no inbox row dead, stuck, in unsettled conflict or processed without its payment, no
    spool left undrained. Reads one snapshot. Exits 1 on any violation.

    The result is recorded in the database, where every api's /metrics shows the last one
    whichever host ran it, and in MOMO_INSTANCE_PATH/metrics/momo_check.prom for
    node_exporter's textfile collector."""
    from datetime import timedelta

    from ingest.providers import build_runtime
    from matcher.check import check_invariants
    from matcher.db import snapshot

    settings = _settings()
    runtime = build_runtime(settings)
    seconds = stuck_after if stuck_after is not None else 2 * settings.sweep_after_seconds
    try:
        # one snapshot: a worker committing between two checks is no false violation
        with snapshot(runtime.engine) as session:
            violations = check_invariants(
                session,
                stuck_after=timedelta(seconds=seconds),
                max_attempts=settings.max_attempts,
            )
        violations += spool_violations(settings)
        _record_check(settings, runtime, len(violations))
    finally:
        runtime.close()
    for violation in violations:
        click.echo(f"VIOLATION [{violation.check}] {violation.message}")
    if violations:
        click.echo(f"{len(violations)} violation(s) found", err=True)
        sys.exit(1)
    click.echo(
        "ok: balances equal ledgers, payments net their amounts and purchases their prices, "
        "receipts unique, no payment unmatched whose phone has one owner, inbox moving with "
        "no dead rows, unsettled conflicts or lost payments, spool drained"
    )


def local_days(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--from DAY --to DAY``: local days in MOMO_TIMEZONE, both included (``day_span``)."""
    command = click.option(
        "--to",
        "last",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="Last local day, included (YYYY-MM-DD); default: today.",
    )(command)
    return click.option(
        "--from",
        "first",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="First local day (YYYY-MM-DD, in MOMO_TIMEZONE); default: --to.",
    )(command)


def day_span(first: datetime | None, last: datetime | None, zone: Any) -> tuple[date, date]:
    """The days ``local_days`` read: --to defaults to today in ``zone``, --from to --to."""
    from matcher.db import utcnow

    last_day = last.date() if last is not None else utcnow().astimezone(zone).date()
    return (first.date() if first is not None else last_day), last_day


@main.command()
@local_days
@click.option(
    "--provider",
    default=None,
    help="Whose record (default: MOMO_DEFAULT_PROVIDER, or the one momo keeps).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reconcile(first: Any, last: Any, provider: str | None, as_json: bool) -> None:
    """Compare momo's payments with the provider's own record (pulls, statements,
    lookups), day by day: records momo missed (and recovered), payments the provider's
    record lacks, amount conflicts, unconfirmed manual entries, totals on both sides.
    Exits 1 when anything is unexplained, a span never read from the provider included."""
    import json

    from ingest.providers import build_runtime
    from matcher.db import snapshot
    from matcher.errors import InvalidInput
    from matcher.reconcile import choose_provider, report_dict
    from matcher.reconcile import reconcile as make_report

    settings = _settings()
    zone = settings.zone
    first_day, last_day = day_span(first, last, zone)
    runtime = build_runtime(settings)
    try:
        with snapshot(runtime.engine) as session:
            try:
                name = choose_provider(
                    session, provider, default=settings.default_provider, known=list(ADAPTERS)
                )
                report = make_report(
                    session, provider=name, first=first_day, last=last_day, zone=zone
                )
            except (InvalidInput, ValueError) as exc:
                raise click.UsageError(str(exc)) from None
            shown = report_dict(report, zone)
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(shown, indent=2))
    else:
        _print_reconciliation(shown, ADAPTERS[report.provider].registration.title)
    if report.unexplained:
        sys.exit(1)


#: what each list of the reconciliation means, and what to do about it
_RECONCILIATION_LISTS = {
    "recovered": ("recovered from the provider's record (their callback never came)", ""),
    "missing_in_momo": (
        "in the provider's record, not in momo",
        "see `momo inbox list --status dead` and `--status conflict`",
    ),
    "missing_from_provider": (
        "in momo, not in the provider's record",
        "look each receipt up (POST /api/v1/payments/lookup) before trusting it",
    ),
    "conflicts": (
        "amounts that differ",
        "compare with the provider's statement; `momo inbox list --status conflict`",
    ),
    "unconfirmed_manual": (
        "entered by hand, confirmed by no provider record",
        "check each receipt with the payer; a mistyped one is disassociated and entered again",
    ),
    "set_aside": ("entered by hand, confirmed by no provider record, taken off every balance", ""),
    "reversed": ("reversed on the provider's word (their money is off the balances)", ""),
    "reversals_not_applied": (
        "reversed in the provider's record but still counted in momo",
        "import the statement that lists the reversal again, or look the receipt up",
    ),
}


def _print_reconciliation(shown: dict[str, Any], title: str) -> None:
    click.echo(f"{title}, {shown['from']} to {shown['to']} ({shown['timezone']})")
    for span in shown["covered"]:
        click.echo(f"  provider's record read from {span['from']} to {span['to']}")
    for span in shown["not_covered"]:
        click.echo(
            f"  NOT READ from {span['from']} to {span['to']}: nothing can be said there; "
            "pull it or import the provider's statement for it"
        )
    click.echo(f"  {'day':<10}  {'provider':>20}  {'momo':>20}  {'difference':>12}")
    for day in shown["days"]:
        provider, momo = day["provider"], day["momo"]
        click.echo(
            f"  {day['date']:<10}  {provider['count']:>5} {provider['amount']:>14}  "
            f"{momo['count']:>5} {momo['amount']:>14}  {day['difference']:>12}"
        )
    for name, (meaning, todo) in _RECONCILIATION_LISTS.items():
        lines = shown[name]
        if not lines:
            continue
        click.echo(f"{len(lines)} {meaning}" + (f": {todo}" if todo else ""))
        for line in lines:
            extra = (
                f", provider says {line['provider_amount']}" if "provider_amount" in line else ""
            )
            who = f", {line['account_number']}" if line.get("account_number") else ""
            payment = f"payment {line['payment_id']}" if line["payment_id"] else "no payment"
            click.echo(
                f"  {line['code']}  {line['amount']}{extra}  {line['paid_at']}  "
                f"{line['source']}  {payment}{who}"
            )
    if shown["explained"]:
        click.echo("explained: every payment on both sides is accounted for")
    else:
        click.echo(f"UNEXPLAINED: {shown['unexplained']} item(s) above need a look")


@main.group()
def inbox() -> None:
    """Stored callbacks: list them, replay dead ones."""


@inbox.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "processed", "rejected", "dead", "conflict"]),
    default="dead",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
def inbox_list(status: str, limit: int) -> None:
    """Callbacks in one state, newest first, with their reason."""
    from sqlalchemy import select

    from ingest.providers import build_runtime
    from matcher.models import InboxItem

    runtime = build_runtime(_settings())
    try:
        with runtime.sessions.begin() as session:
            rows = session.scalars(
                select(InboxItem)
                .where(InboxItem.status == status)
                .order_by(InboxItem.id.desc())
                .limit(limit)
            ).all()
            for row in rows:
                click.echo(
                    f"{row.id}\t{row.received_at.isoformat()}\t{row.provider}/{row.kind}\t"
                    f"{row.code or '-'}\t{row.reason or '-'}\tattempts={row.attempts}\t"
                    f"{(row.detail or '').splitlines()[0] if row.detail else ''}"
                )
            click.echo(f"{len(rows)} {status} row(s)", err=True)
    finally:
        runtime.close()


@inbox.command("replay")
@click.argument("inbox_id", type=int)
def inbox_replay(inbox_id: int) -> None:
    """Queue a dead or rejected callback again and process it now; its effect happens once."""
    from ingest.providers import build_runtime
    from matcher.errors import DomainError
    from matcher.inbox import replay
    from matcher.models import InboxItem
    from tasks.work import drain_inbox

    runtime = build_runtime(_settings())
    try:
        with runtime.sessions.begin() as session:
            replay(session, inbox_id, actor="cli")
        drain_inbox(runtime)
        with runtime.sessions.begin() as session:
            item = session.get(InboxItem, inbox_id)
            assert item is not None
            status, reason, detail = item.status, item.reason, item.detail
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.close()
    click.echo(
        f"inbox row {inbox_id}: {status} ({reason})"
        + (f": {detail}" if detail and status != "processed" else "")
    )
    if status not in ("processed",):
        sys.exit(1)


@inbox.command("settle")
@click.argument("inbox_id", type=int)
@click.option("--note", required=True, help="What you found and did (kept in the audit log).")
def inbox_settle(inbox_id: int, note: str) -> None:
    """Mark a conflict (a receipt repeated with other data) as settled by you."""
    from ingest.providers import build_runtime
    from matcher.errors import DomainError
    from matcher.inbox import settle

    runtime = build_runtime(_settings())
    try:
        with runtime.sessions.begin() as session:
            settle(session, inbox_id, note=note, actor="cli")
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.close()
    click.echo(f"inbox row {inbox_id}: conflict settled")


# --- export -------------------------------------------------------------------------------


#: a line of progress on stderr every this many rows
EXPORT_PROGRESS_EVERY = 10_000


@main.command("export")
@click.argument("what", type=click.Choice(["payments", "ledger"]))
@local_days
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the CSV to this file (default: standard output).",
)
def export(what: str, first: Any, last: Any, output: Path | None) -> None:
    """Write payments (by the local day they were paid) or ledger entries (by the local day
    they were made) as CSV for accountants, oldest first, all read in one snapshot."""
    from ingest.providers import build_runtime
    from matcher.db import snapshot
    from matcher.export import LEDGER_COLUMNS, PAYMENT_COLUMNS, ledger_rows, payment_rows

    settings = _settings()
    zone = settings.zone
    first_day, last_day = day_span(first, last, zone)
    if first_day > last_day:
        raise click.UsageError(
            f"--from {first_day} is after --to {last_day}: give the earlier day first"
        )
    columns = PAYMENT_COLUMNS if what == "payments" else LEDGER_COLUMNS
    # a file is written beside its name and renamed when whole: an export that fails
    # half-way never leaves a file that looks complete
    partial = output.with_name(f".{output.name}.partial") if output is not None else None
    runtime = build_runtime(settings)
    written = 0
    try:
        with (
            snapshot(runtime.engine) as session,
            (
                partial.open("w", newline="", encoding="utf-8")
                if partial is not None
                else nullcontext(sys.stdout)
            ) as out,
        ):
            rows = (
                payment_rows(session, first_day, last_day, zone)
                if what == "payments"
                else ledger_rows(session, first_day, last_day, zone, settings.currency)
            )
            writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                written += 1
                if output is not None and written % EXPORT_PROGRESS_EVERY == 0:
                    click.echo(f"{written:,} {what} rows written...", err=True)
        if partial is not None and output is not None:
            partial.replace(output)
    except BaseException:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise
    finally:
        runtime.close()
    entries = "payments" if what == "payments" else "ledger entries"
    span = f"{first_day} to {last_day}" if first_day != last_day else str(first_day)
    where = f" to {output}" if output is not None else ""
    click.echo(f"wrote {written:,} {entries} of {span} ({zone.key}){where}", err=True)


# --- spool --------------------------------------------------------------------------------


@main.group()
def spool() -> None:
    """The local spool of callbacks taken while the database was unreachable."""


@spool.command("drain")
def spool_drain() -> None:
    """Move spooled callbacks (every host's) into the inbox now; web processes also do it.

    Run it as the user the web processes run as (the spool directory's owner): files it
    made as another user would stop their own drainer. Exits 1 when the database is
    unreachable or takes no writes, or a record had to be quarantined.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from ingest.providers import build_runtime
    from ingest.spool import DatabaseRefusesWrites, Spool, user_name
    from matcher.db import describe_error

    settings = _settings()
    directory = settings.spool_path
    if not directory.is_dir():
        click.echo(f"no spool directory at {directory} (MOMO_SPOOL_DIR): nothing to drain")
        return
    owner = directory.stat().st_uid
    if os.geteuid() != owner:
        name = user_name(owner)
        raise click.ClickException(
            f"the spool directory {directory} belongs to {name}, the user the web processes "
            f"run as, and this command runs as {user_name(os.geteuid())}: files it made would "
            f"stop their own drainer. Run it as {name}, e.g. sudo -u {name} momo spool drain"
        )
    runtime = build_runtime(settings)
    store = Spool.for_settings(settings)
    try:
        result = store.drain(runtime.sessions)
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"the database did not take the spooled callbacks ({describe_error(exc)}); "
            f"they stay in {settings.spool_path}. Check "
            "MOMO_DATABASE_URL and that the database answers, then run `momo spool drain` again"
        ) from None
    except DatabaseRefusesWrites as exc:
        raise click.ClickException(
            f"{exc}. Point MOMO_DATABASE_URL at the primary (read-write) database, then run "
            "`momo spool drain` again"
        ) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot use the spool directory {settings.spool_path} ({exc}); check "
            "MOMO_SPOOL_DIR and its permissions"
        ) from None
    finally:
        runtime.close()
    if result.busy:
        click.echo(
            f"another drainer is draining {settings.spool_path} right now; nothing done here"
        )
        return
    click.echo(
        f"{result.files} spool file(s): {result.stored} callback(s) moved to the inbox, "
        f"{result.already_stored} already there, {result.unreadable} unreadable line(s)"
    )
    if result.rejected:
        click.echo(
            f"{result.rejected} of them the database refused as sent: kept as rejected "
            "(reason unstorable_text); see `momo inbox list --status rejected`"
        )
    if result.quarantined:
        click.echo(
            f"{result.quarantined} record(s) no database takes were moved aside to "
            f"{store.quarantine_path}: read them there and store or discard each by hand",
            err=True,
        )
        sys.exit(1)


# --- tokens -------------------------------------------------------------------------------


@main.group()
def token() -> None:
    """Operator API tokens."""


@token.command("create")
@click.option("--name", required=True, help="Who or what uses the token (shown in the audit log).")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "operator", "admin"]),
    help="What it may do.",
)
def token_create(name: str, role: str) -> None:
    """Create a token; it is printed once, on the last line, and stored only as a hash."""
    from api.auth import create_token
    from ingest.providers import build_runtime
    from matcher.errors import DomainError

    settings = _settings()
    _ensure_schema(settings, apply=settings.is_embedded or settings.is_sqlite)
    runtime = build_runtime(settings)
    try:
        with runtime.sessions.begin() as session:
            raw = create_token(session, name=name, role=role)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.close()
    click.echo(
        f"created {role} token for {name!r}; keep it now, it cannot be shown again:", err=True
    )
    click.echo(raw)


@token.command("list")
def token_list() -> None:
    """List tokens (never their secrets): id, name, role, last used, revoked."""
    from sqlalchemy import select

    from ingest.providers import build_runtime
    from matcher.models import ApiToken

    runtime = build_runtime(_settings())
    try:
        with runtime.sessions.begin() as session:
            tokens = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
            for t in tokens:
                used = t.last_used_at.isoformat() if t.last_used_at else "never"
                state = f"revoked {t.revoked_at.isoformat()}" if t.revoked_at else "active"
                click.echo(f"{t.id}\t{t.name}\t{t.role}\tlast used {used}\t{state}")
    finally:
        runtime.close()


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke a token by id (see `momo token list`); it answers 401 from then on."""
    from api.auth import revoke_token
    from ingest.providers import build_runtime

    runtime = build_runtime(_settings())
    try:
        with runtime.sessions.begin() as session:
            token = revoke_token(session, token_id, actor="cli")
            if token is None:
                raise click.ClickException(
                    f"no token has id {token_id}; `momo token list` shows them"
                )
            name = token.name
    finally:
        runtime.close()
    click.echo(f"token {token_id} ({name}) is revoked")


# --- customers ----------------------------------------------------------------------------


@main.group()
def customers() -> None:
    """Customers."""


@customers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def customers_import(file: Path) -> None:
    """Load customers from a CSV with columns account_number, name, phones (separated by ';').

    An existing account number is updated: its name and phones become the file's.
    """
    from ingest.providers import build_runtime
    from matcher.customers import save_customer
    from matcher.errors import DomainError

    settings = _settings()
    _ensure_schema(settings, apply=settings.is_embedded or settings.is_sqlite)
    runtime = build_runtime(settings)
    created = updated = 0
    refused: list[tuple[int, str]] = []
    try:
        try:
            with file.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                missing = {"account_number", "name", "phones"} - set(reader.fieldnames or [])
                if missing:
                    raise click.ClickException(
                        f"{file} has no column {', '.join(sorted(missing))}; the first line "
                        "must be the header account_number,name,phones"
                    )
                rows = list(reader)
        except UnicodeDecodeError as exc:
            raise click.ClickException(
                f"{file} is not UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8' and "
                "import again"
            ) from None
        total = len(rows)
        started = time.monotonic()
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            phones = [p.strip() for p in (row.get("phones") or "").split(";") if p.strip()]
            try:
                with runtime.sessions.begin() as session:
                    change = save_customer(
                        session,
                        account_number=row.get("account_number") or "",
                        name=row.get("name"),
                        phones=phones,
                        region=settings.default_region,
                        actor=f"import:{file.name}",
                    )
                if change.created:
                    created += 1
                else:
                    updated += 1
            except DomainError as exc:
                refused.append((number, exc.message))
            done = number - 1
            if done % 500 == 0 or done == total:
                rate = done / max(time.monotonic() - started, 1e-6)
                click.echo(f"\r{done}/{total} rows ({rate:.0f}/s)", nl=done == total, err=True)
    finally:
        runtime.close()
    click.echo(f"created {created}, updated {updated}, refused {len(refused)}")
    for line, reason in refused:
        click.echo(f"  line {line}: {reason}")
    if refused:
        sys.exit(1)


# --- M-PESA -------------------------------------------------------------------------------


@main.group()
def mpesa() -> None:
    """M-PESA: registering its callback URLs, and payments its callbacks missed."""


def _kept_path_token(settings: Settings, adapter: ProviderAdapter) -> str:
    """The path token the web processes guard the callback URLs with: the configured one,
    or (embedded default) the one `momo serve` generated and keeps; never a new one, since
    URLs no server answers must not be registered."""
    variable = adapter.registration.token_variable
    if adapter.path_token(settings):
        return str(_fail_on_config(lambda: adapter.require_path_token(settings)))
    kept = settings.instance_path / adapter.registration.token_file
    if settings.is_embedded and kept.exists():
        token = kept.read_text().strip()
        weakness = path_token_weakness(token, variable)
        if weakness is not None:
            raise click.ClickException(
                f"the path token kept in {kept} {weakness}; run `momo serve` once (it "
                "replaces it) and register again"
            )
        return token
    elsewhere = (
        f", or run `momo serve` once: it generates one and keeps it in {kept}"
        if settings.is_embedded
        else ""
    )
    raise click.ClickException(
        f"{variable} is not set: the callback URLs carry it. Set it to the value the web "
        f"processes have (a new one: {variable}=$(openssl rand -hex 24)){elsewhere}"
    )


@mpesa.command("register-urls")
@click.option(
    "--response-type",
    type=click.Choice(RESPONSE_TYPES),
    default=COMPLETED,
    show_default=True,
    help=(
        "What M-PESA does with a payment when the validation URL cannot be reached or does "
        "not answer in time (about 8 s): Completed completes it and posts its confirmation; "
        "Cancelled cancels it, and the customer keeps the money. Only asked when the "
        "shortcode has external validation (Safaricom turns it on)."
    ),
)
@click.option(
    "--show-urls",
    is_flag=True,
    help="Print the URLs with the path token itself (a secret) instead of ***.",
)
def mpesa_register_urls(response_type: str, show_urls: bool) -> None:
    """Register the C2B confirmation and validation URLs under MOMO_PUBLIC_URL with Daraja,
    for MOMO_MPESA_SHORTCODE.

    M-PESA posts every payment to the shortcode to the confirmation URL; until it is
    registered, payments are completed and momo hears of none. A URL Daraja would refuse
    (holding "mpesa", "safaricom", "exe", "exec", "cmd", "sql" or "query" in any case,
    or plain http against the live API) is refused before Daraja is asked. In the
    sandbox registering again overwrites; in production it is done once. Exits 1 when
    something is missing, a URL cannot be registered, or Daraja refuses.
    """
    from ingest.providers.mpesa import PROVIDER
    from ingest.providers.mpesa_register import NotRegistrable, c2b_urls, register_urls
    from ingest.providers.outbound import NoAnswer, ProviderError

    settings = _settings()
    adapter = ADAPTERS[PROVIDER]
    token = _kept_path_token(settings, adapter)
    app, urls = _fail_on_config(lambda: c2b_urls(settings, token))
    shown = urls if show_urls else urls.masked(token)
    click.echo(
        f"registering with Daraja at {app.api_base} for shortcode {app.shortcode} "
        f"(ResponseType {response_type}):"
    )
    click.echo(f"  ConfirmationURL {shown.confirmation}")
    click.echo(f"  ValidationURL   {shown.validation}")
    if not show_urls:
        click.echo("  (the path token is shown as ***; --show-urls prints it)")
    try:
        registered = _fail_on_config(lambda: register_urls(settings, token, response_type))
    except NotRegistrable as exc:
        raise click.ClickException(exc.message) from None
    except NoAnswer as exc:
        raise click.ClickException(
            f"{exc.message}: whether Daraja registered the URLs is unknown. Run this again "
            "(the sandbox overwrites; in production Daraja answers that they are already "
            "registered if it took them)"
        ) from None
    except ProviderError as exc:
        raise click.ClickException(exc.message) from None
    conversation = (
        f" (OriginatorCoversationID {registered.conversation_id})"
        if registered.conversation_id
        else ""
    )
    click.echo(f"Daraja registered them: {registered.description!r}{conversation}")


def _progress(message: str) -> None:
    click.echo(f"\r{message}", nl=False, err=True)


def _tell_recovery(summary: Recovery, *, unreadable_advice: str) -> None:
    """What an operator must look at after recovering payments, and what to do."""
    for where, message in summary.unreadable:
        click.echo(f"  {where}: {message}")
    if summary.unreadable:
        click.echo(f"{len(summary.unreadable)} {unreadable_advice}")
    if summary.conflicts:
        click.echo(
            f"inbox rows {', '.join(map(str, sorted(summary.conflicts)))} hold receipts that "
            "disagree with the payment momo has: compare them (`momo inbox list --status "
            "conflict`), then `momo inbox settle ID --note ...`"
        )
    if summary.failed:
        click.echo(
            f"inbox rows {', '.join(map(str, sorted(summary.failed)))} were not recorded: see "
            "`momo inbox list --status dead`, fix the cause, then `momo inbox replay ID`"
        )
    if summary.pending:
        click.echo(
            f"inbox rows {', '.join(map(str, sorted(summary.pending)))} are still waiting for "
            "a worker: check that `momo worker` runs, then `momo check`"
        )


@mpesa.command("import-statement")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def mpesa_import_statement(file: Path) -> None:
    """Recover payments from a statement the M-PESA organisation portal exported (CSV).

    Each completed Paid In row is recorded as its callback would have been: a receipt
    momo already has is a duplicate, a missed one is stored, matched and credited.
    Withdrawals, charges and rows not completed are skipped. Importing a file again
    recovers nothing twice. Exits 1 when a row could not be read or disagrees with the
    payment momo has under its receipt.
    """
    from ingest.providers import build_runtime
    from ingest.providers.mpesa import PROVIDER
    from ingest.providers.mpesa_statement import (
        STATEMENT,
        Entry,
        Malformed,
        NotAStatement,
        Skipped,
        covered_span,
        entries_span,
        read_statement,
        statement_period,
    )
    from matcher.reversals import ALREADY_REVERSED, REVERSED_OUTCOME, UNKNOWN_REVERSAL
    from tasks.recovery import Coverage, recover

    settings = _settings()
    _ensure_schema(settings, apply=settings.is_embedded or settings.is_sqlite)
    runtime = build_runtime(settings)
    entries: list[Entry] = []
    skipped: dict[str, int] = {"not_completed": 0, "withdrawal": 0}
    malformed: list[tuple[str, str]] = []
    try:
        try:
            with file.open(newline="", encoding="utf-8-sig") as f:
                period = statement_period(f)
            with file.open(newline="", encoding="utf-8-sig") as f:
                for number, row in enumerate(read_statement(f), start=1):
                    if isinstance(row, Malformed):
                        malformed.append((f"line {row.line}", row.message))
                    elif isinstance(row, Skipped):
                        skipped[row.why] += 1
                    else:
                        entries.append(row)
                    if number % 500 == 0:
                        click.echo(f"\rread {number} rows", nl=False, err=True)
        except UnicodeDecodeError as exc:
            raise click.ClickException(
                f"{file} is not UTF-8 text (byte {exc.start}); export the statement again "
                "as CSV and import that file"
            ) from None
        except NotAStatement as exc:
            raise click.ClickException(f"{file} has {exc}") from None
        except csv.Error as exc:
            raise click.ClickException(
                f"{file} is not a CSV file momo can read ({exc}); export the statement "
                "again as CSV and import that file"
            ) from None
        span = period or entries_span(entries)
        coverage = None
        if span is not None:
            zone = settings.zone
            starts_at, ends_at = covered_span(span)
            coverage = Coverage(
                source=STATEMENT,
                starts_at=starts_at.replace(tzinfo=zone),
                ends_at=ends_at.replace(tzinfo=zone),
                actor=f"statement {file.name}"[:100],
            )
        summary = recover(
            runtime,
            PROVIDER,
            STATEMENT,
            [(f"line {entry.line}", entry.body) for entry in entries],
            unreadable=malformed,
            coverage=coverage,
            progress=_progress,
        )
        if entries:
            click.echo("", err=True)
    finally:
        runtime.close()
    click.echo(
        f"{summary}; skipped {skipped['withdrawal']} withdrawals and charges, "
        f"{skipped['not_completed']} not completed"
    )
    if summary.reversals:
        count = summary.reversals
        click.echo(
            f"reversals: applied {count[REVERSED_OUTCOME]}, already known "
            f"{count[ALREADY_REVERSED]}, of payments momo does not have "
            f"{count[UNKNOWN_REVERSAL]}"
        )
    _tell_recovery(
        summary,
        unreadable_advice="row(s) could not be read: check those lines against the portal "
        "and import a corrected export (rows already recorded are duplicates, never "
        "credited twice)",
    )
    if not summary.clean:
        sys.exit(1)


def _when(text: str, settings: Settings) -> datetime:
    """An ISO time from the command line; without a zone, MOMO_TIMEZONE's."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time; write it ISO, e.g. 2026-01-10T08:00 or "
            "2026-01-10T08:00+03:00 (without a zone: MOMO_TIMEZONE's)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=settings.zone)


@mpesa.group("pull", invoke_without_command=True)
@click.option("--since", help="pull from this time (ISO; without a zone: MOMO_TIMEZONE's)")
@click.option("--until", help="pull up to this time (default: now)")
@click.pass_context
def mpesa_pull(ctx: click.Context, since: str | None, until: str | None) -> None:
    """Recover payments whose confirmations never came, from Daraja's own list (Pull
    Transactions: the last 48 hours).

    Each C2B payment Daraja lists is recorded as its confirmation would have been: a
    receipt momo already has is a duplicate, a missed one is stored, matched and credited.
    Exits 1 when a record could not be read or disagrees with the payment momo has under
    its receipt. `momo mpesa pull register` registers the shortcode for pulling, once.
    """
    if ctx.invoked_subcommand is not None:
        if since or until:
            raise click.UsageError("--since and --until are for pulling, not for register")
        return
    if since is None:
        raise click.UsageError("give --since TIME (or the register command)")
    from ingest.providers import build_runtime
    from ingest.providers.mpesa_pull import TooOld
    from ingest.providers.outbound import ProviderError
    from tasks.pulling import pull

    settings = _settings()
    now = datetime.now(UTC)
    starts_at = _when(since, settings)
    ends_at = min(_when(until, settings), now) if until else now
    if ends_at <= starts_at:
        raise click.UsageError(
            f"--since {starts_at.isoformat()} is not before --until {ends_at.isoformat()}"
        )
    _ensure_schema(settings, apply=settings.is_embedded or settings.is_sqlite)
    runtime = build_runtime(settings)
    try:
        summary = pull(
            runtime, starts_at, ends_at, actor="momo mpesa pull", progress=_progress, now=now
        )
    except TooOld as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except ProviderError as exc:
        raise click.ClickException(
            f"Daraja could not be asked ({exc.message}). Windows read before it are recorded; "
            "run the same command again (known payments are duplicates, never credited twice)"
        ) from None
    finally:
        runtime.close()
    click.echo("", err=True)
    skipped = sum(summary.skipped.values())
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.skipped.items()))
    click.echo(
        f"{summary}; skipped {skipped} that are no payment in" + (f" ({kinds})" if kinds else "")
    )
    _tell_recovery(
        summary,
        unreadable_advice="record(s) could not be read: compare them with the M-PESA "
        "organisation portal's statement for that time, and import it "
        "(`momo mpesa import-statement FILE`)",
    )
    if not summary.clean:
        sys.exit(1)


@mpesa_pull.command("register")
@click.option(
    "--nominated-number",
    required=True,
    help="the Safaricom number nominated for the shortcode (its KYC on the M-PESA portal)",
)
def mpesa_pull_register(nominated_number: str) -> None:
    """Register the shortcode for Pull Transactions (once, live shortcodes only)."""
    from core.redact import mask_webhook_paths
    from ingest.providers.mpesa import daraja_url_problem, pull_callback_url, puller, settings_of
    from ingest.providers.outbound import ProviderError

    settings = _settings()
    number = nominated_number.strip()
    if not number.replace("+", "").isdigit():
        raise click.BadParameter(
            f"{nominated_number!r} is not a phone number; give it as 0722000000",
            param_hint="--nominated-number",
        )
    url = _fail_on_config(lambda: pull_callback_url(settings))
    app = settings_of(settings).daraja_app
    # as for the C2B URLs: only Daraja's live API is known to refuse plain http
    problem = daraja_url_problem(url, sandbox=app is None or not app.live)
    if problem is not None:
        raise click.ClickException(
            f"{mask_webhook_paths(problem)}: set MOMO_PUBLIC_URL to an address Daraja takes"
        )
    client = _fail_on_config(lambda: puller(settings))
    try:
        answer = client.register(number, url)
    except ProviderError as exc:
        raise click.ClickException(f"Daraja refused the registration: {exc.message}") from None
    words = answer.get("ResponseDescription") or "registered"
    click.echo(f"shortcode {client.shortcode} is registered for pulling: {words}")


def _record_check(settings: Settings, runtime: Runtime, violations: int) -> None:
    """Leave ``momo check``'s result where /metrics reads it (the database, which every api
    reads) and in a Prometheus text file (for node_exporter's textfile collector). A check
    that cannot record it still reports; an alert on its age says no result came."""
    import socket

    from sqlalchemy.exc import SQLAlchemyError

    from core.metrics import check_file, write_check_result
    from matcher.check import record_check_run
    from matcher.db import describe_error

    try:
        with runtime.sessions.begin() as session:
            record_check_run(session, violations, socket.gethostname())
    except SQLAlchemyError as exc:
        problem = describe_error(exc)
        click.echo(f"could not record the result in the database: {problem}", err=True)
    path = check_file(settings.instance_path)
    try:
        write_check_result(path, violations)
    except OSError as exc:
        click.echo(f"could not record the result in {path}: {exc}", err=True)
