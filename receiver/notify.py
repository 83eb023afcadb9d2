"""Telling the application: one attempt at a claimed outbox message, and replays.

The messages themselves are written by ``usecases._fold`` in each status change's own
transaction; the worker's forwarder claims due ones and calls ``attempt`` for each.
"""

from __future__ import annotations

import logging

from receiver.domain import retries
from receiver.downstream import Downstream
from receiver.services import Services
from receiver.store import Message

log = logging.getLogger("receiver.notify")


def attempt(services: Services, downstream: Downstream, message: Message, owner: str) -> str:
    """Send one message and record what came of it; answer the outcome."""
    result = downstream.send(message.seq, message.body)
    now = services.clock()
    next_at = None
    if result.error is not None:
        next_at = retries.next_attempt_at(message.attempts + 1, now, result.retry_after)
    recorded = services.store.record_attempt(
        message.seq, owner, now=now, error=result.error, next_attempt_at=next_at
    )
    outcome = result.error or "delivered"
    if result.error is not None and next_at is None:
        outcome = "failed"
    services.metrics.forwards.labels(outcome).inc()
    if result.error is None:
        services.metrics.forward_seconds.observe(max(0.0, now - message.created_at))
    log.info(
        "forward.attempted",
        extra={
            "seq": message.seq,
            "instance_id": message.instance_id,
            "attempt": message.attempts + 1,
            "outcome": outcome,
            "error": result.error,
            "next_attempt_in_s": None if next_at is None else round(next_at - now, 3),
            "lease_kept": recorded,
        },
    )
    return outcome


def replay(services: Services, seq: int) -> Message | None:
    """Send a message again from now with a fresh schedule; None if there is no such one."""
    message = services.store.replay_message(seq, services.clock())
    if message is not None:
        log.info("forward.replayed", extra={"seq": seq, "instance_id": message.instance_id})
    return message
