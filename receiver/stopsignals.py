"""SIGTERM and SIGINT heard as a byte on a socket, for the processes that wait for them.

A Python signal handler runs on the main thread between any two bytecodes, so one that
does real work (logs, sets an Event, starts the scheduler's shutdown) may need a lock
the interrupted code holds, and wait for it forever; and one that arrives before the
loop it should end has started ends nothing. Here the handler does nothing: Python's C
handler writes the signal's number to a socket (``signal.set_wakeup_fd``), which the
waiting code reads, or selects on, at a point of its own choosing.
"""

from __future__ import annotations

import select
import signal
import socket
from typing import Any

STOPS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Within ``with StopSignals() as stops:``, SIGTERM and SIGINT stop nothing by
    themselves: ``stops.wait`` (or a selector on ``stops``, then ``wait(0)``) answers
    the first one received. On leaving, the handlers from before are back. Enter it on
    the main thread, one at a time."""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._before: dict[int, Any] = {}
        self.received: str | None = None  # the first stop signal's name, once one came

    def __enter__(self) -> StopSignals:
        signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        for sig in STOPS:
            self._before[sig] = signal.signal(sig, _heard)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in self._before.items():
            signal.signal(sig, handler)
        self._read.close()
        self._write.close()

    def fileno(self) -> int:
        return self._read.fileno()

    def wait(self, timeout: float | None = None) -> str | None:
        """The first stop signal's name, waiting up to ``timeout`` seconds (None: until
        one comes) for it; None if none came."""
        while self.received is None and select.select([self._read], [], [], timeout)[0]:
            stops = [signal.Signals(n).name for n in self._read.recv(64) if n in STOPS]
            self.received = stops[0] if stops else None
            if timeout is not None:
                break  # another signal's byte, if not a stop: no second wait as long
        return self.received


def _heard(_signum: int, _frame: object) -> None:
    """Nothing: the wakeup socket has the signal's number already."""
