"""deploy/ as deploy/README.md installs it, under a real systemd (tests/systemd_host.py):
its steps run as written, then a payment is credited and watched the ways README names:
Flower's API, /metrics on web, api and worker, the JSON log lines in the journal, and the
check timer's service.

Steps that would reach past the machine are replaced: the packages are taken from a
folder of wheels made here (the machine has no network) instead of PyPI, its database is
one of the test's own on the shared PostgreSQL, and Redis runs as a unit of its own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import ROOT, lacking, sample_bytes
from tests.integration.conftest import ADMIN_URL, redis_only
from tests.systemd_host import Machine, machine, unavailable

# a Redis of its own inside the machine, whatever the broker under test
pytestmark = [pytest.mark.integration, redis_only]

DEPLOY_README = ROOT / "deploy" / "README.md"


def steps() -> dict[int, list[str]]:
    """deploy/README.md's fresh-install block: step number -> its command lines."""
    text = DEPLOY_README.read_text()
    block = text.split("## On a fresh Debian 12", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    found: dict[int, list[str]] = {}
    step = 0
    for line in block.splitlines():
        numbered = re.match(r"# (\d+)\. ", line)
        if numbered:
            step = int(numbered[1])
        elif line.strip() and not line.startswith("#"):
            found.setdefault(step, []).append(line)
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lock's wheels and momo's own, for a machine with no network."""
    folder = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    # every line of the lock, whatever its marker says for this python: the machine's
    # python3 (the system's) decides which it installs
    lock = (ROOT / "requirements" / "main.txt").read_text()
    unmarked = folder / "unmarked.txt"
    unmarked.write_text(re.sub(r" ; [^\\\n]*", " ", lock))
    subprocess.run(
        [*pip, "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
         "-d", str(folder), "-r", str(unmarked)],
        check=True,
        timeout=600,
    )  # fmt: skip
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(folder), str(ROOT)], check=True, timeout=600
    )
    (folder / "main.txt").write_bytes((ROOT / "requirements" / "main.txt").read_bytes())
    return folder


@pytest.fixture
def database() -> Iterator[str]:
    """deploy/README.md's step 3 on the shared PostgreSQL: the role momo, and a database
    it owns (of this test's own name)."""
    name = f"momo_sd_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'momo'").fetchone() is None:
            admin.execute("CREATE ROLE momo LOGIN")
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER momo").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def host(tmp_path: Path, wheels: Path) -> Iterator[Machine]:
    why = unavailable()
    if why is not None:
        lacking(f"deploy/ under systemd needs {why}")
    settings = Path("/etc/momo")
    there = settings.exists()
    with machine(tmp_path, wheels) as booted:
        yield booted
    # what the steps wrote in /etc stayed on the machine
    assert settings.exists() == there


def curl(host: Machine, *args: str) -> str:
    return host.run(" ".join(["curl", "-sS", "--fail-with-body", *args])).stdout


def test_deploy_readme_brings_momo_up_under_systemd_and_a_payment_is_credited(
    host: Machine, database: str
) -> None:
    readme = steps()
    checkout = "cd /srv/checkout && "

    # 2. the user every unit runs as, as written
    [useradd] = readme[2]
    host.run(useradd)

    # 5. the code, from the lock (wheels here, PyPI there)
    [install] = readme[5]
    assert install.startswith("python3 -m venv /srv/momo/.venv && "), install
    host.run(
        "python3 -m venv /srv/momo/.venv && /srv/momo/.venv/bin/pip install -q --no-index "
        "--find-links /srv/wheels --require-hashes -r /srv/wheels/main.txt && "
        "/srv/momo/.venv/bin/pip install -q --no-index --no-deps /srv/wheels/momo-*.whl",
        timeout=600,
    )

    # 4. the settings, as written; then this database, JSON logs and a Redis of the machine
    for line in readme[4]:
        host.run(checkout + line)
    env = host.run("cat /etc/momo/momo.env").stdout
    assert re.search(r"^MOMO_MPESA_PATH_TOKEN=[0-9a-f]{48}$", env, re.M), env
    [flower_login] = re.findall(r"^FLOWER_BASIC_AUTH=(\S+)$", env, re.M)
    [token_line] = re.findall(r"^MOMO_MPESA_PATH_TOKEN=(\S+)$", env, re.M)
    path_token = token_line
    host.run(
        f"sed -i 's|/momo?host=|/{database}?host=|' /etc/momo/momo.env && "
        "echo MOMO_LOG_FORMAT=json >> /etc/momo/momo.env && "
        "stat -c '%U:%G %a' /etc/momo/momo.env"
    )
    assert host.run("stat -c '%U:%G %a' /etc/momo/momo.env").stdout.split() == ["root:momo", "640"]
    host.run(
        "systemd-run --unit=test-redis -p User=nobody redis-server --port 6379 "
        "--bind 127.0.0.1 --save '' --appendonly no"
    )

    # 6. the units, as written
    for line in readme[6]:
        if line.startswith(("cp ", "systemctl enable")):
            host.run(checkout + line, timeout=300)
    for unit in ("momo-web", "momo-api", "momo-worker", "momo-beat", "momo-flower"):
        host.wait(f"systemctl is-active --quiet {unit}")
    assert host.run("systemctl is-active momo-migrate").stdout.strip() == "active"
    assert host.run("systemctl is-enabled momo-check.timer").stdout.strip() == "enabled"
    # every process as the user momo, none as root
    for unit in ("momo-web", "momo-api", "momo-worker", "momo-beat", "momo-flower"):
        users = host.run(
            f"ps -o user= --ppid $(systemctl show -p MainPID --value {unit}) "
            f"-p $(systemctl show -p MainPID --value {unit})"
        ).stdout.split()
        assert users and set(users) == {"momo"}, (unit, users)
    # the state directory systemd made, owned by momo, the spool in it
    owners = host.run("stat -c '%U %n' /var/lib/momo /var/lib/momo/spool").stdout
    assert owners.split() == ["momo", "/var/lib/momo", "momo", "/var/lib/momo/spool"]

    # 7. an operator token, through README's function (as momo, with its settings)
    [function] = [line for line in readme[7] if line.startswith("momo() {")]
    token = host.run(function + "\nmomo token create --name ops --role admin").stdout
    admin = token.strip().splitlines()[-1]
    auth = f"-H 'Authorization: Bearer {admin}'"

    # a customer, then M-PESA confirms a payment for them at the web's socket
    customer = {"account_number": "ACC1042", "name": "Wanjiku", "phones": ["0712345678"]}
    host.write("/tmp/customer.json", json.dumps(customer))
    curl(
        host, auth, "-H 'Content-Type: application/json'", "--data-binary @/tmp/customer.json",
        "http://127.0.0.1:8001/api/v1/customers",
    )  # fmt: skip
    body = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))
    assert body["BillRefNumber"] == "ACC1042"

    def confirm(code: str, balance: str) -> None:
        """M-PESA confirms 1500 with receipt ``code``; ACC1042's balance becomes it."""
        host.write("/tmp/callback.json", json.dumps(body | {"TransID": code}))
        answer = curl(
            host, "-H 'Content-Type: application/json'", "--data-binary @/tmp/callback.json",
            f"http://127.0.0.1:8000/webhooks/mpesa/{path_token}/c2b/confirmation",
        )  # fmt: skip
        assert json.loads(answer)["ResultCode"] == 0
        host.wait(
            f"curl -sS --fail {auth} http://127.0.0.1:8001/api/v1/customers/ACC1042 "
            f'| grep -q \'"balance":"{balance}"\''
        )

    confirm(body["TransID"], "1500.00")

    # Flower saw momo.process_inbox succeed (its API, behind its login)
    tasks = json.loads(curl(host, f"-u '{flower_login}'", "http://127.0.0.1:5555/api/tasks"))
    assert any(
        t["name"] == "momo.process_inbox" and t["state"] == "SUCCESS" for t in tasks.values()
    ), tasks
    # /metrics: web counted the callback, the worker its credit, the api the state
    web = curl(host, "http://127.0.0.1:8000/metrics")
    assert re.search(r'momo_callbacks_total\{[^}]*outcome="accepted"[^}]*\} 1\.0', web), web
    worker = curl(host, "http://127.0.0.1:9102/metrics")
    assert re.search(r"momo_callback_to_credit_seconds_count\{[^}]*\} 1\.0", worker), worker
    assert "\nmomo_inbox_pending 0.0\n" in curl(host, "http://127.0.0.1:8001/metrics")
    # the journal holds the payment's story as JSON lines, tied by its receipt code
    lines = host.run("journalctl -u momo-web -u momo-worker -o cat --no-pager").stdout
    story = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
    assert any(entry.get("code") == body["TransID"] for entry in story), lines[-3000:]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in story)
    assert path_token not in lines

    # the check's service, as its timer runs it: the books in order, shown by the api
    host.run("systemctl start momo-check", timeout=300)
    assert "\nmomo_check_ok 1.0\n" in curl(host, "http://127.0.0.1:8001/metrics")

    # a restart of the web refuses nothing: systemd holds its socket meanwhile, and the
    # callback sent at once waits in its backlog for the new gunicorn
    host.run("systemctl restart --no-block momo-web")
    confirm("TKRESTART1", "3000.00")
    secrets_seen = host.run("journalctl -o cat --no-pager").stdout
    assert path_token not in secrets_seen
    assert admin not in secrets_seen
