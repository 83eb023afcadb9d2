from __future__ import annotations

import pytest

from receiver.config import Settings
from receiver.domain.schedule import SLOWDOWN_AFTER, Policy, gbg_pause, next_poll_at

EXACT = Policy(jitter=0.0)


def interval(policy: Policy = EXACT, *, age: float = 0.0, **kwargs: object) -> float | None:
    at = next_poll_at(policy, instance_id="i", registered_at=1000.0, now=1000.0 + age, **kwargs)  # type: ignore[arg-type]
    return None if at is None else at - (1000.0 + age)


def test_success_polls_every_ten_seconds() -> None:
    assert interval() == 10.0


@pytest.mark.parametrize(("errors", "expected"), [(1, 15.0), (2, 20.0), (3, 25.0), (29, 155.0)])
def test_each_consecutive_error_adds_five_seconds(errors: int, expected: float) -> None:
    assert interval(errors=errors) == expected


def test_gives_up_at_the_thirtieth_consecutive_error() -> None:
    assert interval(errors=29) is not None
    assert interval(errors=30) is None


def test_retry_after_longer_than_the_interval_wins() -> None:
    assert interval(errors=1, retry_after=42.0) == 42.0
    assert interval(errors=1, retry_after=3.0) == 15.0


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0, 10.0), (SLOWDOWN_AFTER, 10.0), (2 * SLOWDOWN_AFTER, 20.0), (100 * SLOWDOWN_AFTER, 300.0)],
)
def test_long_running_instances_slow_down_to_the_ceiling(age: float, expected: float) -> None:
    assert interval(age=age) == expected


def test_jitter_only_ever_lengthens_and_stays_small() -> None:
    policy = Policy(jitter=0.02)
    seen = set()
    for n in range(200):
        at = next_poll_at(policy, instance_id=f"id-{n}", registered_at=0.0, now=0.0)
        assert at is not None
        assert 10.0 <= at < 10.2
        seen.add(round(at, 4))
    assert len(seen) > 100  # instances do not poll in lockstep


def test_numbers_come_from_the_policy() -> None:
    policy = Policy(interval=2.0, error_backoff=1.0, max_errors=3, jitter=0.0)
    assert [interval(policy, errors=e) for e in range(4)] == [2.0, 3.0, 4.0, None]


def spread(instance_id: str, errors: int, policy: Policy) -> float:
    """Where in the jitter band a fetch landed: 0 at the bare interval, 1 at its top."""
    base = interval(errors=errors)
    at = next_poll_at(
        policy, instance_id=instance_id, registered_at=1000.0, now=1000.0, errors=errors
    )
    assert base is not None
    assert at is not None
    return ((at - 1000.0) / base - 1.0) / policy.jitter


def test_jitter_spreads_over_its_whole_band_and_differs_by_error_count() -> None:
    policy = Policy(jitter=0.1)
    ids = [f"inst-{n}" for n in range(200)]
    first = [spread(i, 1, policy) for i in ids]
    assert all(0.0 <= s < 1.0 for s in first)
    assert max(first) > 0.9
    assert min(first) < 0.1
    # The same instance lands elsewhere in the band after another error: retries of many
    # instances that failed together do not stay in step.
    second = [spread(i, 2, policy) for i in ids]
    assert sum(a != b for a, b in zip(first, second, strict=True)) > 190
    assert spread("inst-7", 1, policy) == first[7]  # and the same place every time


def test_gbg_wide_pauses_start_at_the_third_failure_in_a_row() -> None:
    assert [gbg_pause(EXACT, n) for n in (1, 2, 3, 4, 100)] == [None, None, 25.0, 30.0, 300.0]


def test_the_policy_is_the_settings_own() -> None:
    settings = Settings(
        webhook_timeout=11.0,
        confirm_delay=2.0,
        poll_interval=3.0,
        poll_error_backoff=4.0,
        poll_max_errors=5,
        poll_max_interval=60.0,
        instance_ttl=7.0,
        webhook_followups=(0.5, 3.0),
    )
    assert Policy.from_settings(settings) == Policy(
        webhook_timeout=11.0,
        confirm_delay=2.0,
        interval=3.0,
        error_backoff=4.0,
        max_errors=5,
        max_interval=60.0,
        ttl=7.0,
        followups=(0.5, 3.0),
    )
