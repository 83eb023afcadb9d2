from __future__ import annotations

from dataclasses import replace

import pytest

from receiver.domain.model import (
    COMPLETED,
    EXPIRED,
    FAILED,
    IN_PROGRESS,
    Fetched,
    FetchFailed,
    GbgState,
    Instance,
    Registered,
    TtlPassed,
    UnknownInstance,
    WebhookReceived,
    normalize_status,
)
from receiver.domain.reconcile import decide
from receiver.domain.schedule import Policy, next_poll_at

POLICY = Policy(jitter=0.0)
NOW = 10_000.0
ID = "inst-1"

OBSERVATIONS = {
    "register": Registered(ID),
    "webhook": WebhookReceived(ID, claim="Completed"),
    "fetch_in_progress": Fetched(ID, GbgState(IN_PROGRESS, "InProgress")),
    "fetch_completed": Fetched(ID, GbgState(COMPLETED, "Completed", outcome="Of Age")),
    "fetch_failed": Fetched(ID, GbgState(FAILED, "Failed")),
    "fetch_error": FetchFailed(ID, "http_503"),
    "ttl": TtlPassed(ID),
}
NO = None  # decide() refuses: nothing to fold a fetch or expiry into

# current status -> observation -> (status after, one event?)
TABLE: dict[str | None, dict[str, tuple[str, bool] | None]] = {
    None: {
        "register": (IN_PROGRESS, False),
        "webhook": (IN_PROGRESS, False),
        "fetch_in_progress": NO,
        "fetch_completed": NO,
        "fetch_failed": NO,
        "fetch_error": NO,
        "ttl": NO,
    },
    IN_PROGRESS: {
        "register": (IN_PROGRESS, False),
        "webhook": (IN_PROGRESS, False),
        "fetch_in_progress": (IN_PROGRESS, False),
        "fetch_completed": (COMPLETED, True),
        "fetch_failed": (FAILED, True),
        "fetch_error": (IN_PROGRESS, False),
        "ttl": (EXPIRED, True),
    },
    COMPLETED: {obs: (COMPLETED, False) for obs in OBSERVATIONS},
    FAILED: {obs: (FAILED, False) for obs in OBSERVATIONS},
    EXPIRED: {
        "register": (EXPIRED, False),
        "webhook": (EXPIRED, False),
        "fetch_in_progress": (EXPIRED, False),
        "fetch_completed": (COMPLETED, True),
        "fetch_failed": (FAILED, True),
        "fetch_error": (EXPIRED, False),
        "ttl": (EXPIRED, False),
    },
}


def instance(status: str = IN_PROGRESS, **changes: object) -> Instance:
    base = Instance(
        ID, registered_at=NOW - 400, updated_at=NOW - 400, status=status, next_poll_at=NOW
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "observed"),
    [(c, o) for c in TABLE for o in OBSERVATIONS],
    ids=lambda v: str(v),
)
def test_every_pair_of_current_and_observed(current: str | None, observed: str) -> None:
    expected = TABLE[current][observed]
    before = None if current is None else instance(current)
    if expected is None:
        with pytest.raises(UnknownInstance):
            decide(before, OBSERVATIONS[observed], NOW, POLICY)
        return
    decision = decide(before, OBSERVATIONS[observed], NOW, POLICY)
    status, has_event = expected
    assert decision.instance.status == status
    assert (decision.event is not None) == has_event
    if decision.event is not None:
        assert decision.event.previous_status == current
        assert decision.event.status == status
    assert decision.created == (current is None)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("InProgress", IN_PROGRESS),
        ("IN_PROGRESS", IN_PROGRESS),
        ("in progress", IN_PROGRESS),
        ("Completed", COMPLETED),
        ("COMPLETED", COMPLETED),
        ("Failed", FAILED),
        ("FAILED", FAILED),
        ("complete", None),  # context.result's word, not a journey status
        ("pending", None),
        ("Exploded", None),
        (None, None),
        (3, None),
    ],
)
def test_gbg_statuses_in_any_spelling(raw: object, status: str | None) -> None:
    assert normalize_status(raw) == status


def test_webhook_never_sets_a_final_status_but_keeps_its_claim() -> None:
    decision = decide(None, WebhookReceived(ID, claim="Completed"), NOW, POLICY)
    assert decision.instance.status == IN_PROGRESS
    assert decision.instance.webhook_claim == "Completed"
    assert decision.instance.webhook_received_at == NOW
    assert decision.instance.next_poll_at == NOW + POLICY.confirm_delay


def test_registration_starts_the_webhook_timeout_clock() -> None:
    decision = decide(None, Registered(ID, "order-7"), NOW, POLICY)
    assert decision.instance.next_poll_at == NOW + POLICY.webhook_timeout
    assert decision.instance.reference == "order-7"
    assert decision.instance.source == "api"


