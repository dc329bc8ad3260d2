"""Migrations on real PostgreSQL, run by several processes at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from matcher.db import make_engine
from matcher.migrate import current_revision, head_revision
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
        subprocess.Popen(
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
