"""The systemd units in deploy/: a restart or an upgrade of a server never refuses a
connection, and a stop lets the requests in hand finish."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.deploy_units import DEPLOY, unit

#: the servers and the addresses nginx (deploy/README.md) is pointed at
SERVERS = {"momo-web": "127.0.0.1:8000", "momo-api": "127.0.0.1:8001"}


def words(values: list[str]) -> list[str]:
    return [word for value in values for word in value.split()]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, f"a time span this test reads: {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


@pytest.mark.parametrize(("name", "address"), SERVERS.items())
class TestServerUnits:
    def test_systemd_holds_the_listening_socket(self, name: str, address: str) -> None:
        socket_unit = DEPLOY / f"{name}.socket"
        assert socket_unit.exists(), f"{socket_unit} missing: a restart would refuse callbacks"
        socket = unit(socket_unit)
        assert socket["Socket.ListenStream"] == [address]
        # callbacks that arrive while the server restarts wait in this queue
        assert int(socket["Socket.Backlog"][0]) >= 1024

    def test_the_service_cannot_start_without_its_socket(self, name: str, address: str) -> None:
        service = unit(DEPLOY / f"{name}.service")
        assert f"{name}.socket" in words(service["Unit.Requires"])
        assert f"{name}.socket" in words(service["Unit.After"])

    def test_gunicorn_serves_the_socket_it_is_handed_and_binds_nothing(
        self, name: str, address: str
    ) -> None:
        # with LISTEN_FDS set, --bind fd://3 names the socket twice (gunicorn exits with
        # EBADF), and an address would be bound by gunicorn itself were the socket missing
        argv = shlex.split(unit(DEPLOY / f"{name}.service")["Service.ExecStart"][0])
        assert argv[0].endswith("/gunicorn")
        assert not [a for a in argv if a in ("-b", "--bind") or a.startswith("--bind=")], argv

    def test_a_stop_lets_every_worker_finish_its_request(self, name: str, address: str) -> None:
        service = unit(DEPLOY / f"{name}.service")
        argv = shlex.split(service["Service.ExecStart"][0])
        graceful = float(argv[argv.index("--graceful-timeout") + 1])
        # SIGTERM to the master alone; it stops its workers gracefully
        assert service["Service.KillMode"] == ["mixed"]
        assert service.get("Service.KillSignal", ["SIGTERM"]) == ["SIGTERM"]
        assert seconds(service["Service.TimeoutStopSec"][0]) > graceful


def test_the_deploy_steps_enable_the_sockets() -> None:
    readme = (DEPLOY / "README.md").read_text()
    enable = next(line for line in readme.splitlines() if "systemctl enable" in line)
    for name in SERVERS:
        assert f"{name}.socket" in enable, enable
