"""deploy/ and the Procfile as written: the systemd units (a restart or an upgrade of a
server never refuses a connection, a stop lets the requests in hand finish, migrations run
once before everything, every process runs as momo with its state in /var/lib/momo), checked
by `systemd-analyze verify`; the nginx site, checked by `nginx -t` and served for real in
front of stand-in servers; and the Procfile's lines as a platform and honcho run them.

`systemd-analyze` and `nginx` come from Debian (`apt-get install systemd nginx`): without
them those tests skip, and fail under MOMO_REQUIRE_SERVICES=1 (as .ci/run sets)."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from core.metrics import check_file, metrics_listen
from ingest.providers import load_settings
from tests.conftest import ROOT, lacking
from tests.deploy_units import DEPLOY, unit
from tests.processes import start_process

#: the servers and the addresses nginx (deploy/nginx/momo.conf) is pointed at
SERVERS = {"momo-web": "127.0.0.1:8000", "momo-api": "127.0.0.1:8001"}
#: every long-running service; each needs the schema current but Flower (broker only)
SERVICES = ("momo-web", "momo-api", "momo-worker", "momo-beat", "momo-flower")
NEEDS_SCHEMA = ("momo-web", "momo-api", "momo-worker", "momo-beat", "momo-check")
#: started by its timer, not enabled itself
TIMED = {"momo-check": "momo-check.timer"}
VENV = "/srv/momo/.venv/bin/"
SITE = DEPLOY / "nginx" / "momo.conf"


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


def needs_tool(name: str, install: str) -> str:
    """The path of the program ``name``; skipped with how to install it when missing, or
    failed when the environment says every tool must be there (MOMO_REQUIRE_SERVICES=1)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    message = f"`{name}` is not installed: {install}"
    lacking(message)


# --- systemd ------------------------------------------------------------------------------


def test_migrations_run_once_in_a_unit_of_their_own() -> None:
    migrate = unit(DEPLOY / "momo-migrate.service")
    assert migrate["Service.Type"] == ["oneshot"]
    # active once done: a service restarting later does not migrate again
    assert migrate["Service.RemainAfterExit"] == ["yes"]
    assert migrate["Service.ExecStart"] == [f"{VENV}momo db upgrade"]
    for path in sorted(DEPLOY.glob("momo-*.service")):
        if path.stem == "momo-migrate":
            continue
        service = unit(path)
        for start in service.get("Service.ExecStartPre", []) + service["Service.ExecStart"]:
            assert "db upgrade" not in start, f"{path.name} migrates too: {start}"


@pytest.mark.parametrize("name", NEEDS_SCHEMA)
def test_a_service_starts_only_after_the_migrations(name: str) -> None:
    service = unit(DEPLOY / f"{name}.service")
    assert "momo-migrate.service" in words(service["Unit.Requires"])
    assert "momo-migrate.service" in words(service["Unit.After"])


@pytest.mark.parametrize("name", ["momo-migrate", *SERVICES, *TIMED])
def test_every_process_runs_as_momo_in_its_state_directory(name: str) -> None:
    service = unit(DEPLOY / f"{name}.service")
    assert service["Service.User"] == ["momo"]
    assert service.get("Service.DynamicUser", ["no"]) == ["no"]
    # systemd makes /var/lib/momo and hands it to momo before the process starts
    assert "momo" in words(service["Service.StateDirectory"])
    assert service["Service.WorkingDirectory"] == ["/var/lib/momo"]
    assert service["Service.EnvironmentFile"] == ["/etc/momo/momo.env"]
    (start,) = service["Service.ExecStart"]
    assert start.startswith(VENV), start


def test_beat_keeps_its_schedule_in_the_state_directory() -> None:
    argv = shlex.split(unit(DEPLOY / "momo-beat.service")["Service.ExecStart"][0])
    assert argv[argv.index("--schedule") + 1].startswith("/var/lib/momo/")


# --- momo check on a timer, metrics on loopback ---------------------------------------------

PROMETHEUS = DEPLOY / "prometheus"


