"""The one reconcile function: every observation, from any path, goes through decide().

Pure: no I/O, no clock. An observation is what a path saw (a registration, a webhook,
a state fetch or its failure, the instance's time-to-live running out); decide() turns
the current instance and one observation into the next instance and at most one status
change event. The rules that never bend live here:

- a webhook never sets a final status: GBG's module fires before the journey ends, so
  only the state API's answer does; the webhook's claim is kept for display;
- a final status (completed, failed) never changes again; ``expired`` yields to a real
  completed/failed;
- each status change produces exactly one event.
"""

from __future__ import annotations

from dataclasses import replace

from receiver.domain import schedule
from receiver.domain.model import (
    EXPIRED,
    FINAL,
    IN_PROGRESS,
    Decision,
    Event,
    Fetched,
    FetchFailed,
    Instance,
    Observation,
    Registered,
    TtlPassed,
    UnknownInstance,
    WebhookReceived,
)
from receiver.domain.schedule import Policy


def decide(
    current: Instance | None, observation: Observation, now: float, policy: Policy
) -> Decision:
    """Fold one observation into the instance; the only place that changes a status."""
    created = current is None
    if current is None:
        if not isinstance(observation, Registered | WebhookReceived):
            raise UnknownInstance(observation.instance_id)
        current = Instance(
            instance_id=observation.instance_id,
            registered_at=now,
            updated_at=now,
            source="webhook" if isinstance(observation, WebhookReceived) else "api",
            next_poll_at=now + policy.webhook_timeout,
        )
    match observation:
        case Registered(reference=reference, instance_url=url):
            # What registration brings is kept once: a later one never overwrites it.
            after = replace(
                current,
                reference=current.reference or reference,
                instance_url=current.instance_url or url,
            )
            if after != current:
                after = replace(after, updated_at=now)
        case WebhookReceived():
            after = _webhook(current, observation, now, policy)
        case Fetched():
            after = _fetched(current, observation, now, policy)
        case FetchFailed():
            after = _failed(current, observation, now, policy)
        case TtlPassed():
            after = current
            if current.status == IN_PROGRESS:
                after = _settle(current, EXPIRED, _source(current, "poll"), now)
    event = None
    if after.status != current.status:
        event = Event(after.instance_id, after.status, current.status, after.source, now)
    return Decision(after, event, created)


def _webhook(current: Instance, obs: WebhookReceived, now: float, policy: Policy) -> Instance:
    after = replace(
        current,
        webhook_received_at=now,
        webhook_claim=obs.claim if obs.claim is not None else current.webhook_claim,
        updated_at=now,
    )
    if current.status in FINAL:
        return after
    # The webhook asks for a confirming fetch; it never delays one that is already due.
    confirm = now + policy.confirm_delay
    if current.next_poll_at is not None and not current.polling_gave_up:
        confirm = min(confirm, current.next_poll_at)
    return replace(
        after,
        next_poll_at=confirm,
        polling_gave_up=False,
        poll_errors=0 if current.polling_gave_up else current.poll_errors,
    )


def _fetched(current: Instance, obs: Fetched, now: float, policy: Policy) -> Instance:
    if current.status in FINAL:
        return replace(current, last_polled_at=now, updated_at=now, next_poll_at=None)
    state = obs.state
    after = replace(
        current,
        gbg_status=state.gbg_status,
        outcome=state.outcome,
        result=state.result,
        journey=state.journey,
        state=state.document,
        last_polled_at=now,
        poll_errors=0,
        polling_gave_up=False,
        last_error=None,
        updated_at=now,
    )
    if state.status in FINAL:
        settled = _settle(after, state.status, _source(current, obs.by), now)
        return replace(settled, completed_at=state.completed_at or now)
    if current.status == EXPIRED:
        return replace(after, next_poll_at=None)
    next_at = schedule.next_poll_at(
        policy, instance_id=current.instance_id, registered_at=current.registered_at, now=now
    )
    next_at = schedule.follow_up(
        policy, webhook_at=current.webhook_received_at, now=now, regular=next_at
    )
    return replace(after, next_poll_at=_confirm_webhook_during_fetch(current, obs, next_at, policy))


def _failed(current: Instance, obs: FetchFailed, now: float, policy: Policy) -> Instance:
    if current.status in FINAL:
        return replace(current, last_polled_at=now, updated_at=now, next_poll_at=None)
    if obs.gbg_wide:  # GBG's outage, paused for all: the instance stays due, uncharged
        error = obs.as_error(now, max(0, policy.max_errors - current.poll_errors))
        return replace(current, last_polled_at=now, last_error=error, updated_at=now)
    errors = current.poll_errors + 1
    error = obs.as_error(now, max(0, policy.max_errors - errors))
    next_at = schedule.next_poll_at(
        policy,
        instance_id=current.instance_id,
        registered_at=current.registered_at,
        now=now,
        errors=errors,
        retry_after=obs.retry_after,
    )
    return replace(
        current,
        last_polled_at=now,
        poll_errors=errors,
        polling_gave_up=next_at is None,
        last_error=error,
        next_poll_at=_confirm_webhook_during_fetch(current, obs, next_at, policy),
        updated_at=now,
    )


def _confirm_webhook_during_fetch(
    current: Instance, obs: Fetched | FetchFailed, next_at: float | None, policy: Policy
) -> float | None:
    """A webhook that came while this fetch was under way still gets its confirmation:
    the answer in hand may predate the journey's end that the webhook announced."""
    hook = current.webhook_received_at
    if next_at is None or hook is None or obs.started_at is None or hook < obs.started_at:
        return next_at
    return min(next_at, hook + policy.confirm_delay)


def _source(current: Instance, by: str) -> str:
    """How a status was found: an operator's fetch, else after a webhook, else polling alone."""
    if by == "api":
        return "api"
    return "webhook" if current.webhook_received_at is not None else "poll"


def _settle(current: Instance, status: str, source: str, now: float) -> Instance:
    """A final status: nothing more to fetch."""
    return replace(current, status=status, source=source, next_poll_at=None, updated_at=now)
