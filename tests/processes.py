"""Servers the tests and the benchmarks start end when the process that started them dies,
however it dies.

A test stops what it started in a ``finally``, which runs on a failure, a pytest-timeout
and a Ctrl-C, but not when pytest itself is killed: SIGKILL, a SIGTERM (pytest does not
handle it), a CI job's timeout, the OOM killer. A server started in a session of its own
then outlives pytest, for an hour or more, polling the shared Redis and holding its port.
``start_process`` has the kernel signal the child when its parent dies (Linux's PR_SET_PDEATHSIG).

Which signal, from what each server does with its own children when its main process is
signalled (tests/integration/test_processes.py checks gunicorn, the Celery worker, granian
and honcho); a catchable one comes with a watchdog (see ``start_process``):

- gunicorn: each worker sees its parent pid change and exits, a gthread worker within a
  second, a sync worker within half its ``--timeout``. SIGKILL.
- a Celery worker: billiard gives every prefork child PR_SET_PDEATHSIG(SIGKILL) itself, so
  they die with the main process. beat, Flower, ``momo serve`` and redis-server are one
  process each. SIGKILL.
- granian: its workers outlive a SIGKILLed main process, still serving on its port; on
  SIGTERM the main process stops them. SIGTERM, and a watchdog: granian loses a SIGTERM
  that arrives while a worker is still loading the application and never stops
  (test_granian's strict xfail; the Procfile's ``--workers-kill-timeout`` works around it).
- nginx: its workers outlive a SIGKILLed master; SIGTERM stops them. SIGTERM.
- honcho: starts each Procfile process in a session of its own, so a SIGKILLed honcho
  leaves every one running; on SIGTERM it signals each one's process group, and SIGKILLs
  them 5 s after the first has stopped. SIGTERM.
- bench.chaos: on SIGTERM it stops everything it started, PostgreSQL (which pg_ctl puts in
  the background, out of reach of any parent) included. SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: <linux/prctl.h>
PR_SET_PDEATHSIG = 1


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


#: looked up here, once: the child between fork and exec only calls it
_PRCTL = _libc_prctl()


def _die_with(parent: int, sig: int) -> Callable[[], None]:
    """What the child runs between fork and exec: ``sig`` when ``parent`` ends.

    subprocess warns that a preexec_fn is not safe in a process with threads (pytest's
    fakes, proxies and thread pools are threads): the child holds only the forking thread,
    and a lock another thread held at the fork stays held in it for ever. Nothing here
    takes one: a ctypes call to a function looked up beforehand, ``os.getppid`` and
    ``os._exit``; no import, no logging. CPython makes the GIL and the import lock the
    child's own after a fork, and glibc does the same for malloc's locks.
    """
    prctl = _PRCTL
    if prctl is None:
        raise OSError("PR_SET_PDEATHSIG is Linux's")

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, sig, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
        # The parent may have died between the fork and the prctl, which then never fires:
        # the child has already been handed to another parent.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


#: the watchdog: once the pipe at fd argv[1] reads EOF (the process holding its other end
#: has died, from whichever thread), sends argv[3] (0: none, the kernel has) to the process
#: group argv[2]'s leader, and SIGKILLs what is left of the group argv[4] seconds later;
#: exits as soon as the group is gone
WATCHDOG = """\
import os, select, signal, sys, time
fd, group, sig, within = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def running():
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
while running():
    if select.select([fd], [], [], 1.0)[0] and not os.read(fd, 1):
        break
else:
    sys.exit(0)
if sig:
    try:
        os.kill(group, sig)
    except ProcessLookupError:
        pass
deadline = time.monotonic() + within
while running() and time.monotonic() < deadline:
    time.sleep(0.2)
if running():
    os.killpg(group, signal.SIGKILL)
"""

#: watchdogs still watching, with the end of their pipe this process holds
_watchdogs: list[tuple[subprocess.Popen[bytes], int]] = []
#: servers are started from several threads (bench.chaos)
_watchdogs_lock = threading.Lock()


def _watch(group: int, sig: int, within: float) -> None:
    with _watchdogs_lock:
        for watchdog, held in list(_watchdogs):
            if watchdog.poll() is not None:
                os.close(held)
                _watchdogs.remove((watchdog, held))
    # os.pipe's ends are not inherited: only this process holds the write end, and it
    # closes when this process ends, whichever way
    read, write = os.pipe()
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(read), str(group), str(sig), str(within)],
            pass_fds=(read,),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C is for the caller
        )
    finally:
        os.close(read)
    with _watchdogs_lock:
        _watchdogs.append((watchdog, write))


def start_process(
    argv: Sequence[str],
    *,
    on_parent_death: int = signal.SIGKILL,
    stop_within: float = 30.0,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **popen)`` in a session and process group of its own (the
    caller can signal the whole group; a terminal's Ctrl-C reaches only the caller, which
    stops it its own way), sent ``on_parent_death`` when the calling process dies.

    PR_SET_PDEATHSIG fires when the thread that forked the child ends, not the process:
    only from the main thread (whose end is the process's) is the child given it, or it
    would die with that thread. The setting survives exec, so a child that execs (``sh -c
    'exec ...'``, ``momo worker``) keeps it, unless it execs a set-user-ID program or
    changes its own user (none here does: nginx's master stays root); it does not pass to
    the child's own children, hence the choice of signal above.

    Where the kernel's signal may not be the end of it (a signal the child can catch, as
    granian's lost SIGTERM shows), and from any other thread (bench.chaos restarts servers
    from its fault thread), a watchdog process waits for the caller's end instead: it
    sends ``on_parent_death`` itself if the kernel has not, and SIGKILLs whatever of the
    child's process group is left ``stop_within`` seconds later (a server's own children
    in sessions of their own, as honcho's, are past its reach). It watches a pipe only the
    caller holds, which the kernel closes when the caller ends, whatever thread started it.
    """
    if "preexec_fn" in popen or "start_new_session" in popen:
        raise TypeError("start_process sets preexec_fn and start_new_session itself")
    kernel = _PRCTL is not None and threading.current_thread() is threading.main_thread()
    if kernel:
        popen["preexec_fn"] = _die_with(os.getpid(), on_parent_death)
    proc = subprocess.Popen(argv, start_new_session=True, **popen)
    if not kernel or on_parent_death != signal.SIGKILL:
        _watch(proc.pid, 0 if kernel else on_parent_death, stop_within)
    return proc


def stop_group(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, within: float = 20.0
) -> None:
    """Stop a server ``start_process`` started: ``sig`` to its whole process group, then
    SIGKILL to the group if it has not ended ``within`` seconds later."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass(frozen=True)
class ProcStat:
    """What /proc/<pid>/stat says of a process that tests need."""

    ppid: int
    group: int  # its process group
    started: int  # clock ticks after boot: tells a pid's process from a later one's


def process_table() -> dict[int, ProcStat]:
    """Every process on the machine, read from /proc."""
    table: dict[int, ProcStat] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp ... starttime ...": comm may hold spaces and parentheses
        fields = stat.rpartition(")")[2].split()
        table[int(entry.name)] = ProcStat(int(fields[1]), int(fields[2]), int(fields[19]))
    return table
