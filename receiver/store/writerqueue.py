"""SQLite's writers, of every process on the host, take turns through one file lock."""

from __future__ import annotations

import fcntl
import os
import threading

from receiver.errors import StoreUnavailable

WRITE_WAIT = 30.0  # seconds a writer waits for its turn, like SQLite's busy_timeout


class WriterQueue:
    """SQLite writers of every process take turns through one file lock.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps
    (up to 100 ms each), which turns a busy moment into second-long tails. A blocking
    flock wakes the next writer the moment the lock is free instead.

    Every holder's transaction is short (purges go in batches), so a wait longer than
    WRITE_WAIT seconds means the store is stuck: StoreUnavailable (a 503), never a hang.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()  # the threads of one process queue here first
        self._fd: int | None = None
        self._pid: int | None = None

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=WRITE_WAIT):
            raise StoreUnavailable("the database's writer lock was not free in time")
        try:
            if self._pid != os.getpid():  # a forked child needs its own open file
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
        except BlockingIOError:
            self._await_other_process()  # keeps the thread lock, or hands it on
        except BaseException:
            self._lock.release()
            raise

    def _await_other_process(self) -> None:
        """Wait for another process's turn to end, at most WRITE_WAIT seconds.

        flock has no timeout, so a helper thread blocks in it. If the wait runs out, the
        helper still takes the lock when it comes, and then lets it and this process's
        thread lock go: until then this process's other writers time out too.
        """
        fd, taken, state = self._fd, threading.Event(), {"abandoned": False}
        guard = threading.Lock()

        def take() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # type: ignore[arg-type]
            with guard:
                taken.set()
                if not state["abandoned"]:
                    return
            fcntl.flock(fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
            self._lock.release()

        threading.Thread(target=take, name="writer-lock", daemon=True).start()
        if taken.wait(WRITE_WAIT):
            return
        with guard:
            if taken.is_set():
                return  # taken just now after all
            state["abandoned"] = True
        raise StoreUnavailable("the database's writer lock was not free in time")

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        self._lock.release()
