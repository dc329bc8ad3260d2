"""Migrations on real PostgreSQL, run by several processes at once."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from ingest.providers import load_settings
from matcher.db import make_engine
from matcher.migrate import current_revision, head_revision
from tests.integration.conftest import ADMIN_URL, VENV_BIN
from tests.processes import start_process
from tests.unit.test_migrations import schema_differences

pytestmark = pytest.mark.integration

# Imports everything first, says it is ready, then waits at the barrier file so that
# both upgrades start within a millisecond of each other, as two units started together.
AT_THE_BARRIER = """
import sys, time
from pathlib import Path
from momo.cli import main
import matcher.migrate, alembic.command  # noqa: F401
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
main(["db", "upgrade"])
"""


def test_two_upgrades_at_once_on_an_empty_database_both_succeed(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {"PATH": "/usr/bin:/bin", "MOMO_DATABASE_URL": fresh_pg_url}
    processes = [
        # they wait for the go file for ever: SIGKILLed if pytest dies before making it
        start_process(
            [sys.executable, "-c", AT_THE_BARRIER, str(tmp_path / f"ready{n}"), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        while not all((tmp_path / f"ready{n}").exists() for n in range(2)):
            assert all(p.poll() is None for p in processes), "an upgrade exited before the start"
            time.sleep(0.01)
        go.touch()
        results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for code, out, err in results:
        assert code == 0, err
        assert out.startswith("database at revision ")
        assert "Traceback" not in err
    engine = make_engine(fresh_pg_url)
    try:
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()
    assert schema_differences(fresh_pg_url) == []


#: every character a URL must escape in a password, and the escape character itself
HARD_PASSWORD = "S3cr@t:p/w%40d"


@pytest.fixture
def role_with_a_hard_password() -> Iterator[tuple[str, str]]:
    """A login role whose password holds ``@ : / %``, owning a database of its own; both
    dropped afterwards. Yields (URL with the password escaped, database name)."""
    suffix = uuid.uuid4().hex[:8]
    role, database = f"momo_pw_{suffix}", f"momo_pw_{suffix}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(HARD_PASSWORD)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
    server = make_url(ADMIN_URL)
    url = (
        f"postgresql://{role}:{quote(HARD_PASSWORD, safe='')}"
        f"@{server.host or '127.0.0.1'}:{server.port or 5432}/{database}"
    )
    try:
        yield url, database
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def momo(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "momo"), *args],
        env={"PATH": "/usr/bin:/bin", "MOMO_DATABASE_URL": url},
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def assert_no_password(output: str) -> None:
    for shown in (HARD_PASSWORD, quote(HARD_PASSWORD, safe=""), "S3cr"):
        assert shown not in output


def test_a_password_with_url_special_characters_migrates_and_is_never_printed(
    role_with_a_hard_password: tuple[str, str], tmp_path: Path
) -> None:
    url, _database = role_with_a_hard_password

    first = momo(url, "db", "upgrade", cwd=tmp_path)
    again = momo(url, "db", "upgrade", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("database at revision ")
    assert again.returncode == 0, again.stderr
    assert_no_password(first.stdout + first.stderr + again.stdout + again.stderr)
    engine = make_engine(load_settings({"MOMO_DATABASE_URL": url}).database_url)
    try:
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()
    token = momo(url, "token", "create", "--name", "ops", "--role", "admin", cwd=tmp_path)
    assert token.returncode == 0, token.stderr


def test_a_database_momo_cannot_use_with_such_a_password_is_one_line_without_it(
    role_with_a_hard_password: tuple[str, str], tmp_path: Path
) -> None:
    url, database = role_with_a_hard_password
    missing = url.replace(f"/{database}", f"/{database}_missing")

    for args in (("db", "upgrade"), ("check",)):
        result = momo(missing, *args, cwd=tmp_path)

        assert result.returncode == 1
        assert "does not exist" in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert_no_password(result.stdout + result.stderr)
