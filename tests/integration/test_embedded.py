"""README's first command: `momo serve` on a bare machine turns a callback into a balance."""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests
from sqlalchemy import create_engine, func, select

from matcher.models import InboxItem
from tests.conftest import sample_bytes
from tests.integration.conftest import (
    PATH_TOKEN,
    VENV_BIN,
    ambiguous_post,
    momo_serve,
    raw_request,
    wait_until,
)


@contextmanager
def embedded_server(tmp_path: Path, **extra_env: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`momo serve` on the embedded default, as README's first command runs it."""
    with momo_serve(tmp_path, **extra_env) as (base, env, _proc):
        yield base, env


def admin_token(tmp_path: Path, env: dict[str, str]) -> str:
    return (
        subprocess.run(
            [str(VENV_BIN / "momo"), "token", "create", "--name", "ops", "--role", "admin"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def test_momo_serve_on_the_embedded_default_credits_a_sample_callback(tmp_path: Path) -> None:
    with embedded_server(tmp_path) as (base, env):
        output = (tmp_path / "serve.log").read_text()
        path_token = (tmp_path / "instance" / "mpesa_path_token").read_text().strip()
        assert f"{base}/webhooks/daraja/{path_token}/c2b/confirmation" in output
        assert (tmp_path / "momo.db").exists()
        auth = {"Authorization": f"Bearer {admin_token(tmp_path, env)}"}
        created = requests.post(
            f"{base}/api/v1/customers",
            headers=auth,
            timeout=10,
            json={"account_number": "ACC1042", "name": "W", "phones": ["0712 345 678"]},
        )
        assert created.status_code == 201, created.text
        url = f"{base}/webhooks/daraja/{path_token}"
        for _ in range(2):  # the second delivery changes nothing
            ack = requests.post(
                f"{url}/c2b/confirmation",
                timeout=10,
                data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            )
            assert ack.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
        requests.post(f"{url}/stk", data=sample_bytes("stk_callback_success.json"), timeout=10)

        def balance() -> str:
            r = requests.get(f"{base}/api/v1/customers/ACC1042", headers=auth, timeout=10)
            return str(r.json()["balance"])

        wait_until(lambda: balance() == "1520.00", timeout=15)
        time.sleep(0.5)
        assert balance() == "1520.00"


def test_concurrent_operators_on_the_embedded_default_never_see_a_5xx(tmp_path: Path) -> None:
    """SQLite has one writer at a time: contention must be waited out, never a 'locked' 5xx."""
    with embedded_server(tmp_path, MOMO_SWEEP_INTERVAL_SECONDS="1") as (base, env):
        auth = {"Authorization": f"Bearer {admin_token(tmp_path, env)}"}
        path_token = (tmp_path / "instance" / "mpesa_path_token").read_text().strip()
        accounts = [f"SQ-{n}" for n in range(4)]
        for account in accounts:
            r = requests.post(
                f"{base}/api/v1/customers",
                headers=auth,
                timeout=30,
                json={"account_number": account, "name": account},
            )
            assert r.status_code == 201
        plan = {"code": "P", "name": "P", "price": "3.00", "validity_minutes": 60}
        r = requests.post(f"{base}/api/v1/plans", headers=auth, timeout=30, json=plan)
        assert r.status_code == 201
        statuses: list[int] = []
        lock = threading.Lock()
        callback = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))

        def act(n: int) -> None:
            rnd = random.Random(n)
            account = rnd.choice(accounts)
            choice = n % 4
            if choice == 0:
                r = requests.post(
                    f"{base}/api/v1/payments",
                    headers=auth,
                    timeout=60,
                    json={"account_number": account, "amount": "5.00"},
                )
                if r.status_code == 201 and rnd.random() < 0.5:
                    r = requests.post(
                        f"{base}/api/v1/payments/{r.json()['id']}/disassociate",
                        headers=auth,
                        json={},
                        timeout=60,
                    )
            elif choice == 1:
                r = requests.post(
                    f"{base}/api/v1/customers/{account}/purchases",
                    headers=auth,
                    json={"plan": "P"},
                    timeout=60,
                )
            elif choice == 2:
                body = {
                    **callback,
                    "TransID": f"SQ{n:08d}",
                    "BillRefNumber": account,
                    "TransAmount": "7.00",
                }
                r = requests.post(
                    f"{base}/webhooks/mpesa/{path_token}/c2b/confirmation", json=body, timeout=60
                )
            else:
                r = requests.get(f"{base}/api/v1/payments", headers=auth, timeout=60)
            with lock:
                statuses.append(r.status_code)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(act, range(240)))
        assert not [s for s in statuses if s >= 500], sorted(set(statuses))
        assert set(statuses) <= {200, 201, 409}

        def checked() -> bool:
            result = subprocess.run(
                [str(VENV_BIN / "momo"), "check", "--stuck-after", "0"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            return result.returncode == 0

        wait_until(checked, timeout=30, interval=0.5)
    assert "database is locked" not in (tmp_path / "serve.log").read_text()


def test_momo_serve_keeps_a_configured_token_out_of_its_output_and_request_log(
    tmp_path: Path,
) -> None:
    """Started with MOMO_MPESA_PATH_TOKEN: neither the start-up lines nor the access log
    show it, whatever the requests; a body framed twice is refused and not stored."""
    engine = create_engine(f"sqlite:///{tmp_path / 'momo.db'}")

    def inbox_count() -> int:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(InboxItem)) or 0)

    with embedded_server(tmp_path, MOMO_MPESA_PATH_TOKEN=PATH_TOKEN) as (base, _):
        path = f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation"
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        assert requests.post(base + path, data=body, timeout=10).status_code == 200
        assert requests.post(base + path + "x", data=body, timeout=10).status_code == 404
        stored = inbox_count()

        framed_twice = raw_request(base, ambiguous_post(path, body.replace(b"TKQ", b"TKZ")))

        assert framed_twice.startswith("HTTP/1.1 400"), framed_twice
        assert "Content-Length and Transfer-Encoding" in framed_twice
        assert inbox_count() == stored == 1
        wait_until(lambda: " 400 " in (tmp_path / "serve.log").read_text())
    engine.dispose()
    output = (tmp_path / "serve.log").read_text()
    assert "/webhooks/daraja/<path token>/c2b/confirmation" in output
    requests_logged = [line for line in output.splitlines() if "POST " in line]
    # 200, 404 and 400, each once: momo's access log, not werkzeug's besides
    assert len(requests_logged) == 3, output
    statuses = [re.search(r" (\d{3}) [\d.]+ms", line) for line in requests_logged]
    assert [m.group(1) if m else None for m in statuses] == ["200", "404", "400"], output
    for line in requests_logged:
        assert "POST /webhooks/mpesa/***/c2b/confirmation" in line
    assert PATH_TOKEN not in output