def test_duplicate_registration_changes_nothing() -> None:
    first = decide(None, Registered(ID), NOW, POLICY).instance
    again = decide(first, Registered(ID), NOW + 5, POLICY)
    assert again.instance == first
    assert not again.created


def test_a_later_registration_fills_what_is_missing_and_overwrites_nothing() -> None:
    first = decide(None, Registered(ID, "order-7"), NOW, POLICY).instance
    filled = decide(first, Registered(ID, "other", "https://gbg/j/1"), NOW + 5, POLICY).instance
    assert (filled.reference, filled.instance_url, filled.updated_at) == (
        "order-7",
        "https://gbg/j/1",
        NOW + 5,
    )
    again = decide(filled, Registered(ID, "x", "https://elsewhere"), NOW + 9, POLICY).instance
    assert again == filled


def test_webhook_never_delays_a_fetch_already_due_sooner() -> None:
    due_soon = instance(next_poll_at=NOW + 0.2)
    assert decide(due_soon, WebhookReceived(ID), NOW, POLICY).instance.next_poll_at == NOW + 0.2


def test_webhook_resumes_a_given_up_instance() -> None:
    gave_up = instance(polling_gave_up=True, poll_errors=30, next_poll_at=None)
    after = decide(gave_up, WebhookReceived(ID), NOW, POLICY).instance
    assert (after.polling_gave_up, after.poll_errors) == (False, 0)
    assert after.next_poll_at == NOW + POLICY.confirm_delay


def test_fetch_error_backs_off_then_gives_up_at_the_maximum() -> None:
    current = instance(poll_errors=POLICY.max_errors - 2)
    after = decide(current, FetchFailed(ID, "http_500"), NOW, POLICY).instance
    assert after.poll_errors == POLICY.max_errors - 1
    assert after.next_poll_at == NOW + 10 + 5 * (POLICY.max_errors - 1)
    last = decide(after, FetchFailed(ID, "http_500"), NOW, POLICY).instance
    assert (last.polling_gave_up, last.next_poll_at) == (True, None)


def test_success_resets_errors_and_schedules_the_base_interval() -> None:
    current = instance(poll_errors=4)
    after = decide(current, OBSERVATIONS["fetch_in_progress"], NOW, POLICY).instance
    assert (after.poll_errors, after.next_poll_at, after.last_polled_at) == (0, NOW + 10, NOW)


@pytest.mark.parametrize(
    ("webhook_at", "by", "source"),
    [(None, "poll", "poll"), (NOW - 5, "poll", "webhook"), (NOW - 5, "api", "api")],
)
def test_source_says_how_the_status_was_found(
    webhook_at: float | None, by: str, source: str
) -> None:
    current = instance(webhook_received_at=webhook_at)
    state = GbgState(COMPLETED, "Completed", completed_at=NOW - 1)
    decision = decide(current, Fetched(ID, state, by), NOW, POLICY)
    assert decision.instance.source == source
    assert decision.event is not None
    assert decision.event.source == source
    assert decision.instance.completed_at == NOW - 1
    assert decision.instance.next_poll_at is None


def test_late_in_progress_after_completed_changes_nothing() -> None:
    done = decide(instance(), OBSERVATIONS["fetch_completed"], NOW, POLICY).instance
    later = decide(done, OBSERVATIONS["fetch_in_progress"], NOW + 1, POLICY)
    assert later.instance.status == COMPLETED
    assert later.instance.outcome == "Of Age"
    assert later.event is None


@pytest.mark.parametrize(
    "observed",
    [
        Fetched(ID, GbgState(IN_PROGRESS, "InProgress"), started_at=NOW - 2),
        FetchFailed(ID, "http_503", started_at=NOW - 2),
    ],
    ids=["in_progress", "error"],
)
def test_webhook_during_a_fetch_keeps_its_confirming_fetch(observed) -> None:  # type: ignore[no-untyped-def]
    claimed = instance(next_poll_at=NOW - 3)  # due when the poller claimed it
    during = decide(claimed, WebhookReceived(ID), NOW - 1, POLICY).instance
    after = decide(during, observed, NOW, POLICY).instance
    assert after.next_poll_at == NOW - 1 + POLICY.confirm_delay


