"""Group commit: the concurrent writers of one process share a transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from receiver.errors import StoreUnavailable


class GroupCommitter:
    """Lets the concurrent callers of one process share a transaction (group commit).

    No thread of its own: a caller who finds nobody writing becomes the leader and
    writes whatever is queued, its own item first; callers who arrive meanwhile queue
    and wait. When the leader's write is done it wakes them with their results and
    hands the lead to the first caller still queued. So an idle receiver writes at
    once, with no hand-off between threads, and under load one commit serves many.
    A caller left waiting longer than ``timeout`` gets StoreUnavailable (the leader's
    own wait is bounded by the store's).
    """

    MAX_BATCH = 64

    def __init__(self, write: Callable[[list[Any]], list[Any]], timeout: float = 10.0) -> None:
        self._write = write
        self._timeout = timeout
        self._mutex = threading.Lock()
        self._queued: list[_Waiter] = []
        self._leading = False

    def submit(self, *item: Any) -> Any:
        waiter = _Waiter(item)
        with self._mutex:
            self._queued.append(waiter)
            lead, self._leading = not self._leading, True
        if not lead and not waiter.wait(self._timeout):
            lead = self._give_up(waiter)
        if lead or waiter.lead:
            self._lead()
        return waiter.outcome()

    def _give_up(self, waiter: _Waiter) -> bool:
        """After the timeout: leave the queue and fail, unless made leader meanwhile."""
        with self._mutex:
            if waiter.lead:
                return True
            if waiter in self._queued:
                self._queued.remove(waiter)
        # Not acknowledged: the sender retries, and a duplicate delivery is harmless.
        raise StoreUnavailable(f"no commit within {self._timeout:g} s")

    def _lead(self) -> None:
        with self._mutex:
            batch = self._queued[: self.MAX_BATCH]
            del self._queued[: self.MAX_BATCH]
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._queued:
                    self._queued[0].promote()
                else:
                    self._leading = False

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
    """One caller's item and answer; its gate opens once for a result or for the lead."""

    def __init__(self, item: Any) -> None:
        self.item = item
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._gate = threading.Lock()
        self._gate.acquire()

    def wait(self, timeout: float) -> bool:
        return self._gate.acquire(timeout=timeout)

    def promote(self) -> None:
        self.lead = True
        self._gate.release()

    def finish(self, *, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        if not self.lead:  # a leader is awake already: it wrote this itself
            self._gate.release()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result
