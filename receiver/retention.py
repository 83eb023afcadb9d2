"""Retention: raw deliveries and fetched state documents go after RECEIVER_RETENTION_DAYS."""

from __future__ import annotations

import logging

from receiver.services import Services

log = logging.getLogger("receiver.retention")

DAY = 86400.0


def purge(services: Services, days: float | None = None) -> tuple[int, int]:
    """Delete what is older than the retention period; keep instance rows and events."""
    days = services.settings.retention_days if days is None else days
    deleted, dropped = services.store.purge(services.clock() - days * DAY)
    log.info(
        "retention.purged",
        extra={"deliveries_deleted": deleted, "states_dropped": dropped, "days": days},
    )
    return deleted, dropped