def test_a_webhook_before_the_fetch_shortens_the_schedule_only_by_its_follow_ups() -> None:
    claimed = instance(next_poll_at=NOW - 3, webhook_received_at=NOW - 4)
    observed = Fetched(ID, GbgState(IN_PROGRESS, "InProgress"), started_at=NOW - 2)
    plain = replace(POLICY, followups=())
    assert decide(claimed, observed, NOW, plain).instance.next_poll_at == NOW + 10
    # Follow-ups 1, 2, 2, 2 s apart after the confirmation at W + 1: W + 2, W + 4 (now),
    # W + 6, W + 8.
    assert decide(claimed, observed, NOW, POLICY).instance.next_poll_at == NOW + 2


@pytest.mark.parametrize(
    ("since_webhook", "next_in"),
    [(1, 1), (2, 2), (3, 1), (4, 2), (5, 1), (6, 2), (7.5, 0.5), (8, 10), (60, 10)],
)
def test_follow_ups_come_after_the_confirmation_then_gbgs_interval(
    since_webhook: float, next_in: float
) -> None:
    running = instance(webhook_received_at=NOW - since_webhook)
    observed = Fetched(ID, GbgState(IN_PROGRESS, "InProgress"))
    assert decide(running, observed, NOW, POLICY).instance.next_poll_at == NOW + next_in


def test_no_follow_up_without_a_webhook_or_after_an_error() -> None:
    observed = Fetched(ID, GbgState(IN_PROGRESS, "InProgress"))
    assert decide(instance(), observed, NOW, POLICY).instance.next_poll_at == NOW + 10
    hooked = instance(webhook_received_at=NOW - 1)
    failed = decide(hooked, FetchFailed(ID, "http_404"), NOW, POLICY).instance
    assert failed.next_poll_at == NOW + 15  # GBG's interval plus its backoff


def test_a_failed_fetch_of_a_finished_instance_is_noted_and_schedules_nothing() -> None:
    done = instance(COMPLETED, next_poll_at=NOW + 5, poll_errors=2)
    after = decide(done, FetchFailed(ID, "http_503"), NOW, POLICY).instance
    assert after == replace(done, last_polled_at=NOW, updated_at=NOW, next_poll_at=None)


def test_a_gbg_wide_failure_charges_the_instance_nothing() -> None:
    due = instance(poll_errors=2)
    failure = FetchFailed(ID, "connect", gbg_wide=True, message="GBG: ConnectionError")
    after = decide(due, failure, NOW, POLICY).instance
    why = {"kind": "connect", "httpStatus": None, "message": "GBG: ConnectionError", "at": NOW}
    left = POLICY.max_errors - 2  # nothing charged: as many left as before
    assert after == replace(
        due, last_polled_at=NOW, updated_at=NOW, last_error=why | {"errorsLeft": left}
    )


def test_a_gbg_wide_failure_of_an_instance_out_of_errors_leaves_it_none() -> None:
    spent = instance(poll_errors=POLICY.max_errors, polling_gave_up=True)  # an operator's poll
    failure = FetchFailed(ID, "connect", gbg_wide=True)
    after = decide(spent, failure, NOW, POLICY).instance
    assert after.last_error is not None
    assert after.last_error["errorsLeft"] == 0


def test_a_failed_fetch_counts_and_schedules_by_the_instances_own_spread() -> None:
    policy = Policy(jitter=0.1)
    due = instance(poll_errors=2)
    after = decide(due, FetchFailed(ID, "http_503"), NOW, policy).instance
    expected = next_poll_at(policy, instance_id=ID, registered_at=NOW - 400, now=NOW, errors=3)
    why = {"kind": "http_503", "httpStatus": 503, "message": "http_503", "at": NOW}
    assert after == replace(
        due,
        last_polled_at=NOW,
        poll_errors=3,
        next_poll_at=expected,
        updated_at=NOW,
        last_error=why | {"errorsLeft": policy.max_errors - 3},
    )


def test_the_last_error_stays_until_a_fetch_succeeds_and_counts_down_to_giving_up() -> None:
    policy = Policy(max_errors=3)
    current = instance()
    lefts = []
    for kind in ("http_404", "garbage", "http_404"):
        current = decide(
            current, FetchFailed(ID, kind, message=f"GBG: {kind}"), NOW, policy
        ).instance
        assert current.last_error is not None
        lefts.append((current.last_error["kind"], current.last_error["errorsLeft"]))
    assert lefts == [("http_404", 2), ("garbage", 1), ("http_404", 0)]
    assert current.polling_gave_up
    assert current.last_error == {
        "kind": "http_404",
        "httpStatus": 404,
        "message": "GBG: http_404",
        "at": NOW,
        "errorsLeft": 0,
    }
    hooked = decide(current, WebhookReceived(ID), NOW + 1, policy).instance
    assert hooked.last_error == current.last_error  # resumed, the reason still shown
    fine = decide(hooked, Fetched(ID, GbgState(IN_PROGRESS, "InProgress")), NOW + 2, policy)
    assert fine.instance.last_error is None


