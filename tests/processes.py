"""Servers the tests and the benchmarks start end when the process that started them dies,
however it dies.

A test stops what it started in a ``finally``, which runs on a failure, a pytest-timeout
and a Ctrl-C, but not when pytest itself is killed: SIGKILL, a SIGTERM (pytest does not
handle it), a CI job's timeout, the OOM killer. A server started in a session of its own
then outlives pytest, for an hour or more, polling the shared Redis and holding its port.
``start_process`` has the kernel signal the child when its parent dies (Linux's PR_SET_PDEATHSIG).

Which signal, from what each server does with its own children when its main process is
signalled (tests/integration/test_processes.py checks gunicorn, the Celery worker, granian
and honcho):

- gunicorn: each worker sees its parent pid change and exits, a gthread worker within a
  second, a sync worker within half its ``--timeout``. SIGKILL.
- a Celery worker: billiard gives every prefork child PR_SET_PDEATHSIG(SIGKILL) itself, so
  they die with the main process. beat, Flower, ``momo serve`` and redis-server are one
  process each. SIGKILL.
- granian: its workers outlive a SIGKILLed main process, still serving on its port; on
  SIGTERM the main process stops them. SIGTERM. Without ``--workers-kill-timeout`` (the
  Procfile gives one) granian loses a SIGTERM that arrives while a worker is still loading
  the application and never stops (test_granian's strict xfail), so a pytest killed during
  those seconds of a granian's start still leaves it running.
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


def start_process(
    argv: Sequence[str], *, on_parent_death: int = signal.SIGKILL, **popen: Any
) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **popen)`` in a session and process group of its own (the
    caller can signal the whole group; a terminal's Ctrl-C reaches only the caller, which
    stops it its own way), sent ``on_parent_death`` when the calling process dies.

    PR_SET_PDEATHSIG fires when the thread that forked the child ends, not the process:
    from any thread but the main one (whose end is the process's) the child is started
    without it, or it would die with that thread. bench.chaos restarts servers from its
    fault thread so; those are stopped by the run itself, and only by it. The setting
    survives exec, so a child that execs (``sh -c 'exec ...'``, ``momo worker``) keeps it,
    unless it execs a set-user-ID program or changes its own user (none here does: nginx's
    master stays root); it does not pass to the child's own children, hence the choice of
    signal above. On anything but Linux the child is started without it.
    """
    if "preexec_fn" in popen or "start_new_session" in popen:
        raise TypeError("start_process sets preexec_fn and start_new_session itself")
    if _PRCTL is not None and threading.current_thread() is threading.main_thread():
        popen["preexec_fn"] = _die_with(os.getpid(), on_parent_death)
    return subprocess.Popen(argv, start_new_session=True, **popen)
