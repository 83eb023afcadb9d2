"""Group commit: the concurrent writers of one process share a transaction."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from receiver.errors import StoreUnavailable


class GroupCommitter:
    """Lets the concurrent callers of one process share a transaction (group commit).

    Each caller waits for its own result; one thread, started on first use in each
    process, takes whatever is queued, writes it in one transaction and wakes the
    callers. With nothing else queued a call goes straight through, so an idle
    receiver adds no latency; under load one commit serves many deliveries.
    """

    MAX_BATCH = 64

    def __init__(self, write: Callable[[list[Any]], list[Any]], timeout: float = 10.0) -> None:
        self._write = write
        self._timeout = timeout
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Waiter] = queue.SimpleQueue()
        self._pid: int | None = None

    def submit(self, *item: Any) -> Any:
        waiter = _Waiter(item)
        self._start()
        self._queue.put(waiter)
        if not waiter.done.wait(self._timeout):
            # Not acknowledged: the sender retries, and a duplicate delivery is harmless.
            raise StoreUnavailable(f"no commit within {self._timeout:g} s")
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _start(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:  # first use in this process (a fork copies no thread)
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._run, name="group-commit", daemon=True).start()
                self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Waiter]) -> None:
        try:
            results = self._write([w.item for w in batch])
        except StoreUnavailable as exc:
            for waiter in batch:
                waiter.finish(error=exc)
        except BaseException as exc:  # every caller must wake up, whatever went wrong
            if len(batch) == 1:
                batch[0].finish(error=exc)
            else:  # one bad delivery must not fail the others: write them one by one
                for waiter in batch:
                    self._commit([waiter])
        else:
            for waiter, result in zip(batch, results, strict=True):
                waiter.finish(result=result)


class _Waiter:
    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def finish(self, *, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()
