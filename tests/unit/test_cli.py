"""The ``momo`` command, run in-process with click's CliRunner on a throw-away SQLite file."""

from __future__ import annotations

import json
import os
import pwd
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from api.auth import authenticate
from ingest.providers import build_runtime, load_settings, variables
from ingest.store import inbox_row
from matcher.db import make_engine, make_session_factory
from matcher.migrate import MIGRATIONS
from matcher.models import (
    ApiToken,
    Customer,
    InboxItem,
    LedgerEntry,
    Payment,
    ProviderCoverage,
    ProviderRecord,
)
from momo.cli import main
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, lacking, sample_bytes
from tests.fakes.base import to_json
from tests.fakes.daraja import NAIROBI, PULL_QUERY, PULL_REGISTER, REGISTER, DarajaFake

#: every variable momo reads; unset unless a test sets it, so the caller's shell cannot leak in
MOMO_VARIABLES = variables()

HEADER = "account_number,name,phones\n"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str | None]:
    base: dict[str, str | None] = dict.fromkeys(MOMO_VARIABLES)
    base["MOMO_DATABASE_URL"] = database_url
    base["MOMO_INSTANCE_PATH"] = str(tmp_path / "instance")
    return base


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def run(env: dict[str, str | None], *args: str, **overrides: str | None) -> Result:
    return CliRunner().invoke(main, list(args), env=env | overrides)


def upgraded(env: dict[str, str | None]) -> None:
    result = run(env, "db", "upgrade")
    assert result.exit_code == 0, result.output


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Exit status 1 with click's one-line error: no traceback, no stray exception."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


# --- momo db upgrade ----------------------------------------------------------------------

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


