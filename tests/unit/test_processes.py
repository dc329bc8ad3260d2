"""tests.processes.start_process: the death signal a child is given, and when it is given none.
(tests/integration/test_processes.py kills a parent of real servers.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.processes import _die_with, start_process

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's"
)

#: prints the signal it is to get when its parent dies (0: none), as prctl tells it
PRINTS_ITS_DEATH_SIGNAL = (
    "import ctypes\n"
    "sig = ctypes.c_int()\n"
    "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG\n"
    "print(sig.value)\n"
)


def death_signal(proc: subprocess.Popen[bytes]) -> int:
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return int(out)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_child_started_from_the_main_thread_gets_the_signal_asked_for(
    sig: signal.Signals,
) -> None:
    proc = start_process(
        [sys.executable, "-c", PRINTS_ITS_DEATH_SIGNAL], on_parent_death=sig, stdout=subprocess.PIPE
    )
    assert death_signal(proc) == sig


def test_a_child_started_from_another_thread_gets_none_since_it_would_die_with_that_thread() -> (
    None
):
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(
        target=lambda: started.append(
            start_process([sys.executable, "-c", PRINTS_ITS_DEATH_SIGNAL], stdout=subprocess.PIPE)
        )
    )
    thread.start()
    thread.join()
    assert death_signal(started[0]) == 0


def test_a_child_whose_parent_died_before_it_asked_for_the_signal_exits_before_running() -> None:
    # a parent pid that is not the child's: as if the parent had died and the child had
    # been handed to another process between the fork and the prctl
    proc = subprocess.Popen(
        [sys.executable, "-c", "print('ran')"],
        preexec_fn=_die_with(os.getppid(), signal.SIGKILL),
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (1, b"")


def test_start_takes_no_session_or_preexec_fn_from_its_caller() -> None:
    with pytest.raises(TypeError, match="start_process sets preexec_fn and start_new_session"):
        start_process([sys.executable, "-c", "pass"], start_new_session=False)
