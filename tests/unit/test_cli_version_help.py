"""`momo --version`, and `momo worker --help` / `momo beat --help` showing Celery's own
options (every argument of those two goes to Celery), without a broker set."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

MOMO = [sys.executable, "-c", "from momo.cli import main; main()"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
    return subprocess.run(
        [*MOMO, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_version_names_the_installed_package() -> None:
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == version("momo")


@pytest.mark.parametrize(
    ("command", "celery_only"), [("worker", "--concurrency"), ("beat", "--schedule")]
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_of_worker_and_beat_lists_celery_s_options(
    command: str, celery_only: str, flag: str
) -> None:
    done = run(command, flag)

    assert done.returncode == 0, done.stderr
    assert f"momo {command} runs `celery -A tasks {command}" in done.stdout
    # an option only Celery's own help lists
    assert celery_only in done.stdout


def test_without_help_a_worker_still_needs_a_broker() -> None:
    done = run("worker")

    assert done.returncode == 1
    assert "MOMO_BROKER_URL is not set" in done.stderr