@pytest.mark.parametrize(
    ("hook", "confirmed"), [(NOW - 2, True), (NOW - 3, True), (NOW - 3.5, False)]
)
def test_a_webhook_at_or_after_a_fetch_began_still_gets_its_confirmation(
    hook: float, confirmed: bool
) -> None:
    """The fetch left at NOW - 3: a webhook from then on may announce an end its answer
    predates, so the confirming fetch stays due RECEIVER_CONFIRM_DELAY after the webhook."""
    due = instance(webhook_received_at=hook)
    fetched = Fetched(ID, GbgState(IN_PROGRESS, "InProgress"), started_at=NOW - 3)
    after = decide(due, fetched, NOW, POLICY).instance
    assert (after.next_poll_at == hook + POLICY.confirm_delay) is confirmed


def test_a_webhook_keeps_the_error_count_unless_polling_had_given_up() -> None:
    failing = instance(poll_errors=3)
    after = decide(failing, WebhookReceived(ID, claim=None), NOW, POLICY).instance
    assert (after.poll_errors, after.webhook_claim) == (3, None)
    stopped = instance(poll_errors=30, polling_gave_up=True, webhook_claim="Completed")
    after = decide(stopped, WebhookReceived(ID, claim=None), NOW, POLICY).instance
    assert (after.poll_errors, after.polling_gave_up) == (0, False)
    assert after.webhook_claim == "Completed"  # a webhook without a claim keeps the last one


RESULT = {"outcome": "Of Age"}
JOURNEY = {"name": "age", "endedAt": None}


def fetched(status: str, gbg_status: str, **more: object) -> Fetched:
    state = GbgState(
        status, gbg_status, "Of Age", RESULT, JOURNEY, document={"status": gbg_status}, **more
    )
    return Fetched(ID, state)


def test_a_fetch_in_progress_is_kept_whole_and_schedules_the_next() -> None:
    policy = Policy(jitter=0.1)
    due = instance(poll_errors=2, polling_gave_up=False)
    after = decide(due, fetched(IN_PROGRESS, "InProgress"), NOW, policy).instance
    expected = next_poll_at(policy, instance_id=ID, registered_at=NOW - 400, now=NOW)
    assert after == replace(
        due,
        gbg_status="InProgress",
        outcome="Of Age",
        result=RESULT,
        journey=JOURNEY,
        state={"status": "InProgress"},
        last_polled_at=NOW,
        poll_errors=0,
        next_poll_at=expected,
        updated_at=NOW,
    )


def test_a_final_fetch_settles_the_instance_whole() -> None:
    due = instance(poll_errors=2)
    after = decide(due, fetched(COMPLETED, "Completed", completed_at=NOW - 9), NOW, POLICY).instance
    assert after == replace(
        due,
        status=COMPLETED,
        source="poll",
        gbg_status="Completed",
        outcome="Of Age",
        result=RESULT,
        journey=JOURNEY,
        state={"status": "Completed"},
        last_polled_at=NOW,
        poll_errors=0,
        completed_at=NOW - 9,
        next_poll_at=None,
        updated_at=NOW,
    )


def test_a_fetch_after_the_end_or_after_expiry_schedules_nothing() -> None:
    done = instance(COMPLETED, next_poll_at=NOW + 5)
    after = decide(done, fetched(IN_PROGRESS, "InProgress"), NOW, POLICY).instance
    assert after == replace(done, last_polled_at=NOW, updated_at=NOW, next_poll_at=None)
    gone = instance(EXPIRED, next_poll_at=NOW + 5)
    after = decide(gone, fetched(IN_PROGRESS, "InProgress"), NOW, POLICY).instance
    assert (after.status, after.next_poll_at, after.gbg_status) == (EXPIRED, None, "InProgress")


def test_ttl_expiry_settles_the_instance_whole() -> None:
    due = instance(poll_errors=2, next_poll_at=NOW + 5)
    after = decide(due, TtlPassed(ID), NOW, POLICY).instance
    assert after == replace(due, status=EXPIRED, source="poll", next_poll_at=None, updated_at=NOW)


def test_a_webhook_marks_its_time() -> None:
    due = instance()
    after = decide(due, WebhookReceived(ID, claim="Completed"), NOW, POLICY).instance
    assert (after.webhook_received_at, after.updated_at, after.webhook_claim) == (
        NOW,
        NOW,
        "Completed",
    )


def test_an_unknown_instance_is_named() -> None:
    with pytest.raises(UnknownInstance, match=f"^'?{ID}'?$"):
        decide(None, TtlPassed(ID), NOW, POLICY)
