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


def test_a_write_that_hangs_is_answered_as_unavailable_not_waited_for() -> None:
    stuck = threading.Event()
    committer = GroupCommitter(lambda items: stuck.wait(30) and [None] * len(items), timeout=0.2)
    with pytest.raises(StoreUnavailable, match=r"no commit within 0\.2 s"):
        committer.submit(1)
    stuck.set()
