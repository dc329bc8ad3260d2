"""README's first command: `momo serve` on a bare machine turns a callback into a balance."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from tests.conftest import sample_bytes
from tests.integration.conftest import VENV_BIN, free_port, wait_until


def test_momo_serve_on_the_embedded_default_credits_a_sample_callback(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
    env["PYTHONUNBUFFERED"] = "1"
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "momo"), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=60)
        output = (tmp_path / "serve.log").read_text()
        path_token = (tmp_path / "instance" / "mpesa_path_token").read_text().strip()
        assert f"{base}/webhooks/mpesa/{path_token}/c2b/confirmation" in output
        assert (tmp_path / "momo.db").exists()

        token = (
            subprocess.run(
                [str(VENV_BIN / "momo"), "token", "create", "--name", "me", "--role", "admin"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        auth = {"Authorization": f"Bearer {token}"}
        created = requests.post(
            f"{base}/api/v1/customers",
            headers=auth,
            timeout=10,
            json={"account_number": "ACC1042", "name": "W", "phones": ["0712 345 678"]},
        )
        assert created.status_code == 201, created.text
        url = f"{base}/webhooks/mpesa/{path_token}"
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
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=20)
