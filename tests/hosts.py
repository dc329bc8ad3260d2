"""Hosts of our own on this machine, for running momo on more than one "host".

Each host is a Linux network namespace with its own loopback and its own ports, joined to
this machine's namespace by a veth pair on a /30 of its own: the host is ``10.251.X.2``,
and this machine is ``10.251.X.1`` as seen from it. Nothing routes further: a host has no
default route and this machine does not forward, so a host reaches only what listens on
its ``gateway`` address, and whatever the tests send to it stays on this machine.

A host reaches the shared PostgreSQL through its Unix socket (a file, which no network
namespace hides) and a broker that listens on the hosts' gateways (tests start a Redis
of their own for that: the machine's shared services listen on 127.0.0.1 only).

Making namespaces needs root and iproute2's ``ip``; :func:`unavailable` says what is
missing. Namespaces are named ``momo-<pid>-h<n>`` after the process that made them, so a
run that was killed before it cleaned up is cleaned up by the next one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy_units import server_options
from tests.processes import start_process, stop_group

PREFIX = "momo-"
BIN = Path(sys.executable).parent
_NAME = re.compile(r"^momo-(\d+)-h\d+$")


@dataclass(frozen=True)
class Host:
    name: str  # the network namespace's name
    address: str  # the host's own address, where this machine reaches its ports
    gateway: str  # this machine's address as the host sees it
    cpu_group: Path | None = None  # a cgroup that caps the host's CPU time, if any

    def argv(self, command: list[str]) -> list[str]:
        """``command`` run inside the host (``ip netns exec`` execs it, as does the shell
        that first joins the host's CPU cgroup: the pid is the command's own)."""
        inside = ["ip", "netns", "exec", self.name, *command]
        if self.cpu_group is None:
            return inside
        join = f'echo $$ > {self.cpu_group / "cgroup.procs"} && exec "$@"'
        return ["sh", "-c", join, "sh", *inside]

    def url(self, port: int, path: str = "") -> str:
        return f"http://{self.address}:{port}{path}"


def unavailable() -> str | None:
    """Why hosts cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns list` failed: {probe.stderr.strip()}"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale() -> None:
    """Delete the namespaces of runs whose process is gone (their veths go with them)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        found = _NAME.match(name)
        if found and not _alive(int(found.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for parent in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")):
        for group in parent.glob(f"{PREFIX}*-h*"):
            found = _NAME.match(group.name)
            if found and not _alive(int(found.group(1))):
                with contextlib.suppress(OSError):  # still holds a process: left alone
                    group.rmdir()


@contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    """``count`` hosts, deleted on leaving (however it is left)."""
    _clean_stale()
    pid = os.getpid()
    # a /30 per host, picked by pid so that two runs at once do not share addresses
    block = (pid % 60) * 4
    made: list[str] = []
    links: list[str] = []
    try:
        for n in range(1, count + 1):
            name = f"{PREFIX}{pid}-h{n}"
            outside, inside = f"mo{pid % 100000}h{n}", f"mo{pid % 100000}h{n}i"
            third = block + n
            gateway, address = f"10.251.{third}.1", f"10.251.{third}.2"
            _ip("netns", "add", name)
            made.append(name)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            links.append(outside)
            _ip("link", "set", inside, "netns", name)
            _ip("addr", "add", f"{gateway}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", name, "addr", "add", f"{address}/30", "dev", inside)
            _ip("-n", name, "link", "set", inside, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        yield [
            Host(
                name=name,
                address=f"10.251.{block + n}.2",
                gateway=f"10.251.{block + n}.1",
            )
            for n, name in enumerate(made, start=1)
        ]
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for link in links:  # gone with its namespace, unless it never got there
            subprocess.run(["ip", "link", "del", link], capture_output=True)


def cpu_group(name: str, cpus: float) -> Path:
    """A cgroup (v1 ``cpu`` or v2) whose processes share ``cpus`` CPUs' time."""
    period = 100_000
    quota = max(1000, int(cpus * period))
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        group = v1 / name
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        return group
    v2 = Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        group = v2 / name
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{quota} {period}")
        return group
    raise RuntimeError("no writable cpu cgroup here: run without a CPU cap per host")


def socket_database_url(url: str) -> str:
    """``url``'s database reached through the local PostgreSQL's Unix socket, which every
    host sees (``MOMO_TEST_PG_SOCKET_DIR``, ``/var/run/postgresql`` by default)."""
    from sqlalchemy.engine import make_url

    socket_dir = os.environ.get("MOMO_TEST_PG_SOCKET_DIR", "/var/run/postgresql")
    parsed = make_url(url)
    return parsed.set(host=None, port=None, query={"host": socket_dir}).render_as_string(
        hide_password=False
    )


@dataclass
class Cluster:
    """momo on hosts: a web server and a worker on each host started, beat on the first
    only; one PostgreSQL database and one Redis (started here, listening on every host's
    gateway) shared by all. Every process is in its own process group, stopped by pid, and
    ends with the process that started it however that one ends (tests/processes.py)."""

    database_url: str  # as this machine reaches it
    workdir: Path
    path_token: str
    redis_port: int
    web_port: int = 8000  # the same on every host: each has its own ports
    metrics_port: int = 9102
    # a broker other hosts reach has a password (Redis refuses them without one)
    redis_password: str = field(default_factory=lambda: secrets.token_hex(16))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    cgroups: list[Path] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            # gunicorn's and Celery's children follow their main process; the rest are one
            proc = start_process(
                argv, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        while self.processes:
            stop_group(self.processes.popitem()[1], within=30)
        for group in self.cgroups:
            group.rmdir()
        self.cgroups.clear()

    def start_redis(self, hosts: list[Host]) -> str:
        """The shared broker, on every host's gateway (and on 127.0.0.1 for this machine)."""
        self.start(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                *(h.gateway for h in hosts),
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                self.redis_password,
                "--dir",
                str(self.workdir),
            ],
            dict(os.environ),
        )
        return self.broker_url(None)

    def broker_url(self, host: Host | None) -> str:
        """The shared broker as ``host`` reaches it (None: as this machine does)."""
        address = host.gateway if host else "127.0.0.1"
        return f"redis://:{self.redis_password}@{address}:{self.redis_port}/0"

    def env(self, host: Host | None, **extra: str) -> dict[str, str]:
        """momo's environment on ``host`` (None: this machine)."""
        own = self.workdir / (host.name if host else "local")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
        env.update(
            MOMO_DATABASE_URL=socket_database_url(self.database_url),
            MOMO_BROKER_URL=self.broker_url(host),
            MOMO_MPESA_PATH_TOKEN=self.path_token,
            # each host its own instance folder: its own spool
            MOMO_INSTANCE_PATH=str(own / "instance"),
            MOMO_SWEEP_AFTER_SECONDS="2",
            MOMO_SWEEP_INTERVAL_SECONDS="1",
            PYTHONUNBUFFERED="1",
            **extra,
        )
        return env

    def start_host(
        self,
        host: Host,
        *,
        beat: bool = False,
        web_workers: int = 1,
        worker_concurrency: int = 1,
        cpus: float | None = None,
    ) -> None:
        """momo's web server (webhooks and API) and a Celery worker on ``host``, and beat
        when ``beat`` (one host only runs it). With ``cpus``, all of them share that many
        CPUs' time (a cgroup of the host's own), as on a machine of that size. Returns once
        both answer."""
        if cpus is not None:
            group = cpu_group(host.name, cpus)
            self.cgroups.append(group)
            host = Host(host.name, host.address, host.gateway, group)
        metrics_dir = self.workdir / host.name / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env = self.env(
            host,
            MOMO_METRICS_PORT=f"0.0.0.0:{self.metrics_port}",
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        self.start(
            f"{host.name}-web",
            host.argv(
                [
                    str(BIN / "gunicorn"),
                    *server_options("momo-web"),
                    "--workers",
                    str(web_workers),
                    "--bind",
                    f"0.0.0.0:{self.web_port}",
                    "momo.wsgi:app()",
                ]
            ),
            env,
        )
        self.start(
            f"{host.name}-worker",
            host.argv(
                [
                    str(BIN / "momo"),
                    "worker",
                    "--concurrency",
                    str(worker_concurrency),
                    "--hostname",
                    f"worker@{host.name}",
                    "--without-gossip",
                    "--without-mingle",
                ]
            ),
            env,
        )
        if beat:
            self.start(
                f"{host.name}-beat",
                host.argv(
                    [
                        str(BIN / "momo"),
                        "beat",
                        "--schedule",
                        str(self.workdir / host.name / "beat-schedule"),
                    ]
                ),
                env,
            )
        _wait(lambda: "ready." in self.log(f"{host.name}-worker"), f"{host.name}'s worker")
        _wait(lambda: _answers(host.url(self.web_port, "/healthz")), f"{host.name}'s web")

    def credited_by(self, host: Host) -> int:
        """How many callbacks ``host``'s worker credited, from its /metrics."""
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(host.url(self.metrics_port, "/metrics"), timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "momo_callback_to_credit_seconds":
                return int(sum(s.value for s in family.samples if s.name.endswith("_count")))
        return 0


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout:.0f} s")
        time.sleep(0.2)
