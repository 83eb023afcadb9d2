"""What the scrape-time gauges show, read in one go."""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.domain.model import IN_PROGRESS
from receiver.store import events, inbox, outbox, workers
from receiver.store.schema import FETCH_BUCKET, instances, rate_limits


def snapshot(conn: Connection, now: float) -> dict[str, Any]:
    by_status: dict[str, int] = dict(
        conn.execute(
            sa.select(instances.c.status, sa.func.count()).group_by(instances.c.status)
        ).all()
    )
    oldest = conn.execute(
        sa.select(sa.func.min(instances.c.registered_at)).where(instances.c.status == IN_PROGRESS)
    ).scalar()
    overdue = conn.execute(
        sa.select(sa.func.min(instances.c.next_poll_at)).where(instances.c.next_poll_at <= now)
    ).scalar()
    given_up = conn.execute(
        sa.select(sa.func.count()).where(
            instances.c.polling_gave_up.is_(True), instances.c.status == IN_PROGRESS
        )
    ).scalar_one()
    failures, paused_until = conn.execute(
        sa.select(rate_limits.c.failures, rate_limits.c.paused_until).where(
            rate_limits.c.name == FETCH_BUCKET
        )
    ).one()
    kind = instances.c.last_error["kind"].as_string()
    errors_by_kind: dict[str, int] = dict(
        conn.execute(
            sa.select(kind, sa.func.count())
            .where(instances.c.status == IN_PROGRESS, instances.c.last_error.is_not(None))
            .group_by(kind)
        ).all()
    )
    waiting, oldest_delivery = inbox.depth(conn)
    beat = workers.newest(conn)
    messages, oldest_message = outbox.depth(conn)
    return {
        "by_status": by_status,
        "resolved_by": events.endings_by_source(conn),
        "oldest_unfinished_age": _age(now, oldest),
        "poll_lag": _age(now, overdue),
        "given_up": int(given_up),
        "errors_by_kind": errors_by_kind,  # unfinished instances by their last poll error
        "gbg_failures": int(failures),
        "gbg_paused_for": max(0.0, paused_until - now) if paused_until is not None else 0.0,
        "inbox_depth": waiting,
        "inbox_oldest_age": _age(now, oldest_delivery),
        "inbox_quarantined": inbox.quarantined_count(conn),
        "outbox_pending": messages[outbox.PENDING],
        "outbox_failed": messages[outbox.FAILED],
        "outbox_oldest_age": _age(now, oldest_message),
        "worker_seen_age": _age(now, beat) if beat is not None else math.inf,
    }


def _age(now: float, since: float | None) -> float:
    return max(0.0, now - since) if since is not None else 0.0
