"""The polling fallback: fetch the state of every due instance, under GBG's policy.

One engine for production and tests: ``Poller.drain`` claims due instances with
leases while any are due and hands each to a fetch thread; the worker process calls
it every tick, tests call it with a clock they control and then ``wait``. Any number
of pollers can run at once: none fetches an instance another holds, and the rate
limit lives in the store, so it holds across all of them.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from receiver import fetching, usecases
from receiver.domain.model import FINAL, Decision, FetchFailed, Instance
from receiver.domain.schedule import WIDE_AFTER
from receiver.fetching import FetchResult
from receiver.services import Services
from receiver.store.groupcommit import GroupCommitter

log = logging.getLogger("receiver.poller")

TICK = 0.1  # seconds between looks for due work; a due instance waits at most this long


@dataclass
class Report:
    """What the fetches handed out so far came to."""

    claimed: int = 0
    final: int = 0
    errors: int = 0


class Poller:
    """Keeps RECEIVER_POLL_CONCURRENCY requests out to GBG, and as many claimed
    instances queued behind them, so the next request leaves the moment one returns."""

    def __init__(self, services: Services, *, owner: str | None = None, tick: float = TICK):
        self.services = services
        self.owner = owner or usecases.owner_id()
        self.tick = tick
        concurrency = services.settings.poll_concurrency
        self._room_size = 2 * concurrency
        self._pool = ThreadPoolExecutor(self._room_size, thread_name_prefix="fetch")
        self._in_flight = threading.BoundedSemaphore(concurrency)  # requests out to GBG
        self._room = threading.BoundedSemaphore(self._room_size)  # claimed, not yet written
        self._futures: list[Future[Decision | None]] = []
        self._lock = threading.Lock()
        # Results fold in batches: one transaction (and one turn of the event log's
        # lock) for the answers that came back together, not one for each.
        self._results = GroupCommitter(self._fold)
        self.report = Report()
        self._probe: Future[Decision | None] | None = None

    def drain(self, stopping: threading.Event | None = None) -> None:
        """Claim and hand out due instances until none is due (or ``stopping`` is set)."""
        stopping = stopping or threading.Event()
        next_fetch, failures = self.services.store.fetch_standing()
        if next_fetch > self.services.clock() + self.tick:
            return  # every fetch is paused (GBG's 429 or outage): claim nothing meanwhile
        # GBG was failing for everyone: one probe at a time, the rest follow its success.
        probing = failures >= WIDE_AFTER
        while not stopping.is_set():
            if probing:
                if self._probe is not None and not self._probe.done():
                    return
                room = 1 if self._room.acquire(timeout=self.tick) else 0
            else:
                room = self._gather_room()
            if not room:
                continue
            claimed: list[Instance] = []
            try:
                claimed = self.services.store.claim_due(
                    self.owner, self.services.clock(), room, self.services.settings.poll_lease
                )
            finally:
                for _ in range(room - len(claimed)):
                    self._room.release()
            if not claimed:
                return  # nothing due now; the next tick looks again
            self.report.claimed += len(claimed)
            for instance in claimed:
                future = self._pool.submit(self._fetch, instance)
                with self._lock:
                    self._futures.append(future)
            if probing:
                self._probe = future
                return

    def _gather_room(self) -> int:
        """Room for claims, in batches of RECEIVER_POLL_CONCURRENCY where the work allows.

        Half the room holds the next requests while the other half fills: claiming in
        batches costs one claim per batch, never a wait at the gate to GBG. Whatever
        room there is goes into a claim after one tick.
        """
        deadline = time.monotonic() + self.tick
        half, room = self._room_size // 2, 0
        while room < half:
            left = deadline - time.monotonic()
            if left <= 0 or not self._room.acquire(timeout=left):
                break
            room += 1
        while room < self._room_size and self._room.acquire(blocking=False):
            room += 1
        return room

    def wait(self) -> Report:
        """Wait for every fetch handed out so far; answer what they came to."""
        with self._lock:
            futures, self._futures = self._futures, []
        wait(futures)
        return self.report

    def close(self) -> int:
        """Let fetches in flight finish and fold in; give back every lease still held."""
        self._pool.shutdown(wait=True)
        return self.services.store.release(self.owner)

    def renew(self) -> int:
        """Extend the leases this poller holds: fetches queued or running keep them."""
        lease = self.services.settings.poll_lease
        return self.services.store.renew(self.owner, self.services.clock() + lease)

    def _failed(self, instance: Instance) -> None:
        """Count a surprise as a failed fetch (backoff, then give up), so the instance is
        not due again at once, in a loop; if even that fails, its lease lapses by itself."""
        failure = FetchFailed(
            instance.instance_id, "internal", message="the receiver's own error; see its log"
        )
        try:
            usecases.observe(self.services, failure, self.services.clock(), lease_owner=self.owner)
        except Exception:
            log.exception("poll.not_recorded", extra={"instance_id": instance.instance_id})

    def _fold(self, batch: list[tuple[FetchResult]]) -> list[Decision]:
        observations = [(r.observation, self.services.clock()) for (r,) in batch]
        return usecases.fold(
            self.services.store,
            self.services.policy,
            observations,
            lease_owner=self.owner,
            forward=self.services.forwarding,
        )

    def _fetch(self, instance: Instance) -> Decision | None:
        try:
            fetched = fetching.fetch(self.services, instance.instance_id, gate=self._in_flight)
            folded: Decision = self._results.submit(fetched)
            fetched.log(folded)
            decision: Decision | None = folded
        except Exception:  # one instance's surprise must not stop the others
            log.exception("poll.failed", extra={"instance_id": instance.instance_id})
            self._failed(instance)
            decision = None
        finally:
            self._room.release()
        with self._lock:
            if decision is None or decision.instance.poll_errors:
                self.report.errors += 1
            elif decision.instance.status in FINAL:
                self.report.final += 1
        return decision
