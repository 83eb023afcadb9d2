"""GBG's faults against a real poller process: GBG's policy holds, truth is reached."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from receiver.domain.model import WebhookReceived
from receiver.migrations import upgrade
from receiver.store import Store
from receiver.testing.simulator import Fault, Simulator
from tests.conftest import apply
from tests.processes import Proc, free_port, gbg_env

pytestmark = [pytest.mark.reliability, pytest.mark.live]

INTERVAL, BACKOFF, MAX_ERRORS = 2.0, 1.0, 5
READ_TIMEOUT = 0.5  # RECEIVER_GBG_TIMEOUT for these pollers
EXPECTED = [INTERVAL + BACKOFF * n for n in (1, 2, 3)]  # after 3 consecutive errors: 3, 4, 5 s
TOLERANCE = 0.10


def poller_env(tmp_path: Path, gbg: str, name: str) -> dict[str, str]:
    return gbg_env(
        tmp_path,
        gbg,
        RECEIVER_DATABASE_URL=f"sqlite:///{tmp_path / name}",
        RECEIVER_POLL_INTERVAL=str(INTERVAL),
        RECEIVER_POLL_ERROR_BACKOFF=str(BACKOFF),
        RECEIVER_POLL_MAX_ERRORS=str(MAX_ERRORS),
        RECEIVER_GBG_TIMEOUT=str(READ_TIMEOUT),
        RECEIVER_GBG_RATE_LIMIT="100",
    )


def store_for(env: dict[str, str]) -> Store:
    store = Store.from_url(env["RECEIVER_DATABASE_URL"])
    upgrade(store.engine)
    return store


def wait_for(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def gaps(sim: Simulator, instance_id: str) -> list[float]:
    """From the end of each fetch to the start of the next, as the policy schedules it."""
    calls = [c for c in sim.fetches(instance_id) if c["status"] != 401]  # a 401 is re-sent at once
    # A request that outlived the read timeout ended, for the poller, at the timeout.
    ends = [min(c["end"], c["start"] + READ_TIMEOUT) for c in calls]
    return [b["start"] - end for end, b in zip(ends, calls[1:], strict=False)]


def within(measured: list[float], expected: list[float]) -> bool:
    return len(measured) == len(expected) and all(
        abs(m - e) <= TOLERANCE * e for m, e in zip(measured, expected, strict=True)
    )


FAULTS = {
    "500": Fault("500", count=3),
    "502": Fault("502", count=3),
    "503": Fault("503", count=3),
    "timeout": Fault("timeout", count=3, delay=1.0),
    "garbage": Fault("garbage", count=3),
    "404": Fault("404", count=3),
}


def test_fault_matrix_keeps_the_policy_and_reaches_truth(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], sim: Simulator, figure
) -> None:
    env = poller_env(tmp_path, sim.base_url, "faults.db")  # type: ignore[attr-defined]
    store = store_for(env)
    for kind, fault in FAULTS.items():
        sim.set_status(f"f-{kind}", "Completed")
        sim.add_fault(Fault(**{**fault.__dict__, "instance_id": f"f-{kind}"}))
    sim.set_status("f-401", "InProgress")
    sim.set_status("f-gone", "Completed")
    sim.add_fault(Fault("404", count=100, instance_id="f-gone"))  # never answers: give up
    now = time.time()
    for iid in [*(f"f-{k}" for k in FAULTS), "f-401", "f-gone"]:
        apply(store, WebhookReceived(iid), now)
    poller = Proc(["poller"], env, tmp_path / "poller.log")
    procs.append(poller)
    wait_for(lambda: sim.fetches("f-401"), 10)
    sim.expire_tokens()  # 401 mid-run: one refresh, no error
    sim.set_status("f-401", "Completed")
    wait_for(lambda: all(store.get(f"f-{k}").status == "completed" for k in FAULTS), 40)  # type: ignore[union-attr]
    wait_for(lambda: store.get("f-gone").polling_gave_up, 40)  # type: ignore[union-attr]
    wait_for(lambda: store.get("f-401").status == "completed", 20)  # type: ignore[union-attr]
    measured = {k: gaps(sim, f"f-{k}") for k in FAULTS}
    off = {k: m for k, m in measured.items() if not within(m, EXPECTED)}
    assert off == {}, f"expected {EXPECTED} within 10 %"
    gone = store.get("f-gone")
    assert gone is not None
    assert (gone.poll_errors, len(sim.fetches("f-gone"))) == (MAX_ERRORS, MAX_ERRORS)
    assert sim.token_requests == 2  # the first token, and one refresh after the 401
    assert [c["status"] for c in sim.fetches("f-401")] == [200, 401, 200]
    assert store.get("f-401").poll_errors == 0  # type: ignore[union-attr]
    time.sleep(INTERVAL * 2)
    assert len(sim.fetches("f-gone")) == MAX_ERRORS  # given up means no more fetches
    assert poller.stop() == 0
    store.engine.dispose()
    worst = max(
        abs(m - e) / e for ms in measured.values() for m, e in zip(ms, EXPECTED, strict=True)
    )
    figure(
        f"fault matrix: {len(FAULTS)} kinds x 3 consecutive errors -> intervals within "
        f"{worst:.1%} of {EXPECTED} s, all completed; give-up after exactly {MAX_ERRORS}; "
        f"{sim.token_requests} token requests incl. one 401 refresh"
    )


def test_retry_after_of_429_is_honoured(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], sim: Simulator, figure
) -> None:
    env = poller_env(tmp_path, sim.base_url, "429.db")  # type: ignore[attr-defined]
    store = store_for(env)
    sim.set_status("r-1", "Completed")
    sim.add_fault(Fault("429", count=2, retry_after=6, instance_id="r-1"))
    apply(store, WebhookReceived("r-1"), time.time())
    procs.append(Proc(["poller"], env, tmp_path / "poller.log"))
    wait_for(lambda: store.get("r-1").status == "completed", 30)  # type: ignore[union-attr]
    measured = gaps(sim, "r-1")
    assert len(measured) == 2
    assert all(6.0 <= m <= 6.0 * (1 + TOLERANCE) for m in measured), measured
    store.engine.dispose()
    figure(
        f"429 Retry-After 6 s: waited {', '.join(f'{m:.2f}' for m in measured)} s, then completed"
    )


def test_connection_refused_gives_up_at_the_maximum(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], figure
) -> None:
    env = poller_env(tmp_path, f"http://127.0.0.1:{free_port()}", "refused.db")
    store = store_for(env)
    apply(store, WebhookReceived("c-1"), time.time())
    procs.append(Proc(["poller"], env, tmp_path / "poller.log"))
    started = time.monotonic()
    wait_for(lambda: store.get("c-1").polling_gave_up, 40)  # type: ignore[union-attr]
    gave_up = store.get("c-1")
    assert gave_up is not None
    assert (gave_up.poll_errors, gave_up.status, gave_up.next_poll_at) == (
        MAX_ERRORS,
        "in_progress",
        None,
    )
    store.engine.dispose()
    figure(
        f"GBG unreachable: gave up after exactly {gave_up.poll_errors} errors in "
        f"{time.monotonic() - started:.1f} s; instance stays in_progress, not lost"
    )
