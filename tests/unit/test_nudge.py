"""The Nudger: every nudge is followed by a dispatch that starts after it; bursts coalesce."""

from __future__ import annotations

import threading
import time

from core.nudge import Nudger


def wait_for(check, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return False


def test_a_nudge_leads_to_a_dispatch() -> None:
    calls: list[bool] = []
    nudger = Nudger(calls.append, min_interval=0)
    try:
        nudger.nudge()
        assert wait_for(lambda: calls == [True])
    finally:
        nudger.close()


def test_a_burst_of_nudges_costs_far_fewer_dispatches() -> None:
    calls: list[bool] = []
    nudger = Nudger(calls.append, min_interval=0.05)
    try:
        for _ in range(200):
            nudger.nudge()
        time.sleep(0.3)
        assert 1 <= len(calls) <= 3
    finally:
        nudger.close()


def test_a_nudge_during_a_dispatch_gets_a_dispatch_of_its_own() -> None:
    """The promise the queue relies on: work committed while a dispatch runs is not missed."""
    started, release = threading.Event(), threading.Event()
    calls: list[bool] = []

    def dispatch(nudged: bool) -> None:
        calls.append(nudged)
        if len(calls) == 1:
            started.set()
            release.wait(5)

    nudger = Nudger(dispatch, min_interval=0)
    try:
        nudger.nudge()
        assert started.wait(5)
        nudger.nudge()  # arrives while the first dispatch is still running
        release.set()
        assert wait_for(lambda: len(calls) == 2)
    finally:
        nudger.close()


def test_an_idle_interval_dispatches_without_nudges_and_failures_do_not_stop_it() -> None:
    calls: list[bool] = []

    def dispatch(nudged: bool) -> None:
        calls.append(nudged)
        raise RuntimeError("broker down")

    nudger = Nudger(dispatch, min_interval=0, idle_interval=0.02)
    try:
        nudger.start()
        assert wait_for(lambda: len(calls) >= 3)
        assert not any(calls)
    finally:
        nudger.close()