def check_alert_allows() -> float:
    """Seconds MomoCheckNotRun lets the last check's timestamp age, read from its
    expression ``time() - max(momo_check_last_run_timestamp_seconds) > N`` (N may be a
    product: ``3 * 3600``)."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    [rule] = [r for r in rules if r.get("alert") == "MomoCheckNotRun"]
    match = re.fullmatch(
        r"time\(\) - max\(momo_check_last_run_timestamp_seconds\) > ([\d\s*]+)",
        rule["expr"].strip(),
    )
    assert match, f"an expression this test reads: {rule['expr']!r}"
    return math.prod(int(factor) for factor in match[1].split("*"))


def test_the_check_timer_keeps_its_alert_quiet_with_a_run_to_spare() -> None:
    """Between two recorded results at worst: one run failed (the database down), the next
    started as late as the timer's random delay lets it and ran until its timeout."""
    analyze = needs_tool("systemd-analyze", "apt-get install systemd")
    timer = unit(DEPLOY / "momo-check.timer")
    check = unit(DEPLOY / "momo-check.service")
    assert timer.get("Timer.Unit", ["momo-check.service"]) == ["momo-check.service"]
    assert check["Service.Type"] == ["oneshot"]
    assert check["Service.ExecStart"] == [f"{VENV}momo check"]
    [calendar] = timer["Timer.OnCalendar"]
    shown = subprocess.run(
        [analyze, "calendar", "--iterations=6", calendar],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "TZ": "UTC"},
    )
    assert shown.returncode == 0, shown.stderr
    runs = [
        datetime.strptime(found, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        for found in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown.stdout)
    ]
    assert len(runs) == 6, shown.stdout
    interval = max((b - a).total_seconds() for a, b in itertools.pairwise(runs))
    delay = seconds(timer.get("Timer.RandomizedDelaySec", ["0"])[0])
    # a oneshot has no start timeout unless given one; a hung check would stop the timer
    timeout = seconds(check["Service.TimeoutStartSec"][0])
    assert 2 * interval + delay + timeout < check_alert_allows()
    # a run the host was down for happens at boot
    assert timer["Timer.Persistent"] == ["yes"]
    assert timer["Install.WantedBy"] == ["timers.target"]


def test_the_check_records_its_result_in_the_database_the_api_reads() -> None:
    settings = load_settings(env_example() | {"MOMO_MPESA_PATH_TOKEN": secrets.token_hex(24)})
    for name in ("momo-check", "momo-api"):
        service = unit(DEPLOY / f"{name}.service")
        # both read MOMO_DATABASE_URL from momo.env; neither moves it
        assert service["Service.EnvironmentFile"] == ["/etc/momo/momo.env"], name
        moved = [e for e in service.get("Service.Environment", []) if "MOMO_DATABASE_URL" in e]
        assert moved == [], name
    # its text file (for node_exporter) in the state directory systemd makes for the check
    check = unit(DEPLOY / "momo-check.service")
    result = check_file(settings.instance_path)
    states = [Path("/var/lib", d) for d in words(check["Service.StateDirectory"])]
    assert any(result.is_relative_to(state) for state in states), result
    assert check.get("Service.ProtectSystem", ["no"]) != ["strict"]


def unit_environment(name: str) -> dict[str, str]:
    """The variables a unit's ``Environment=`` lines set."""
    return dict(
        word.split("=", 1)
        for line in unit(DEPLOY / f"{name}.service").get("Service.Environment", [])
        for word in shlex.split(line)
    )


def test_every_metrics_listener_is_on_loopback_and_prometheus_is_pointed_at_it() -> None:
    listeners = {
        path.stem: f"{host}:{port}"
        for path in sorted(DEPLOY.glob("momo-*.service"))
        if (listen := metrics_listen(unit_environment(path.stem))) is not None
        for host, port in [listen]
    }
    # web and api answer /metrics on their own sockets, which are on loopback (above)
    assert listeners == {"momo-worker": "127.0.0.1:9102"}
    every = listeners | SERVERS
    assert len(set(every.values()) | {"127.0.0.1:5555"}) == len(every) + 1, "a port taken twice"
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert jobs == {name: [address] for name, address in every.items()}
    assert [Path(rule).name for rule in config["rule_files"]] == ["momo-alerts.yml"]


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "momo.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_the_spool_is_state_systemd_gives_the_web_user() -> None:
    # state, not runtime: spooled callbacks were acknowledged and must outlive a reboot
    spool = env_example()["MOMO_SPOOL_DIR"]
    web = unit(DEPLOY / "momo-web.service")
    assert spool == "/var/lib/momo/spool"
    assert "momo/spool" in words(web["Service.StateDirectory"])
    assert env_example()["MOMO_INSTANCE_PATH"] == "/var/lib/momo"


