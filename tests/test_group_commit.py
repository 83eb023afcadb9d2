"""GroupCommitter: concurrent callers share a write, each gets its own answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from receiver.errors import StoreUnavailable
from receiver.store.groupcommit import GroupCommitter


def test_concurrent_callers_share_writes_and_get_their_own_results() -> None:
    batches: list[list[tuple[int]]] = []
    gate = threading.Event()

    def write(items: list[tuple[int]]) -> list[int]:
        gate.wait(5)  # hold the first write so that the others queue up behind it
        batches.append(items)
        return [n * 10 for (n,) in items]

    committer = GroupCommitter(write)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(committer.submit, n) for n in range(40)]
        gate.set()
        results = [f.result(5) for f in futures]
    assert results == [n * 10 for n in range(40)]
    assert sorted(n for batch in batches for (n,) in batch) == list(range(40))
    assert len(batches) < 40  # some shared a write
    assert max(len(b) for b in batches) <= GroupCommitter.MAX_BATCH


def test_a_bad_item_fails_alone() -> None:
    def write(items: list[tuple[int]]) -> list[int]:
        if any(n == 13 for (n,) in items):
            raise ValueError("unlucky")
        return [n for (n,) in items]

    committer = GroupCommitter(write)
    with ThreadPoolExecutor(8) as pool:
        futures = {n: pool.submit(committer.submit, n) for n in range(20)}
    with pytest.raises(ValueError, match="unlucky"):
        futures[13].result(5)
    assert [futures[n].result(5) for n in range(20) if n != 13] == [n for n in range(20) if n != 13]


def test_store_down_fails_the_whole_batch_with_store_unavailable() -> None:
    def write(items: list[tuple[int]]) -> list[int]:
        raise StoreUnavailable("OperationalError")

    committer = GroupCommitter(write)
    with pytest.raises(StoreUnavailable):
        committer.submit(1)


def test_a_caller_alone_writes_in_its_own_thread() -> None:
    writers: list[threading.Thread] = []

    def write(items: list[tuple[int]]) -> list[int]:
        writers.append(threading.current_thread())
        return [n + 1 for (n,) in items]

    committer = GroupCommitter(write)
    assert [committer.submit(n) for n in range(3)] == [1, 2, 3]
    assert writers == [threading.current_thread()] * 3  # no hand-off to another thread


def test_callers_behind_a_write_that_hangs_are_answered_as_unavailable() -> None:
    stuck, writing = threading.Event(), threading.Event()

    def write(items: list[tuple[int]]) -> list[None]:
        writing.set()
        stuck.wait(30)
        return [None] * len(items)

    committer = GroupCommitter(write, timeout=0.2)
    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(committer.submit, 1)
        assert writing.wait(5)
        with pytest.raises(StoreUnavailable, match=r"no commit within 0\.2 s"):
            committer.submit(2)
        stuck.set()
        assert leader.result(5) is None
    # The one that gave up left the queue: the next caller leads and writes alone.
    assert committer.submit(3) is None
