"""The forwarder: keeps up to FORWARD_CONCURRENCY messages on their way to the application.

``drain`` claims as many due messages as there is room for and hands each to a sender
thread; it does not wait for them, so one slow receiver answer holds one thread, never
the other instances' messages. A message due behind an earlier pending one of its own
instance is not claimed (the store sees to that), so each instance's order holds.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from receiver import notify, usecases
from receiver.downstream import Downstream
from receiver.services import Services
from receiver.store import Message

log = logging.getLogger("receiver.forwarder")

FORWARD_CONCURRENCY = 8  # messages on their way at once, per worker process


class Forwarder:
    def __init__(
        self,
        services: Services,
        *,
        owner: str | None = None,
        concurrency: int = FORWARD_CONCURRENCY,
        downstream: Downstream | None = None,
    ) -> None:
        url, secret = services.settings.forward_url, services.settings.forward_secret
        if downstream is None and (url is None or secret is None):
            raise ValueError("forwarding needs RECEIVER_FORWARD_URL and RECEIVER_FORWARD_SECRET")
        self.services = services
        self.owner = owner or usecases.owner_id()
        previous = services.settings.forward_secret_previous
        self.downstream = downstream or Downstream(
            str(url), str(secret), pool=concurrency, previous=previous
        )
        # A lease outlives any attempt (each ends at its deadline, and starts as soon as
        # it is claimed: there is a thread for every claim), so no other worker can
        # claim a message while it is on its way.
        self.lease = max(services.settings.poll_lease, 2 * sum(self.downstream.timeout))
        self._room = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="forward")
        self._futures: list[Future[str | None]] = []
        self._lock = threading.Lock()

    def drain(self) -> int:
        """Claim due messages into the free room and send them; answer how many."""
        room = 0
        while self._room.acquire(blocking=False):
            room += 1
        claimed: list[Message] = []
        try:
            if room:
                claimed = self.services.store.claim_messages(
                    self.owner, self.services.clock(), room, self.lease
                )
        finally:
            for _ in range(room - len(claimed)):
                self._room.release()
        for message in claimed:
            future = self._pool.submit(self._send, message)
            with self._lock:
                self._futures.append(future)
        return len(claimed)

    def wait(self) -> list[str | None]:
        """Wait for every message handed out so far; answer their outcomes."""
        with self._lock:
            futures, self._futures = self._futures, []
        wait(futures)
        return [f.result() for f in futures]

    def close(self) -> int:
        """Let sends in flight finish; give back every lease still held."""
        self._pool.shutdown(wait=True)
        return self.services.store.release_messages(self.owner)

    def _send(self, message: Message) -> str | None:
        try:
            return notify.attempt(self.services, self.downstream, message, self.owner)
        except Exception:  # the lease lapses and another attempt follows; others go on
            log.exception("forward.failed", extra={"seq": message.seq})
            return None
        finally:
            self._room.release()