def test_the_example_settings_are_taken_once_the_token_is_made(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = env_example() | {"MOMO_MPESA_PATH_TOKEN": secrets.token_hex(24)}
    with caplog.at_level(logging.WARNING):
        settings = load_settings(env)
    # no variable momo does not read, no relative path
    assert [r.getMessage() for r in caplog.records] == []
    assert settings.spool_path == Path("/var/lib/momo/spool")
    assert settings.database_url.startswith("postgresql")


def test_flower_listens_on_localhost_and_its_api_asks_for_the_login() -> None:
    flower = unit(DEPLOY / "momo-flower.service")
    argv = shlex.split(flower["Service.ExecStart"][0])
    assert "--address=127.0.0.1" in argv
    # without a login Flower's API answers every origin: any page a browser opens could use it
    assert not [e for e in flower.get("Service.Environment", []) if "UNAUTHENTICATED" in e]
    assert "FLOWER_BASIC_AUTH=ops:$(openssl rand" in (DEPLOY / "README.md").read_text()


def test_the_deploy_steps_make_what_the_units_need() -> None:
    readme = (DEPLOY / "README.md").read_text()
    steps = [
        "useradd --system",
        "createuser momo",
        "install -d -m 750 -o root -g momo /etc/momo",
        "install -m 640 -o root -g momo deploy/momo.env.example /etc/momo/momo.env",
        "python3 -m venv /srv/momo/.venv",
        "cp deploy/momo-*.service deploy/momo-*.socket deploy/momo-*.timer /etc/systemd/system/",
        "systemctl enable --now",
    ]
    at = [readme.find(step) for step in steps]
    assert -1 not in at, dict(zip(steps, at, strict=True))
    assert at == sorted(at), "the steps are out of order"
    enable = next(line for line in readme.splitlines() if "systemctl enable" in line)
    for name in SERVICES:
        assert name in enable, enable
    for name, timer in TIMED.items():
        # the timer is enabled, never the service it starts
        assert timer in enable.split(), enable
        assert name not in enable.replace(timer, ""), enable


def test_systemd_analyze_verifies_every_unit(tmp_path: Path) -> None:
    """systemd's own check (keys, values, dependencies, programs): the units as written,
    their programs looked up in this checkout's venv instead of /srv/momo/.venv."""
    analyze = needs_tool("systemd-analyze", "apt-get install systemd")
    venv = Path(sys.executable).parent
    names = sorted(
        p.name for p in DEPLOY.glob("momo-*.*") if p.suffix in (".service", ".socket", ".timer")
    )
    assert {"momo-migrate.service", "momo-check.service", "momo-check.timer"} <= set(names)
    for name in names:
        text = (DEPLOY / name).read_text().replace(VENV, f"{venv}/")
        (tmp_path / name).write_text(text)
    checked = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


# --- Procfile -----------------------------------------------------------------------------

#: what README tells honcho to start: every Procfile process but the one-shot `release`
LONG_RUNNING = ("web", "api", "worker", "beat", "flower")
#: what a platform's processes bind (read back from the Procfile here, never bound)
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104


def procfile() -> dict[str, str]:
    """Process type -> command, read as honcho and Heroku read it."""
    found: dict[str, str] = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line):
            found[match[1]] = match[2]
    return found


@dataclass
class Ran:
    returncode: int
    output: str
    #: the program the line ran (granian, celery or momo), and the arguments it was given
    program: str = ""
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def option(self, name: str) -> str:
        return self.argv[self.argv.index(name) + 1]


