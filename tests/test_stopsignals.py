"""Stop signals as bytes on a socket: kept when they come early, read where the waiting
code chooses, and a worker stopped before its scheduler ran stops all the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.stopsignals import StopSignals
from tests.processes import gbg_env, run


@pytest.fixture
def stops() -> Iterator[StopSignals]:
    """StopSignals in this (pytest's) process, and SIGUSR1 caught by a handler too."""
    usr1 = signal.signal(signal.SIGUSR1, lambda _s, _f: None)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals() as stops:
        yield stops
    signal.signal(signal.SIGUSR1, usr1)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_stop_sent_before_anyone_waits_is_kept_and_named(stops: StopSignals) -> None:
    assert stops.wait(0) is None
    os.kill(os.getpid(), signal.SIGTERM)  # stops nothing by itself: the test goes on
    assert stops.wait() == "SIGTERM"
    os.kill(os.getpid(), signal.SIGINT)
    assert stops.wait(0) == "SIGTERM"  # the first one is the answer from then on


def test_another_signal_wakes_the_wait_but_is_not_a_stop(stops: StopSignals) -> None:
    os.kill(os.getpid(), signal.SIGUSR1)
    assert stops.wait(0) is None
    os.kill(os.getpid(), signal.SIGINT)
    assert stops.wait() == "SIGINT"


# The old worker's race: a stop handled after the handler was set but before the
# scheduler ran found nothing to shut down, and the worker then ran until SIGKILL.
EARLY_STOP = """
import os, signal
from apscheduler.schedulers.base import BaseScheduler
from receiver.cli import main

start = BaseScheduler.start

def start_after_a_stop(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    start(self, *args, **kwargs)

BaseScheduler.start = start_after_a_stop
main(["poller"])
"""


@pytest.mark.live
def test_a_worker_stopped_before_its_scheduler_ran_stops(tmp_path: Path) -> None:
    env = gbg_env(tmp_path, "http://127.0.0.1:9")
    assert run(["migrate"], env).returncode == 0
    done = subprocess.run(
        [sys.executable, "-c", EARLY_STOP],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [stopping] = [line for line in done.stderr.splitlines() if '"worker.stopping"' in line]
    assert '"signal": "SIGTERM"' in stopping
    assert '"event": "poller.stopped"' in done.stderr
