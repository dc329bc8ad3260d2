"""A machine with systemd of its own, on this one: systemd booted as process 1 of new PID,
mount, network, UTS and IPC namespaces, so that deploy/'s units run under a real systemd
(User=, StateDirectory=, RuntimeDirectory=, socket activation, sd_notify, timers) as
deploy/README.md installs them.

What the "machine" shares with this one, and what it does not:

- its own: process table, network (only a loopback, nothing routed out), hostname, and
  these folders, each a tmpfs seen by it alone: /run, /tmp, /srv, /var/lib and
  /etc/systemd/system (so none of this machine's enabled units starts there); its /etc is
  an overlay of this one's whose changes stay in memory (``useradd``, /etc/momo);
- shared: every other file (read and written as by any root process: deploy/README.md's
  steps write only in the folders above), and PostgreSQL, through its Unix socket (bound
  into its /run), where a database of the test's own is made.

systemd is booted with ``--unit`` of a target of its own that wants journald only, not the
default target: nothing of this machine's own set-up runs there. ``unshare --kill-child``
ends it (and so every process in its namespaces) when the test's ``unshare`` ends.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.processes import start_process

SYSTEMD = Path("/lib/systemd/systemd")
#: this checkout, which the machine sees at /srv/checkout (read only): wherever it lies
#: here, /tmp included, which the machine's own /tmp hides
CHECKOUT = Path(__file__).resolve().parent.parent
#: a root shell's environment on a fresh Debian: the system's python3, not one of this
#: machine's in /root (which the units' users could not run)
SHELL_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
PG_SOCKET_DIR = Path(os.environ.get("MOMO_TEST_PG_SOCKET_DIR", "/var/run/postgresql"))

BOOT = """
set -eu
mount --make-rprivate /
# what the machine takes from this one, bound before /tmp and /run are hidden; its /etc is
# this one's with its changes kept in memory (an overlay)
for dir in /srv /var/lib; do mount -t tmpfs tmpfs "$dir"; done
mkdir -p /srv/wheels /srv/checkout /srv/.postgresql /srv/.etc/upper /srv/.etc/work /var/lib/systemd
mount --bind "$WHEELS" /srv/wheels
mount --bind -o ro "$CHECKOUT" /srv/checkout
mount --bind "$PG_SOCKET_DIR" /srv/.postgresql
mount -t overlay overlay -o lowerdir=/etc,upperdir=/srv/.etc/upper,workdir=/srv/.etc/work /etc
mount -t tmpfs tmpfs /etc/systemd/system
for dir in /run /tmp; do mount -t tmpfs tmpfs "$dir"; done
mkdir -p /run/postgresql && mount --move /srv/.postgresql /run/postgresql && rmdir /srv/.postgresql
ip link set lo up
hostname momo-host
printf '[Unit]\\nDescription=a machine for momo\\nWants=systemd-journald.socket\\n' \\
  > /etc/systemd/system/momo-host.target
# the journal in memory only, whatever /var/log holds
mkdir -p /run/systemd/journald.conf.d
printf '[Journal]\\nStorage=volatile\\n' > /run/systemd/journald.conf.d/momo-host.conf
export container=momo-test
exec /lib/systemd/systemd --system --unit=momo-host.target
"""


def unavailable() -> str | None:
    """Why systemd cannot be booted here, or None when it can."""
    for tool in ("unshare", "nsenter", "ip", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not SYSTEMD.exists():
        return f"{SYSTEMD} is not installed (apt-get install systemd)"
    if os.geteuid() != 0:
        return "booting systemd in namespaces of its own needs root"
    if not (PG_SOCKET_DIR / ".s.PGSQL.5432").exists():
        return f"no PostgreSQL socket in {PG_SOCKET_DIR} (MOMO_TEST_PG_SOCKET_DIR)"
    return None


@dataclass
class Machine:
    pid: int  # systemd's, as this machine sees it
    proc: subprocess.Popen[bytes]

    def run(
        self, script: str, *, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``script`` run by bash as root on the machine, in every one of its namespaces."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "bash", "-c", script],
            env=SHELL_ENV,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"on the machine, {script!r} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}\nthe journal's last lines:\n{self.journal()}"
            )
        return done

    def journal(self, lines: int = 60) -> str:
        shown = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "journalctl", "--no-pager", "-n", str(lines)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return shown.stdout + shown.stderr

    def write(self, path: str, text: str) -> None:
        self.run(f"cat > {shlex.quote(path)}", input=text)

    def wait(self, script: str, timeout: float = 90) -> str:
        """Run ``script`` until it succeeds; its output."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.run(script, check=False, timeout=timeout)
            if done.returncode == 0:
                return done.stdout
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"on the machine, {script!r} did not succeed within {timeout:.0f} s:\n"
                    f"{done.stdout}{done.stderr}\nthe journal's last lines:\n{self.journal()}"
                )
            time.sleep(0.5)


@contextmanager
def machine(workdir: Path, wheels: Path) -> Iterator[Machine]:
    """A booted machine; ``wheels`` is its /srv/wheels, this checkout its /srv/checkout.
    Gone on leaving."""
    env = {
        **os.environ,
        "PG_SOCKET_DIR": str(PG_SOCKET_DIR),
        "WHEELS": str(wheels),
        "CHECKOUT": str(CHECKOUT),
    }
    with (workdir / "boot.log").open("ab") as log:
        proc = start_process(
            [
                "unshare",
                "--kill-child=SIGKILL",
                "--pid",
                "--mount",
                "--net",
                "--uts",
                "--ipc",
                "--mount-proc",
                "bash",
                "-c",
                BOOT,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        pid = _systemd_pid(proc.pid)
        booted = Machine(pid, proc)
        booted.wait("systemctl is-system-running | grep -qE '^(running|degraded)$'")
        yield booted
    finally:
        proc.kill()  # unshare: its child, systemd, is SIGKILLed with it, and the rest
        proc.wait(timeout=30)


def _systemd_pid(unshare: int, timeout: float = 30) -> int:
    """The pid of the systemd that ``unshare`` started (its child, once it has exec'd)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{unshare}/task/{unshare}/children")
        for child in children.read_text().split() if children.exists() else []:
            try:
                if Path(f"/proc/{child}/exe").resolve() == SYSTEMD.resolve():
                    return int(child)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"systemd did not start within {timeout:.0f} s")