def run_line(name: str, tmp_path: Path, exit_code: int = 0, **env: str) -> Ran:
    """The Procfile's ``name`` line run by sh, as honcho and platforms run it (a
    long-running one as ``exec LINE``), with stand-ins for granian, celery and momo that keep
    the arguments and environment they were given."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for program in ("granian", "celery", "momo"):
        stub = stubs / program
        stub.write_text(
            "#!/bin/sh\n"
            'basename "$0" > "$STUB_PROGRAM"\n'
            'printf "%s\\n" "$@" > "$STUB_ARGS"\n'
            'env > "$STUB_ENV"\nexit "$STUB_EXIT"\n'
        )
        stub.chmod(0o755)
    args, environ = tmp_path / f"{name}.args", tmp_path / f"{name}.env"
    program = tmp_path / f"{name}.program"
    ran = subprocess.run(
        # a process line is one command: `exec LINE` works (test_granian runs the web line so)
        ["/bin/sh", "-c", procfile()[name] if name == "release" else f"exec {procfile()[name]}"],
        env={
            "PATH": f"{stubs}:/usr/bin:/bin",
            "STUB_PROGRAM": str(program),
            "STUB_ARGS": str(args),
            "STUB_ENV": str(environ),
            "STUB_EXIT": str(exit_code),
            **env,
        },
        # where a relative default (MOMO_INSTANCE_PATH's "instance") lands
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    result = Ran(ran.returncode, ran.stdout + ran.stderr)
    if args.exists():
        result.program = program.read_text().strip()
        result.argv = args.read_text().splitlines()
        result.env = dict(
            line.split("=", 1) for line in environ.read_text().splitlines() if "=" in line
        )
    return result


def test_the_procfile_has_the_processes_readme_names() -> None:
    assert list(procfile()) == ["release", *LONG_RUNNING]


@pytest.mark.parametrize(
    ("name", "port", "variable"), [("web", 8000, "WEB_PORT"), ("api", 8001, "API_PORT")]
)
class TestServerLines:
    def test_a_platform_gets_its_port_bound_on_every_address(
        self, name: str, port: int, variable: str, tmp_path: Path
    ) -> None:
        ran = run_line(name, tmp_path, PORT="5123")
        assert ran.returncode == 0, ran.output
        assert (ran.option("--host"), ran.option("--port")) == (EVERY_ADDRESS, "5123")

    def test_under_honcho_the_port_readme_names_on_loopback(
        self, name: str, port: int, variable: str, tmp_path: Path
    ) -> None:
        # honcho's own PORT for the second process started
        ran = run_line(name, tmp_path, PORT="5100", HONCHO_PROCESS_NAME=f"{name}.1")
        assert (ran.option("--host"), ran.option("--port")) == ("127.0.0.1", str(port))
        moved = run_line(
            name, tmp_path, PORT="5100", HONCHO_PROCESS_NAME=f"{name}.1", **{variable: "9100"}
        )
        assert moved.option("--port") == "9100"


@pytest.mark.parametrize(
    ("name", "variable", "program"),
    [
        ("web", "WEB_METRICS_DIR", "granian"),
        ("api", "API_METRICS_DIR", "granian"),
        ("worker", "WORKER_METRICS_DIR", "momo"),
    ],
)
def test_each_server_counts_in_a_directory_of_its_own_emptied_at_each_start(
    name: str, variable: str, program: str, tmp_path: Path
) -> None:
    """granian's workers and Celery's pool processes each count on their own; /metrics adds
    them up only through a PROMETHEUS_MULTIPROC_DIR, one server's alone, holding none of a
    former run's files."""
    instance = tmp_path / "instance"
    folder = instance / f"metrics-{name}"
    folder.mkdir(parents=True)
    (folder / "counter_4242.db").write_bytes(b"a former run's counts")
    (folder / "kept.txt").write_text("not prometheus_client's: left alone")
    ran = run_line(name, tmp_path, PORT="5123", MOMO_INSTANCE_PATH=str(instance))
    assert (ran.returncode, ran.program) == (0, program), ran.output
    assert ran.env["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["kept.txt"]
    # the same under honcho, and made when missing; its own variable moves it
    moved = tmp_path / "elsewhere" / name
    honcho = run_line(name, tmp_path, HONCHO_PROCESS_NAME=f"{name}.1", **{variable: str(moved)})
    assert honcho.env["PROMETHEUS_MULTIPROC_DIR"] == str(moved)
    assert moved.is_dir()


def test_no_two_servers_share_their_metrics_directory(tmp_path: Path) -> None:
    folders = {
        run_line(name, tmp_path, PORT="5123", MOMO_INSTANCE_PATH=str(tmp_path)).env[
            "PROMETHEUS_MULTIPROC_DIR"
        ]
        for name in ("web", "api", "worker")
    }
    assert len(folders) == 3, folders


def test_flower_listens_on_loopback_whatever_its_environment_says(tmp_path: Path) -> None:
    # FLOWER_ADDRESS, Flower's own variable, does not move it: the option wins
    ran = run_line("flower", tmp_path, PORT="5400", FLOWER_ADDRESS=EVERY_ADDRESS)
    assert "--address=127.0.0.1" in ran.argv
    assert "--port=5555" in ran.argv
    # its API is opened by a login (FLOWER_BASIC_AUTH), never for everyone
    assert "FLOWER_UNAUTHENTICATED_API" not in ran.env
    assert "--port=6555" in run_line("flower", tmp_path, FLOWER_PORT="6555").argv


def test_release_migrates_and_under_honcho_says_what_to_start(tmp_path: Path) -> None:
    platform = run_line("release", tmp_path)
    assert (platform.returncode, platform.argv, platform.output) == (0, ["db", "upgrade"], "")
    honcho = run_line("release", tmp_path, HONCHO_PROCESS_NAME="release.1")
    assert honcho.returncode == 0
    assert f"honcho start {' '.join(LONG_RUNNING)}" in honcho.output
    # a failed migration fails the release phase, so the platform keeps the old release
    assert run_line("release", tmp_path, exit_code=1).returncode == 1


# --- nginx --------------------------------------------------------------------------------

#: the site's paths on a server, which the tests point at their own files
CERTIFICATES = "/etc/letsencrypt/live/pay.example.com/"
LOGS = "/var/log/nginx/"
#: a path token as a provider would post it
TOKEN = "pathtoken-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_in(folder: Path, **replacements: str) -> Path:
    """deploy/nginx/momo.conf with its certificates and logs in ``folder`` (and each of
    ``replacements``, which must all be in it), inside an http block of a whole nginx
    configuration of its own; the configuration's path."""
    text = SITE.read_text()
    for old, new in {CERTIFICATES: f"{folder}/", LOGS: f"{folder}/", **replacements}.items():
        assert old in text, f"{SITE} no longer holds {old!r}"
        text = text.replace(old, new)
    (folder / "momo.conf").write_text(text)
    subprocess.run(
        [
            needs_tool("openssl", "apt-get install openssl"),
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=pay.example.com"),
            *("-addext", "subjectAltName=DNS:pay.example.com,IP:127.0.0.1"),
            *("-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem")),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    conf = folder / "nginx.conf"
    # everything nginx writes in ``folder``, so it runs as any user
    temp = "".join(
        f"    {kind}_temp_path {folder}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{ }}\n"
        f"http {{\n{temp}    access_log {folder}/access.log;\n    include {folder}/momo.conf;\n}}\n"
    )
    return conf


def nginx_argv(conf: Path) -> list[str]:
    nginx = needs_tool("nginx", "apt-get install nginx (or nginx-light)")
    return [nginx, "-p", f"{conf.parent}/", "-c", str(conf), "-e", str(conf.parent / "error.log")]


def test_nginx_takes_the_site(tmp_path: Path) -> None:
    checked = subprocess.run(
        [*nginx_argv(site_in(tmp_path)), "-t"], capture_output=True, text=True, timeout=60
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "[warn]" not in output, output


class Upstream(ThreadingHTTPServer):
    """A stand-in for momo-web or momo-api: answers every request with its own name and
    keeps what it was sent."""

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), Recorder)
        self.name = name
        self.seen: list[dict[str, object]] = []


class Recorder(BaseHTTPRequestHandler):
    server: Upstream

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append(
            {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
        )
        body = json.dumps({"upstream": self.server.name}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def upstream(name: str) -> Iterator[Upstream]:
    server = Upstream(name)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def nginx_serving(folder: Path, web: Upstream, api: Upstream) -> Iterator[tuple[int, int]]:
    """nginx running the site (its https and http ports moved to free ones on loopback)
    in front of ``web`` and ``api``; the two ports. Stopped on leaving."""
    https, http = free_port(), free_port()
    conf = site_in(
        folder,
        **{
            "listen 443 ssl;": f"listen 127.0.0.1:{https} ssl;",
            "listen [::]:443 ssl;": "",
            "listen 80;": f"listen 127.0.0.1:{http};",
            "listen [::]:80;": "",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{web.server_address[1]};",
            "server 127.0.0.1:8001;": f"server 127.0.0.1:{api.server_address[1]};",
        },
    )
    with (folder / "nginx.out").open("wb") as out:
        # nginx's workers outlive a SIGKILLed master; on SIGTERM it stops them
        proc = start_process(
            [*nginx_argv(conf), "-g", "daemon off;"],
            on_parent_death=signal.SIGTERM,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for port in (https, http):
            for _ in range(200):
                assert proc.poll() is None, (folder / "nginx.out").read_text()
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                proc_wait(proc, 0.05)
        yield https, http
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if not proc_wait(proc, 10):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def proc_wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether ``proc`` ended within ``seconds``."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_nginx_puts_tls_in_front_and_logs_no_path_token(tmp_path: Path) -> None:
    hook = f"/webhooks/daraja/{TOKEN}/c2b/confirmation"
    with (
        upstream("web") as web,
        upstream("api") as api,
        nginx_serving(tmp_path, web, api) as (https, http),
    ):
        base = f"https://127.0.0.1:{https}"

        def call(method: str, path: str, **kwargs: object) -> requests.Response:
            return requests.request(
                method,
                f"{base}{path}",
                verify=str(tmp_path / "fullchain.pem"),
                timeout=10,
                **kwargs,
            )

        callback = call("POST", hook, data=b'{"TransID": "TKQ4A91B2C"}')
        assert callback.json() == {"upstream": "web"}
        got = web.seen[-1]
        assert (got["path"], got["body"]) == (hook, b'{"TransID": "TKQ4A91B2C"}')
        headers = got["headers"]
        assert isinstance(headers, dict)
        # what momo reads with MOMO_TRUSTED_PROXY_HOPS=1
        assert headers["X-Forwarded-For"] == "127.0.0.1"
        assert headers["X-Forwarded-Proto"] == "https"
        # the same token spelt otherwise (doubled slashes, a letter percent-escaped) or
        # where no provider's name is (a URL registered wrong)
        escaped = f"{TOKEN[:-1]}%{ord(TOKEN[-1]):02X}"
        odd = (
            f"//webhooks//daraja/{TOKEN}/c2b/confirmation",
            f"/webhooks/daraja/{escaped}/stk",
            f"/webhooks/{TOKEN}",
        )
        for path in odd:
            assert call("POST", path, data=b"{}").json() == {"upstream": "web"}, path

        # over momo's 64 KiB: refused by nginx, never sent on
        sent = len(web.seen)
        assert call("POST", hook, data=b"x" * (64 * 1024 + 1)).status_code == 413
        assert call("POST", hook, data=b"x" * (64 * 1024)).status_code == 200
        assert len(web.seen) == sent + 1

        for path in ("/api/v1/customers?q=0712345678", "/console", "/console/static/app.js"):
            assert call("GET", path).json() == {"upstream": "api"}, path
        assert call("GET", "/healthz").json() == {"upstream": "web"}
        assert call("GET", "/admin").status_code == 404
        # a path nginx sends nowhere may still hold the token
        assert call("POST", f"/Webhooks/daraja/{TOKEN}/stk", data=b"{}").status_code == 404
        plain = requests.post(f"http://127.0.0.1:{http}{hook}", allow_redirects=False, timeout=10)
        assert plain.status_code == 301
        assert plain.headers["Location"].startswith("https://")

    access = (tmp_path / "momo.access.log").read_text()
    assert '"POST /webhooks/daraja/***/c2b/confirmation HTTP/1.1" 200' in access, access
    assert '"POST /webhooks/daraja/***/stk HTTP/1.1" 200' in access, access
    assert '"POST /webhooks/*** HTTP/1.1" 200' in access, access
    assert " 413 " in access
    assert '"GET /api/v1/customers HTTP/1.1" 200' in access, access
    for log in tmp_path.glob("*.log"):
        text = log.read_text()
        assert TOKEN[:-1] not in text, f"{log.name} holds the path token:\n{text}"
        assert "0712345678" not in text, f"{log.name} holds a searched phone number:\n{text}"
