"""The schema, in one place: Alembic's migrations produce exactly this (a test checks).

Instances, the inbox of webhook deliveries, the event log, the outbox of messages to
the application, each fetch and forward attempt (an instance's timeline), the shared
fetch rate, the dashboard sessions signed out, the journey starts' idempotency keys and
the workers' heartbeats.
"""

from __future__ import annotations

import sqlalchemy as sa

FETCH_BUCKET = "gbg_state_fetch"


def partial_index(name: str, column: str, where: str) -> sa.Index:
    """An index over the rows that match ``where`` only, on both dialects."""
    return sa.Index(name, column, sqlite_where=sa.text(where), postgresql_where=sa.text(where))


metadata = sa.MetaData()

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid alias that
# AUTOINCREMENT (never reusing a deleted seq) applies to.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MAX_ID = 2**63 - 1  # the largest id a BigId column holds, on either database

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("instance_id", sa.String(128), primary_key=True),
    sa.Column("reference", sa.String(256)),
    sa.Column("instance_url", sa.String(2048)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("gbg_status", sa.String(64)),
    sa.Column("outcome", sa.String(256)),
    sa.Column("result", sa.JSON(none_as_null=True)),
    sa.Column("journey", sa.JSON(none_as_null=True)),
    sa.Column("state", sa.JSON(none_as_null=True)),
    sa.Column("webhook_claim", sa.String(64)),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("webhook_received_at", sa.Float),
    sa.Column("last_polled_at", sa.Float),
    sa.Column("completed_at", sa.Float),
    sa.Column("next_poll_at", sa.Float),
    sa.Column("poll_errors", sa.Integer, nullable=False),
    sa.Column("polling_gave_up", sa.Boolean, nullable=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("last_error", sa.JSON(none_as_null=True)),  # why the last fetch failed
    # Due selection reads only rows that have a next poll: O(due), not O(all).
    partial_index("ix_instances_due", "next_poll_at", "next_poll_at IS NOT NULL"),
    partial_index("ix_instances_unfinished", "registered_at", "status = 'in_progress'"),
    sa.Index("ix_instances_newest", "registered_at", "instance_id"),
    sa.Index("ix_instances_status_newest", "status", "registered_at", "instance_id"),
    partial_index("ix_instances_lease_owner", "lease_owner", "lease_owner IS NOT NULL"),
    sa.Index("ix_instances_reference", "reference"),
    partial_index("ix_instances_given_up", "registered_at", "polling_gave_up"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(128), nullable=False, index=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
    sa.Column("peer", sa.String(64)),
    sa.Column("claim", sa.String(64)),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("body", sa.LargeBinary),
    # The inbox: NULL until a worker has folded the delivery into its instance.
    sa.Column("folded_at", sa.Float),
    # A delivery that could not be folded: tries so far, the last reason, and when it was
    # set aside (quarantined) after the last try; the rest of the inbox folds past it.
    sa.Column("fold_tries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("fold_error", sa.String(256)),
    sa.Column("quarantined_at", sa.Float),
    partial_index("ix_deliveries_unfolded", "id", "folded_at IS NULL"),
    partial_index("ix_deliveries_unfolded_instance", "instance_id", "folded_at IS NULL"),
    sqlite_autoincrement=True,
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("previous_status", sa.String(16)),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_events_at", "at"),  # the dashboard's endings of the last day
    sqlite_autoincrement=True,
)

outbox = sa.Table(
    "outbox",
    metadata,
    # One message per event, written in the event's transaction; its id is the seq.
    sa.Column("seq", BigId, primary_key=True, autoincrement=False),
    sa.Column("instance_id", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact bytes that are signed and sent
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Float),
    sa.Column("last_attempt_at", sa.Float),
    sa.Column("last_error", sa.String(256)),
    sa.Column("delivered_at", sa.Float),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", sa.Float),
    partial_index("ix_outbox_due", "next_attempt_at", "status = 'pending'"),
    partial_index("ix_outbox_pending_instance", "instance_id", "status = 'pending'"),
    sa.Index("ix_outbox_status_seq", "status", "seq"),
    sa.Index("ix_outbox_instance", "instance_id", "seq"),
)

# What was tried for an instance: each state fetch and each forward attempt, with what
# came of it. With the events and the deliveries, an instance's whole timeline.
attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(128), nullable=False),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # fetch | forward
    sa.Column("outcome", sa.String(32), nullable=False),  # ok, delivered, or the error
    sa.Column("gbg_status", sa.String(64)),  # a fetch's answer, as GBG spelt it
    sa.Column("seconds", sa.Float),  # a fetch's time at GBG
    sa.Column("seq", BigId),  # a forward's message
    sa.Index("ix_attempts_instance", "instance_id", "id"),
    sqlite_autoincrement=True,
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # GCRA's theoretical arrival time: the earliest moment the next fetch may start.
    sa.Column("tat", sa.Float, nullable=False),
    # GBG-wide failures in a row, every worker's (no connection, 5xx, refused token).
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    # Until when every fetch waits because of them (GBG's outage, not any instance's).
    sa.Column("paused_until", sa.Float),
)

# Dashboard sessions signed out before their end: their cookies open nothing, on any host.
revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("sid", sa.String(64), primary_key=True),
    sa.Column("until", sa.Float, nullable=False),  # the session's own end: kept until then
)

# POST /api/v1/journeys with an Idempotency-Key: the first request's body (hashed) and
# the instance it started, so a retry answers that instance instead of a second journey.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("instance_id", sa.String(128)),  # NULL while the first request is under way
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)

# Every worker process's heartbeat, from any host: what /readyz, /metrics and the
# dashboard say about the workers (a stopped worker keeps its row until retention).
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),  # host:pid:start, as leases name it
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
    sa.Column("stopped_at", sa.Float),  # a clean stop; NULL while it runs (or if it died)
    sa.Column("clock_skew", sa.Float),  # its host's clock minus the database's, in seconds
)