class TestDbUpgrade:
    def test_it_creates_the_schema_and_prints_the_revision(
        self, env: dict[str, str | None], database_url: str
    ) -> None:
        result = run(env, "db", "upgrade")

        assert result.exit_code == 0, result.output
        assert f"revision {HEAD}" in result.stdout
        assert "was empty" in result.stdout
        engine = make_engine(database_url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert {"inbox", "customers", "payments", "ledger_entries", "api_tokens"} <= tables

    def test_running_it_twice_succeeds_and_changes_nothing_the_second_time(
        self, env: dict[str, str | None]
    ) -> None:
        upgraded(env)

        again = run(env, "db", "upgrade")

        assert again.exit_code == 0, again.output
        assert f"revision {HEAD} (was {HEAD})" in again.stdout


# --- momo token create --------------------------------------------------------------------


class TestTokenCreate:
    @pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
    def test_the_last_line_is_a_token_that_authenticates_with_its_role(
        self, env: dict[str, str | None], sessions: sessionmaker[Session], role: str
    ) -> None:
        upgraded(env)

        result = run(env, "token", "create", "--name", "a", "--role", role)

        assert result.exit_code == 0, result.output
        raw = result.stdout.strip().splitlines()[-1]
        assert raw.startswith("momo_")
        with sessions.begin() as session:
            token = authenticate(session, raw)
            assert token is not None
            assert (token.name, token.role) == ("a", role)

    def test_only_a_hash_of_the_token_is_stored(
        self, env: dict[str, str | None], sessions: sessionmaker[Session]
    ) -> None:
        upgraded(env)

        raw = run(env, "token", "create", "--name", "a", "--role", "operator").stdout.split()[-1]

        with sessions() as session:
            [stored] = session.scalars(select(ApiToken.token_hash)).all()
        assert raw not in stored
        assert len(stored) == 64

    def test_two_tokens_are_different(self, env: dict[str, str | None]) -> None:
        upgraded(env)

        first = run(env, "token", "create", "--name", "a", "--role", "viewer").stdout.split()[-1]
        second = run(env, "token", "create", "--name", "a", "--role", "viewer").stdout.split()[-1]

        assert first != second

    def test_an_invalid_role_is_refused_by_the_command_line(
        self, env: dict[str, str | None], sessions: sessionmaker[Session]
    ) -> None:
        upgraded(env)

        result = run(env, "token", "create", "--name", "a", "--role", "root")

        assert result.exit_code == 2
        assert "--role" in result.output
        assert "Traceback" not in result.output
        with sessions() as session:
            assert session.scalars(select(ApiToken)).all() == []

    def test_a_blank_name_is_refused_with_a_clean_error(self, env: dict[str, str | None]) -> None:
        upgraded(env)

        result = run(env, "token", "create", "--name", "   ", "--role", "viewer")

        assert_clean_error(result, "name")

    def test_on_a_fresh_embedded_database_it_applies_the_migrations_first(
        self, env: dict[str, str | None], sessions: sessionmaker[Session]
    ) -> None:
        result = run(env, "token", "create", "--name", "a", "--role", "viewer")

        assert result.exit_code == 0, result.output
        with sessions() as session:
            assert [t.name for t in session.scalars(select(ApiToken))] == ["a"]


# --- momo customers import ----------------------------------------------------------------


class TestCustomersImport:
    def test_good_rows_are_created_and_the_command_exits_0(
        self, env: dict[str, str | None], tmp_path: Path, sessions: sessionmaker[Session]
    ) -> None:
        upgraded(env)
        csv_file = write_csv(
            tmp_path / "customers.csv",
            HEADER + "ACC1,Alice,0712345678;+254 722 000 000\nACC2,Bob,\n",
        )

        result = run(env, "customers", "import", str(csv_file))

        assert result.exit_code == 0, result.output
        assert "created 2, updated 0, refused 0" in result.stdout
        with sessions() as session:
            alice = session.scalar(select(Customer).where(Customer.account_number == "ACC1"))
            assert alice is not None
            assert alice.name == "Alice"
            assert [p.e164 for p in alice.phones] == ["+254712345678", "+254722000000"]

    def test_a_mixed_file_counts_each_outcome_lists_refusals_and_exits_1(
        self, env: dict[str, str | None], tmp_path: Path, sessions: sessionmaker[Session]
    ) -> None:
        upgraded(env)
        first = write_csv(tmp_path / "first.csv", HEADER + "ACC9,Old Name,0733000000\n")
        assert run(env, "customers", "import", str(first)).exit_code == 0
        mixed = write_csv(
            tmp_path / "mixed.csv",
            HEADER
            + "ACC1,Alice,0712345678\n"  # line 2: created
            + "acc9,New Name,0712345678;0722000000\n"  # line 3: updated (any case)
            + "ACC3,Carol,12345\n"  # line 4: invalid phone
            + ",Nobody,0712345678\n"  # line 5: empty account number
            + "ACC4,Dan,0110123456\n",  # line 6: created
        )

        result = run(env, "customers", "import", str(mixed))

        assert result.exit_code == 1, result.output
        assert "created 2, updated 1, refused 2" in result.stdout
        refusals = [line.strip() for line in result.stdout.splitlines() if "line " in line]
        assert len(refusals) == 2
        assert refusals[0].startswith("line 4:")
        assert "12345" in refusals[0]
        assert refusals[1].startswith("line 5:")
        assert "account_number" in refusals[1]
        with sessions() as session:
            updated = session.scalar(select(Customer).where(Customer.account_number == "ACC9"))
            assert updated is not None
            assert updated.name == "New Name"
            assert [p.e164 for p in updated.phones] == ["+254712345678", "+254722000000"]
            accounts = set(session.scalars(select(Customer.account_number)))
        assert accounts == {"ACC1", "ACC4", "ACC9"}

    def test_a_file_without_a_header_column_is_refused_naming_the_column(
        self, env: dict[str, str | None], tmp_path: Path, sessions: sessionmaker[Session]
    ) -> None:
        upgraded(env)
        csv_file = write_csv(tmp_path / "bad.csv", "account,name,phones\nACC1,Alice,0712345678\n")

        result = run(env, "customers", "import", str(csv_file))

        assert_clean_error(result, "account_number")
        with sessions() as session:
            assert session.scalars(select(Customer)).all() == []

    def test_a_file_without_the_phones_column_is_refused_naming_it(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        upgraded(env)
        csv_file = write_csv(tmp_path / "bad.csv", "account_number,name\nACC1,Alice\n")

        result = run(env, "customers", "import", str(csv_file))

        assert_clean_error(result, "phones")

    def test_a_header_with_a_byte_order_mark_is_read(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        upgraded(env)
        csv_file = tmp_path / "excel.csv"
        csv_file.write_bytes(("\ufeff" + HEADER + "ACC1,Alice,0712345678\n").encode("utf-8"))

        result = run(env, "customers", "import", str(csv_file))

        assert result.exit_code == 0, result.output
        assert "created 1, updated 0, refused 0" in result.stdout

    def test_a_file_that_is_not_utf8_is_refused_with_a_clean_error(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        upgraded(env)
        csv_file = tmp_path / "cp1252.csv"
        csv_file.write_bytes((HEADER + "ACC1,Müller,0712345678\n").encode("cp1252"))

        result = run(env, "customers", "import", str(csv_file))

        assert_clean_error(result, "UTF-8")

    def test_a_missing_file_is_refused_by_the_command_line(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        result = run(env, "customers", "import", str(tmp_path / "nope.csv"))

        assert result.exit_code == 2
        assert "nope.csv" in result.output


# --- momo worker / momo beat --------------------------------------------------------------


class TestWorkerAndBeat:
    @pytest.mark.parametrize("command", ["worker", "beat"])
    def test_without_a_broker_it_exits_naming_momo_broker_url(
        self, env: dict[str, str | None], command: str
    ) -> None:
        result = run(env, command)

        assert_clean_error(result, "MOMO_BROKER_URL")

    @pytest.mark.parametrize("command", ["worker", "beat"])
    def test_with_a_broker_but_no_database_url_it_exits_naming_momo_database_url(
        self, env: dict[str, str | None], command: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def started(*_args: object) -> None:
            raise AssertionError("celery was started on the embedded default's database")

        monkeypatch.setattr(os, "execv", started)
        result = run(
            env, command, MOMO_DATABASE_URL=None, MOMO_BROKER_URL="redis://:Sup3rS3cret@cache/0"
        )

        assert_clean_error(result, "MOMO_DATABASE_URL is not set, but MOMO_BROKER_URL is")
        assert "Sup3rS3cret" not in result.output


# --- configuration errors -----------------------------------------------------------------


class TestConfigurationErrors:
    @pytest.mark.parametrize(
        "args",
        [
            ("db", "upgrade"),
            ("token", "create", "--name", "a", "--role", "viewer"),
            ("worker",),
        ],
    )
    def test_a_bad_validation_mode_is_a_clean_error_naming_the_variable(
        self, env: dict[str, str | None], args: tuple[str, ...]
    ) -> None:
        result = run(env, *args, MOMO_MPESA_VALIDATION="reject-everything")

        assert_clean_error(result, "MOMO_MPESA_VALIDATION")

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("MOMO_DEFAULT_REGION", "XX"),
            ("MOMO_BROKER_URL", "http://localhost:6379"),
            ("MOMO_MPESA_ALLOWED_IPS", "not-an-ip"),
            ("MOMO_TRUSTED_PROXY_HOPS", "-1"),
        ],
    )
    def test_other_bad_values_are_clean_errors_naming_their_variable(
        self, env: dict[str, str | None], variable: str, value: str
    ) -> None:
        result = run(env, "db", "upgrade", **{variable: value})

        assert_clean_error(result, variable)


# --- momo spool drain ---------------------------------------------------------------------


class TestSpoolDrain:
    @staticmethod
    def spool_with(tmp_path: Path, *records: dict | str) -> Path:
        """A spool directory holding ``records`` (dicts as the webhook writes them, or lines)."""
        import base64
        import uuid

        directory = tmp_path / "spool"
        directory.mkdir()
        lines = []
        for record in records:
            if isinstance(record, dict):
                record = json.dumps(
                    {
                        "spool_id": str(uuid.uuid4()),
                        "provider": "mpesa",
                        "kind": "stk",
                        "body": base64.b64encode(b"{}").decode(),
                        "headers": {},
                        "client_addr": "127.0.0.1",
                        "received_at": "2026-12-01T10:00:00+00:00",
                        "status": "pending",
                        "reason": None,
                        "detail": None,
                        **record,
                    }
                )
            lines.append(record + "\n")
        (directory / "spool-gone-host.jsonl").write_text("".join(lines))
        return directory

    def test_a_poison_record_is_kept_as_rejected_the_rest_drains_and_it_exits_0(
        self, env: dict[str, str | None], tmp_path: Path, sessions: sessionmaker[Session]
    ) -> None:
        upgraded(env)
        directory = self.spool_with(
            tmp_path, {"code": "GOOD000001"}, {"code": "ws_CO_\ud800"}, {"code": "GOOD000002"}
        )

        result = run(env, "spool", "drain", MOMO_SPOOL_DIR=str(directory))

        assert result.exit_code == 0, result.output
        assert "3 callback(s) moved to the inbox" in result.output
        assert "1 of them the database refused as sent: kept as rejected" in result.output
        with sessions() as session:
            statuses = dict(session.execute(select(InboxItem.code, InboxItem.status)).all())
        assert statuses == {
            "GOOD000001": "pending",
            "ws_CO_\\ud800": "rejected",
            "GOOD000002": "pending",
        }

    def test_a_quarantined_record_is_named_with_its_file_and_it_exits_1(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        upgraded(env)
        directory = self.spool_with(tmp_path, {"code": "GOOD000001"}, '{"spool_id": "x"}')

        result = run(env, "spool", "drain", MOMO_SPOOL_DIR=str(directory))

        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "1 callback(s) moved to the inbox" in result.output
        assert f"1 record(s) no database takes were moved aside to {directory}" in result.output
        assert (directory / "quarantine.jsonl").exists()

    def test_an_unreachable_database_is_one_line_naming_the_variable_and_the_spool_stays(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        directory = self.spool_with(tmp_path, {"code": "GOOD000001"})
        missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"

        result = run(
            env, "spool", "drain", MOMO_SPOOL_DIR=str(directory), MOMO_DATABASE_URL=missing
        )

        assert_clean_error(result, "MOMO_DATABASE_URL", f"they stay in {directory}")
        assert [p.name for p in directory.glob("spool-*")] != []

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run as another user")
    def test_run_by_another_user_than_the_directorys_owner_it_refuses_and_touches_nothing(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        upgraded(env)
        directory = self.spool_with(tmp_path, {"code": "GOOD000001"})
        nobody = pwd.getpwnam("nobody")
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)  # the web processes' user
        before = sorted(p.name for p in directory.iterdir())

        result = run(env, "spool", "drain", MOMO_SPOOL_DIR=str(directory))

        assert_clean_error(result, f"{directory} belongs to nobody", "sudo -u nobody momo spool")
        assert sorted(p.name for p in directory.iterdir()) == before  # no root-owned lock

    def test_without_a_spool_directory_it_drains_nothing_and_creates_nothing(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        directory = tmp_path / "spool"

        result = run(env, "spool", "drain", MOMO_SPOOL_DIR=str(directory))

        assert result.exit_code == 0, result.output
        assert f"no spool directory at {directory}" in result.output
        assert not directory.exists()  # made later by the web user, not by this command


# --- a database momo cannot use -----------------------------------------------------------

#: commands that need the database, each with what it needs besides
DATABASE_COMMANDS = [
    ("check",),
    ("token", "create", "--name", "a", "--role", "admin"),
    ("token", "list"),
    ("db", "upgrade"),
    ("inbox", "list"),
    ("inbox", "replay", "1"),
    ("customers", "import", "{csv}"),
    ("serve", "--port", "0"),
]


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_admin_url() -> str:
    url = os.environ.get("MOMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        lacking(f"needs a PostgreSQL server to ask for a missing database ({url}): {exc}")
    return url


class TestADatabaseMomoCannotUse:
    """One line naming MOMO_DATABASE_URL (password hidden) and what to do; never a traceback."""

    def invoke(
        self, env: dict[str, str | None], tmp_path: Path, args: tuple[str, ...], url: str
    ) -> Result:
        csv_file = write_csv(tmp_path / "c.csv", HEADER + "ACC1,Amina,0712345678\n")
        return run(
            env,
            *(a.format(csv=csv_file) for a in args),
            MOMO_DATABASE_URL=url,
            MOMO_MPESA_PATH_TOKEN=PATH_TOKEN,
        )

    def assert_one_line(self, result: Result, *fragments: str) -> str:
        assert_clean_error(result, "MOMO_DATABASE_URL", *fragments)
        assert "s3cret" not in result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        return lines[0]

    @pytest.mark.parametrize("args", DATABASE_COMMANDS)
    def test_an_unreachable_server(
        self, env: dict[str, str | None], tmp_path: Path, args: tuple[str, ...]
    ) -> None:
        url = f"postgresql://momo:s3cret@127.0.0.1:{_unused_port()}/momo"
        result = self.invoke(env, tmp_path, args, url)
        self.assert_one_line(result, "cannot connect", "***@127.0.0.1", "is running")

    @pytest.mark.parametrize("args", DATABASE_COMMANDS)
    def test_a_database_that_does_not_exist(
        self, env: dict[str, str | None], tmp_path: Path, args: tuple[str, ...]
    ) -> None:
        name = f"momo_missing_{uuid.uuid4().hex[:8]}"
        url = make_url(_postgres_admin_url()).set(database=name, password="s3cret")
        result = self.invoke(env, tmp_path, args, url.render_as_string(hide_password=False))
        self.assert_one_line(result, f"{name!r} does not exist", f"createdb {name}")

    @pytest.mark.parametrize(
        ("url", "said"),
        [
            ("foo://momo:s3cret@db/momo", "not a database URL"),
            ("postgresql+psycopg2://momo:s3cret@db/momo", "driver psycopg2"),
            ("not a url at all", "not a database URL"),
            ("postgresql://momo:s3cret@db:notaport/momo", "not a database URL"),
        ],
    )
    @pytest.mark.parametrize("args", DATABASE_COMMANDS)
    def test_an_unsupported_url(
        self, env: dict[str, str | None], tmp_path: Path, args: tuple[str, ...], url: str, said: str
    ) -> None:
        result = self.invoke(env, tmp_path, args, url)
        self.assert_one_line(result, said, "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")

    def test_a_sqlite_file_in_a_missing_directory(
        self, env: dict[str, str | None], tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'momo.db'}"
        result = self.invoke(env, tmp_path, ("db", "upgrade"), url)
        self.assert_one_line(result, "cannot open the database file", "directory")

    def test_other_errors_are_not_dressed_up_as_database_errors(
        self, env: dict[str, str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import matcher.check

        upgraded(env)
        for error in (ImportError("a bug of ours", name="nosuchmodule"), ValueError("a bug")):

            def broken(*_args: object, error: Exception = error, **_kwargs: object) -> None:
                raise error

            monkeypatch.setattr(matcher.check, "check_invariants", broken)
            result = run(env, "check")
            assert result.exception is error
            assert "MOMO_DATABASE_URL" not in result.output


# --- momo serve ---------------------------------------------------------------------------

#: as `openssl rand -hex 24` makes one
CONFIGURED_TOKEN = "6d1e0f9c8b7a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f"


class StoppedServer:
    """Stands in for werkzeug's server: ``momo serve`` prints its start-up, then it stops."""

    def serve_forever(self) -> None:
        raise KeyboardInterrupt

    def server_close(self) -> None:
        pass


@pytest.fixture
def serve(env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from momo import serving

    monkeypatch.setattr(serving, "make_server", lambda *a, **k: StoppedServer())

    def start(**overrides: str | None) -> Result:
        return run(env, "serve", "--port", "8123", **overrides)

    return start


def kept_token(tmp_path: Path) -> str:
    return (tmp_path / "instance" / "mpesa_path_token").read_text().strip()


class TestServe:
    def test_a_token_it_generates_is_shown_the_first_time_only(
        self, serve: Any, tmp_path: Path
    ) -> None:
        first = serve()
        assert first.exit_code == 0, first.output
        token = kept_token(tmp_path)
        assert f"/webhooks/daraja/{token}/c2b/confirmation" in first.output
        assert "shown this once" in first.output

        again = serve()

        assert again.exit_code == 0, again.output
        assert kept_token(tmp_path) == token
        assert token not in again.output
        assert "/webhooks/daraja/<path token>/c2b/confirmation" in again.output

    def test_the_callback_urls_are_shown_in_their_registration_words(
        self, serve: Any, tmp_path: Path
    ) -> None:
        result = serve()

        assert result.exit_code == 0, result.output
        token, kept = kept_token(tmp_path), tmp_path / "instance" / "mpesa_path_token"
        base = "http://127.0.0.1:8123"
        assert f"generated an M-PESA path token, kept in {kept}\n" in result.output
        assert (
            "M-PESA callback URLs (register these with Safaricom, behind HTTPS):\n"
            f"  {base}/webhooks/daraja/{token}/c2b/confirmation\n"
            f"  {base}/webhooks/daraja/{token}/c2b/validation\n"
            f"  {base}/webhooks/daraja/{token}/stk\n"
            f"  {base}/webhooks/daraja/{token}/status/result\n"
            f"  {base}/webhooks/daraja/{token}/status/timeout\n"
            f"  {base}/webhooks/daraja/{token}/reversal/result\n"
            f"  {base}/webhooks/daraja/{token}/reversal/timeout\n"
            f"  (the path token is kept in {kept}; shown this once; logs show it as ***)\n"
            f"operator API: {base}/api/v1  (tokens: momo token create --name NAME --role admin)\n"
            f"operator console: {base}/console  (sign in with such a token)\n"
        ) in result.output

    def test_the_sqlite_file_opened_is_named_whatever_folder_momo_started_in(
        self, serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        started_in = tmp_path / "elsewhere"
        started_in.mkdir()
        monkeypatch.chdir(started_in)

        result = serve(MOMO_DATABASE_URL="sqlite:///momo.db")

        assert result.exit_code == 0, result.output
        assert f"(database: sqlite:///momo.db, the file {started_in / 'momo.db'})" in result.output

    def test_a_generated_token_is_48_characters_readable_by_its_owner_only(
        self, serve: Any, tmp_path: Path
    ) -> None:
        result = serve()

        assert result.exit_code == 0, result.output
        path = tmp_path / "instance" / "mpesa_path_token"
        assert len(kept_token(tmp_path)) == 48
        assert path.stat().st_mode & 0o777 == 0o600

    def test_a_configured_token_is_never_printed_and_its_origin_is_named(
        self, serve: Any, tmp_path: Path
    ) -> None:
        result = serve(MOMO_MPESA_PATH_TOKEN=CONFIGURED_TOKEN)

        assert result.exit_code == 0, result.output
        assert CONFIGURED_TOKEN not in result.output
        assert "/webhooks/daraja/<path token>/c2b/confirmation" in result.output
        assert (
            "  (the path token is MOMO_MPESA_PATH_TOKEN's value; logs show it as ***)\n"
            in result.output
        )
        assert not (tmp_path / "instance" / "mpesa_path_token").exists()

    @pytest.mark.parametrize("token", ["change-me", "a-short-token-1234"])
    def test_a_placeholder_or_short_configured_token_is_a_clean_error_saying_how(
        self, serve: Any, token: str
    ) -> None:
        result = serve(MOMO_MPESA_PATH_TOKEN=token)

        assert_clean_error(result, "MOMO_MPESA_PATH_TOKEN", "openssl rand -hex 24")

    def test_a_short_token_kept_by_an_older_momo_is_replaced_and_the_new_urls_shown(
        self, serve: Any, tmp_path: Path
    ) -> None:
        (tmp_path / "instance").mkdir()
        (tmp_path / "instance" / "mpesa_path_token").write_text("old-short-token\n")

        result = serve()

        assert result.exit_code == 0, result.output
        token = kept_token(tmp_path)
        assert len(token) == 48
        assert "is 15 characters long" in result.output
        assert "replaced it with a new one" in result.output
        assert (
            f"the M-PESA path token kept in {tmp_path / 'instance' / 'mpesa_path_token'} is 15 "
            "characters long; it must be at least 32 random characters; replaced it with a new "
            "one. Register the callback URLs below with Safaricom: the old ones now answer 404.\n"
        ) in result.output
        assert f"/webhooks/daraja/{token}/c2b/confirmation" in result.output
        assert "old-short-token" not in result.output


# --- momo mpesa import-statement ----------------------------------------------------------

STATEMENT_HEADER = (
    '"Organisation Name:","MOMO DEMO LTD"\n'
    '"Time Period:","From 01-11-2025 00:00:00 To 03-11-2025 23:59:59"\n'
    "\n"
    '"Receipt No.","Completion Time","Initiation Time","Details","Transaction Status",'
    '"Paid In","Withdrawn","Balance","Other Party Info","A/C No."\n'
)
#: the same payment as the sample C2B confirmation (c2b_confirmation_paybill_plain.json)
KNOWN_ROW = (
    '"TKQ4A91B2C","2025-11-03 14:30:15","2025-11-03 14:30:15","Pay Bill","Completed",'
    '"1,500.00","","88,210.00","254712345678 - WANJIKU A KAMAU","ACC1042"\n'
)
MISSED_ROW = (
    '"TKQ4A91B9Z","2025-11-03 15:00:00","2025-11-03 15:00:00","Pay Bill","Completed",'
    '"2,000.00","","90,210.00","2547******678 - JOHN DOE","ACC2001"\n'
)
CHARGE_ROW = (
    '"TKQ4A91C0A","2025-11-03 15:00:00","2025-11-03 15:00:00","Pay Bill Charge","Completed",'
    '"","-5.00","90,205.00","",""\n'
)

#: the portal's reversal of MISSED_ROW (its Details wording is chosen, see mpesa_statement)
REVERSAL_ROW = (
    '"TKR5B02D1E","2025-11-03 16:00:00","2025-11-03 16:00:00","Reversal of TKQ4A91B9Z",'
    '"Completed","","-2,000.00","88,205.00","254712345678 - JOHN DOE",""\n'
)


def env_without_none(env: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in env.items() if v is not None}


def _balance(sessions: sessionmaker[Session], account: str) -> int:
    with sessions() as session:
        customer = session.scalars(select(Customer).where(Customer.account_number == account)).one()
        return customer.balance_minor


class TestImportStatement:
    @pytest.fixture
    def customers(self, env: dict[str, str | None], tmp_path: Path) -> None:
        upgraded(env)
        path = write_csv(tmp_path / "c.csv", HEADER + "ACC1042,Wanjiku,\nACC2001,John,\n")
        assert run(env, "customers", "import", str(path)).exit_code == 0

    def test_a_missed_payment_is_recovered_and_credited_and_a_known_one_is_a_duplicate(
        self,
        env: dict[str, str | None],
        tmp_path: Path,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        # the C2B confirmation of KNOWN_ROW arrived and was recorded
        with sessions.begin() as session:
            session.add(
                InboxItem(
                    **inbox_row(
                        provider="mpesa",
                        kind="c2b/confirmation",
                        body=sample_bytes("c2b_confirmation_paybill_plain.json"),
                    )
                )
            )
        runtime = build_runtime(load_settings(env_without_none(env)))
        try:
            drain_inbox(runtime)
        finally:
            runtime.close()
        assert _balance(sessions, "ACC1042") == 150000
        statement = write_csv(
            tmp_path / "s.csv", STATEMENT_HEADER + KNOWN_ROW + CHARGE_ROW + MISSED_ROW
        )

        result = run(env, "mpesa", "import-statement", str(statement))

        assert result.exit_code == 0, result.output
        assert "seen 2 payments: already known 1, recovered 1 (credited 1," in result.output
        assert "skipped 1 withdrawals and charges" in result.output
        assert _balance(sessions, "ACC1042") == 150000
        assert _balance(sessions, "ACC2001") == 200000

    def test_a_reversal_row_reverses_its_payment_once_however_often_it_is_imported(
        self,
        env: dict[str, str | None],
        tmp_path: Path,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        assert (
            run(
                env,
                "mpesa",
                "import-statement",
                str(write_csv(tmp_path / "a.csv", STATEMENT_HEADER + MISSED_ROW)),
            ).exit_code
            == 0
        )
        assert _balance(sessions, "ACC2001") == 200000
        reversal = write_csv(tmp_path / "r.csv", STATEMENT_HEADER + MISSED_ROW + REVERSAL_ROW)

        first = run(env, "mpesa", "import-statement", str(reversal))
        again = run(env, "mpesa", "import-statement", str(reversal))

        assert first.exit_code == 0, first.output
        assert "seen 1 payments: already known 1, recovered 0" in first.output
        assert "reversals: applied 1, already known 0" in first.output
        assert again.exit_code == 0, again.output
        assert "reversals: applied 0, already known 1" in again.output
        assert _balance(sessions, "ACC2001") == 0
        with sessions() as session:
            payment = session.scalars(select(Payment).where(Payment.code == "TKQ4A91B9Z")).one()
            assert (payment.status, payment.reason) == ("unassociated", "reversed")
            assert payment.reversal_receipt == "TKR5B02D1E"
            kinds = session.scalars(
                select(LedgerEntry.kind).where(LedgerEntry.payment_id == payment.id)
            ).all()
            assert sorted(kinds) == ["payment_credit", "reversal"]

    def test_importing_the_same_file_again_recovers_nothing(
        self,
        env: dict[str, str | None],
        tmp_path: Path,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        statement = write_csv(tmp_path / "s.csv", STATEMENT_HEADER + KNOWN_ROW + MISSED_ROW)
        first = run(env, "mpesa", "import-statement", str(statement))
        assert "recovered 2 (credited 2," in first.output, first.output

        again = run(env, "mpesa", "import-statement", str(statement))

        assert again.exit_code == 0, again.output
        assert "already known 2, recovered 0" in again.output
        assert _balance(sessions, "ACC2001") == 200000
        with sessions() as session:
            kept = session.execute(
                select(ProviderRecord.code, ProviderRecord.amount_minor, ProviderRecord.source)
            ).all()
        # the provider's own record is kept once per receipt, however often it is read
        assert sorted(kept) == [
            ("TKQ4A91B2C", 150000, "statement"),
            ("TKQ4A91B9Z", 200000, "statement"),
        ]

    def test_a_receipt_with_another_amount_is_a_conflict_and_exits_1(
        self, env: dict[str, str | None], tmp_path: Path, customers: None
    ) -> None:
        first = write_csv(tmp_path / "a.csv", STATEMENT_HEADER + KNOWN_ROW)
        assert run(env, "mpesa", "import-statement", str(first)).exit_code == 0
        changed = write_csv(
            tmp_path / "b.csv", STATEMENT_HEADER + KNOWN_ROW.replace("1,500.00", "1,600.00")
        )

        result = run(env, "mpesa", "import-statement", str(changed))

        assert result.exit_code == 1
        assert "conflicts 1" in result.output
        assert "momo inbox settle" in result.output

    def test_a_malformed_row_is_named_by_line_and_the_others_still_recorded(
        self,
        env: dict[str, str | None],
        tmp_path: Path,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        bad = MISSED_ROW.replace("TKQ4A91B9Z", "TKQ4A91B8Y").replace("2,000.00", "2,00.00")
        statement = write_csv(tmp_path / "s.csv", STATEMENT_HEADER + bad + MISSED_ROW)

        result = run(env, "mpesa", "import-statement", str(statement))

        assert result.exit_code == 1
        assert "line 5: Paid In '2,00.00' is not an amount" in result.output
        assert "import a corrected export" in result.output
        assert _balance(sessions, "ACC2001") == 200000

    def test_the_time_period_it_names_is_kept_as_the_statements_coverage(
        self,
        env: dict[str, str | None],
        tmp_path: Path,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        statement = write_csv(tmp_path / "s.csv", STATEMENT_HEADER + MISSED_ROW)

        assert run(env, "mpesa", "import-statement", str(statement)).exit_code == 0

        with sessions() as session:
            (span,) = session.scalars(select(ProviderCoverage)).all()
        # From 01-11-2025 00:00:00 To 03-11-2025 23:59:59, Nairobi time (UTC+3): the last
        # second included, so the three days are covered whole
        assert (span.provider, span.source, span.records) == ("mpesa", "statement", 1)
        assert span.starts_at == datetime(2025, 10, 31, 21, 0, tzinfo=UTC)
        assert span.ends_at == datetime(2025, 11, 3, 21, 0, tzinfo=UTC)

    def test_the_days_of_its_time_period_reconcile_with_nothing_left_unread(
        self, env: dict[str, str | None], tmp_path: Path, customers: None
    ) -> None:
        statement = write_csv(tmp_path / "s.csv", STATEMENT_HEADER + MISSED_ROW)
        assert run(env, "mpesa", "import-statement", str(statement)).exit_code == 0

        result = run(env, "reconcile", "--from", "2025-11-01", "--to", "2025-11-03")

        assert result.exit_code == 0, result.output
        assert "NOT READ" not in result.output
        assert "explained: every payment on both sides is accounted for" in result.output

    def test_without_a_time_period_its_rows_times_are_the_coverage(
        self,
        env: dict[str, str | None],
        tmp_path: Path,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        header = STATEMENT_HEADER.replace('"Time Period:"', '"Printed:"')
        statement = write_csv(tmp_path / "s.csv", header + KNOWN_ROW + MISSED_ROW)

        assert run(env, "mpesa", "import-statement", str(statement)).exit_code == 0

        with sessions() as session:
            (span,) = session.scalars(select(ProviderCoverage)).all()
        assert span.starts_at == datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC)
        # up to the second after the last row's, which is covered too
        assert span.ends_at == datetime(2025, 11, 3, 12, 0, 1, tzinfo=UTC)

    def test_a_file_that_is_no_statement_is_one_line_error(
        self, env: dict[str, str | None], tmp_path: Path, customers: None
    ) -> None:
        path = write_csv(tmp_path / "c.csv", HEADER + "ACC1,John,\n")

        result = run(env, "mpesa", "import-statement", str(path))

        assert_clean_error(result, "no header row with the columns Receipt No.")


# --- momo mpesa register-urls -------------------------------------------------------------


class TestRegisterUrls:
    PUBLIC = "https://pay.example.com"

    @pytest.fixture
    def daraja(self) -> Iterator[DarajaFake]:
        with DarajaFake() as fake:
            yield fake
        assert fake.errors == []

    @pytest.fixture
    def app_env(self, env: dict[str, str | None], daraja: DarajaFake) -> dict[str, str | None]:
        """The Daraja app pointed at the fake, MOMO_PUBLIC_URL and a configured token."""
        return env | {
            "MOMO_PUBLIC_URL": self.PUBLIC,
            "MOMO_MPESA_API_BASE": daraja.base_url,
            "MOMO_MPESA_CONSUMER_KEY": daraja.consumer_key,
            "MOMO_MPESA_CONSUMER_SECRET": daraja.consumer_secret,
            "MOMO_MPESA_SHORTCODE": daraja.shortcode,
            "MOMO_MPESA_PATH_TOKEN": CONFIGURED_TOKEN,
        }

    def test_it_registers_both_urls_shows_them_masked_and_darajas_answer(
        self, app_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        result = run(app_env, "mpesa", "register-urls")

        assert result.exit_code == 0, result.output
        assert daraja.confirmation_url == (
            f"{self.PUBLIC}/webhooks/daraja/{CONFIGURED_TOKEN}/c2b/confirmation"
        )
        assert daraja.validation_url == (
            f"{self.PUBLIC}/webhooks/daraja/{CONFIGURED_TOKEN}/c2b/validation"
        )
        assert daraja.response_type == "Completed"
        assert CONFIGURED_TOKEN not in result.output
        assert f"ConfirmationURL {self.PUBLIC}/webhooks/daraja/***/c2b/confirmation" in (
            result.output
        )
        assert f"ValidationURL   {self.PUBLIC}/webhooks/daraja/***/c2b/validation" in (
            result.output
        )
        assert f"shortcode {daraja.shortcode}" in result.output
        assert "Daraja registered them: 'Success' (OriginatorCoversationID " in result.output

    def test_show_urls_prints_the_token_and_cancelled_is_sent_when_asked(
        self, app_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        result = run(
            app_env, "mpesa", "register-urls", "--show-urls", "--response-type", "Cancelled"
        )

        assert result.exit_code == 0, result.output
        assert daraja.confirmation_url is not None
        assert daraja.confirmation_url in result.output
        assert daraja.response_type == "Cancelled"

    def test_the_help_says_what_m_pesa_does_when_validation_cannot_be_reached(
        self, env: dict[str, str | None]
    ) -> None:
        result = run(env, "mpesa", "register-urls", "--help")

        assert result.exit_code == 0
        assert "validation URL cannot be reached" in result.output
        assert "Cancelled cancels it" in result.output

    def test_on_the_embedded_default_it_registers_the_token_momo_serve_keeps(
        self, app_env: dict[str, str | None], daraja: DarajaFake, tmp_path: Path
    ) -> None:
        (tmp_path / "instance").mkdir()
        (tmp_path / "instance" / "mpesa_path_token").write_text(CONFIGURED_TOKEN + "\n")

        result = run(app_env, "mpesa", "register-urls", MOMO_MPESA_PATH_TOKEN=None)

        assert result.exit_code == 0, result.output
        assert daraja.confirmation_url == (
            f"{self.PUBLIC}/webhooks/daraja/{CONFIGURED_TOKEN}/c2b/confirmation"
        )

    def test_without_any_token_it_says_where_one_comes_from_and_generates_none(
        self, app_env: dict[str, str | None], daraja: DarajaFake, tmp_path: Path
    ) -> None:
        result = run(app_env, "mpesa", "register-urls", MOMO_MPESA_PATH_TOKEN=None)

        assert_clean_error(result, "MOMO_MPESA_PATH_TOKEN is not set", "momo serve")
        assert not (tmp_path / "instance" / "mpesa_path_token").exists()
        assert daraja.requests == []

    def test_without_a_public_url_it_names_the_variable(
        self, app_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        result = run(app_env, "mpesa", "register-urls", MOMO_PUBLIC_URL=None)

        assert_clean_error(result, "MOMO_PUBLIC_URL")
        assert daraja.requests == []

    def test_without_the_daraja_app_it_names_its_variables(
        self, env: dict[str, str | None]
    ) -> None:
        result = run(
            env,
            "mpesa",
            "register-urls",
            MOMO_PUBLIC_URL=self.PUBLIC,
            MOMO_MPESA_PATH_TOKEN=CONFIGURED_TOKEN,
        )

        assert_clean_error(
            result, "MOMO_MPESA_CONSUMER_KEY", "MOMO_MPESA_CONSUMER_SECRET", "MOMO_MPESA_SHORTCODE"
        )

    def test_a_public_url_daraja_would_refuse_is_refused_naming_the_word_before_any_call(
        self, app_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        result = run(
            app_env, "mpesa", "register-urls", MOMO_PUBLIC_URL="https://mpesa.example.co.ke"
        )

        assert_clean_error(result, "'mpesa'", "another host name", "nothing was sent")
        assert daraja.requests == []
        assert CONFIGURED_TOKEN not in result.output

    def test_a_refusal_by_daraja_is_shown_in_its_words_and_exits_1(
        self, app_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        daraja.refuse_next(REGISTER, "urls_already_registered")

        result = run(app_env, "mpesa", "register-urls")

        assert_clean_error(result, "Urls are already registered.", "URL management")
        assert daraja.confirmation_url is None


# --- momo mpesa pull ------------------------------------------------------------------------


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        fake.pull_registered = True
        yield fake
    assert fake.errors == []


@pytest.fixture
def pull_env(env: dict[str, str | None], daraja: DarajaFake) -> dict[str, str | None]:
    return env | daraja.momo_env("https://pay.example.com") | {"MOMO_MPESA_PATH_TOKEN": PATH_TOKEN}


class TestPull:
    @pytest.fixture
    def customers(self, pull_env: dict[str, str | None], tmp_path: Path) -> None:
        upgraded(pull_env)
        path = write_csv(tmp_path / "c.csv", HEADER + "ACC1042,Wanjiku,\nACC2001,John,\n")
        assert run(pull_env, "customers", "import", str(path)).exit_code == 0

    def _confirmed(self, pull_env: dict[str, str | None], daraja: DarajaFake, receipt: str) -> None:
        """The confirmation of ``receipt`` reached momo and was recorded."""
        body = to_json(daraja.c2b[receipt].confirmation(daraja.shortcode))
        runtime = build_runtime(load_settings(env_without_none(pull_env)))
        try:
            with runtime.sessions.begin() as session:
                session.add(
                    InboxItem(**inbox_row(provider="mpesa", kind="c2b/confirmation", body=body))
                )
            drain_inbox(runtime)
        finally:
            runtime.close()

    def test_a_lost_confirmation_is_recovered_and_a_delivered_one_is_known(
        self,
        pull_env: dict[str, str | None],
        daraja: DarajaFake,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        known = daraja.pay_bill("1500", "254712345678", "ACC1042", deliver=False)
        self._confirmed(pull_env, daraja, known.receipt)
        lost = daraja.pay_bill("2000", "254712000001", "ACC2001", deliver=False)
        since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()

        result = run(pull_env, "mpesa", "pull", "--since", since)

        assert result.exit_code == 0, result.output
        assert "seen 2 payments: already known 1, recovered 1 (credited 1," in result.output
        assert _balance(sessions, "ACC1042") == 150000
        assert _balance(sessions, "ACC2001") == 200000
        with sessions() as session:
            (span,) = session.scalars(select(ProviderCoverage)).all()
            kept = session.execute(select(ProviderRecord.code, ProviderRecord.source)).all()
        assert (span.source, span.records, span.created_by) == ("pull", 2, "momo mpesa pull")
        assert sorted(kept) == sorted([(known.receipt, "pull"), (lost.receipt, "pull")])

    def test_pulling_again_recovers_nothing_twice(
        self,
        pull_env: dict[str, str | None],
        daraja: DarajaFake,
        sessions: sessionmaker[Session],
        customers: None,
    ) -> None:
        daraja.pull_page_size = 1  # every record on a page of its own
        for n in range(3):
            daraja.pay_bill(1000 + n, "254712000001", "ACC2001", deliver=False)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        first = run(pull_env, "mpesa", "pull", "--since", since)
        assert "recovered 3 (credited 3," in first.output, first.output

        again = run(pull_env, "mpesa", "pull", "--since", since)

        assert again.exit_code == 0, again.output
        assert "already known 3, recovered 0" in again.output
        assert _balance(sessions, "ACC2001") == 300300

    def test_a_receipt_daraja_lists_with_another_amount_is_a_conflict_and_exits_1(
        self, pull_env: dict[str, str | None], daraja: DarajaFake, customers: None
    ) -> None:
        paid = daraja.pay_bill("1500", "254712345678", "ACC1042", deliver=False)
        self._confirmed(pull_env, daraja, paid.receipt)
        paid.amount = Decimal("1600")  # Daraja's list disagrees with the confirmation
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

        result = run(pull_env, "mpesa", "pull", "--since", since)

        assert result.exit_code == 1
        assert "conflicts 1" in result.output
        assert "momo inbox settle" in result.output

    def test_a_span_older_than_48_hours_is_refused_before_asking_and_names_the_statement(
        self, pull_env: dict[str, str | None], daraja: DarajaFake, customers: None
    ) -> None:
        since = (datetime.now(UTC) - timedelta(hours=49)).isoformat()

        result = run(pull_env, "mpesa", "pull", "--since", since)

        assert_clean_error(result, "48 hours", "momo mpesa import-statement")
        assert daraja.calls(PULL_QUERY) == []

    def test_a_time_without_a_zone_is_momo_timezones(
        self, pull_env: dict[str, str | None], daraja: DarajaFake, customers: None
    ) -> None:
        local = (datetime.now(NAIROBI) - timedelta(hours=1)).replace(microsecond=0)

        result = run(pull_env, "mpesa", "pull", "--since", local.replace(tzinfo=None).isoformat())

        assert result.exit_code == 0, result.output
        assert daraja.calls(PULL_QUERY)[0].json["StartDate"] == local.strftime("%Y-%m-%d %H:%M:%S")

    def test_without_the_daraja_app_it_names_the_variables(
        self, env: dict[str, str | None]
    ) -> None:
        upgraded(env)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

        result = run(env, "mpesa", "pull", "--since", since)

        assert_clean_error(result, "MOMO_MPESA_CONSUMER_KEY")

    def test_daraja_unreachable_is_a_clean_error_saying_to_run_it_again(
        self, pull_env: dict[str, str | None], daraja: DarajaFake, customers: None
    ) -> None:
        daraja.fail_next(PULL_QUERY, times=10)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

        result = run(pull_env, "mpesa", "pull", "--since", since)

        assert_clean_error(result, "Daraja could not be asked", "run the same command again")

    def test_without_since_it_says_what_to_give(self, pull_env: dict[str, str | None]) -> None:
        result = run(pull_env, "mpesa", "pull")

        assert result.exit_code == 2
        assert "--since" in result.output

    def test_register_sends_the_callback_url_under_momos_public_url(
        self, pull_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        daraja.pull_registered = False

        result = run(pull_env, "mpesa", "pull", "register", "--nominated-number", "0722000000")

        assert result.exit_code == 0, result.output
        assert "registered for pulling" in result.output
        assert PATH_TOKEN not in result.output
        assert daraja.pull_callback_url == (
            f"https://pay.example.com/webhooks/daraja/{PATH_TOKEN}/pull"
        )

    def test_register_takes_plain_http_where_the_c2b_urls_take_it(
        self, pull_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        daraja.pull_registered = False
        public = "http://127.0.0.1:8000"  # a stand-in for Daraja, as register-urls allows

        result = run(
            pull_env | {"MOMO_PUBLIC_URL": public},
            "mpesa",
            "pull",
            "register",
            "--nominated-number",
            "0722000000",
        )

        assert result.exit_code == 0, result.output
        assert daraja.pull_callback_url == f"{public}/webhooks/daraja/{PATH_TOKEN}/pull"

    def test_register_refuses_plain_http_against_the_live_api_before_asking(
        self, pull_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        live = pull_env | {
            "MOMO_PUBLIC_URL": "http://pay.example.com",
            "MOMO_MPESA_API_BASE": "https://api.safaricom.co.ke",
        }

        result = run(live, "mpesa", "pull", "register", "--nominated-number", "0722000000")

        assert_clean_error(result, "is not https", "MOMO_PUBLIC_URL")
        assert PATH_TOKEN not in result.output

    def test_register_without_a_public_url_names_the_variable(
        self, pull_env: dict[str, str | None], daraja: DarajaFake
    ) -> None:
        result = run(
            pull_env | {"MOMO_PUBLIC_URL": None},
            "mpesa",
            "pull",
            "register",
            "--nominated-number",
            "0722000000",
        )

        assert_clean_error(result, "MOMO_PUBLIC_URL")
        assert daraja.calls(PULL_REGISTER) == []
