"""README's examples, run as a new user runs them: in order, on a first `momo serve`, from
the first payment through the Payments page, customers, plans and the transaction log.
Every curl fails the run on an HTTP error, so an example that no longer works is found
here, not by the reader."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import VENV_BIN, momo_serve

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"
#: the sections run, in README's order
SECTIONS = (
    "## A first payment, step by step",
    "### The Payments page, screen by screen",
    "### Customers, plans and vouchers",
    "### Transaction log and dashboard",
)


def shell_blocks(heading: str) -> str:
    text = README.read_text()
    assert heading in text, f"README has no {heading!r}"
    section = text.split(heading, 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, f"no sh block under {heading!r}"
    return "\n".join(blocks)


def test_the_examples_work_in_order_on_a_first_run(tmp_path: Path) -> None:
    # README's commands name the venv as .venv/bin/momo, in the folder momo serve runs in
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
    with momo_serve(tmp_path, port=None) as (base, env, _proc):
        script = "\n".join(shell_blocks(heading) for heading in SECTIONS)
        script = script.replace("http://127.0.0.1:8000", base)
        # each answer on a line of its own; an HTTP error stops the run with its body
        prelude = 'curl() { command curl --fail-with-body "$@"; echo; }\nset -euo pipefail\n'
        done = subprocess.run(
            ["bash", "-c", prelude + script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    balances = [a["balance"] for a in answers if "balance" in a and "payment" in a]
    # disassociated (1500 of 2000 off), then associated again, as README's comments say
    assert balances == ["500.00", "2000.00"], balances
