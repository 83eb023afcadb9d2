"""Loaded, as ``sitecustomize``, only into the processes the clock-skew tests run under
libfaketime with a true monotonic clock. There libfaketime's ``clock_nanosleep`` refuses
the absolute monotonic deadline that ``time.sleep`` passes (EINVAL); a timed wait on an
event, which it leaves alone, sleeps the same."""

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
