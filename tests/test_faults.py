"""GBG's faults against a real poller process: GBG's policy holds, truth is reached."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from receiver.domain.model import WebhookReceived
from receiver.migrations import upgrade
from receiver.store import Store
from receiver.testing.simulator import Fault, Simulator
from tests.conftest import apply
from tests.processes import Proc, free_port, gbg_env, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.live]

INTERVAL, BACKOFF, MAX_ERRORS = 2.0, 1.0, 5
READ_TIMEOUT = 0.5  # RECEIVER_GBG_TIMEOUT for these pollers
EXPECTED = [INTERVAL + BACKOFF * n for n in (1, 2, 3)]  # after 3 consecutive errors: 3, 4, 5 s
# A fetch is never sooner than the policy says (CLOCKS: the simulator's and the poller's
# timestamps of one machine, taken a little apart); it may be later by the schedule's
# jitter (2 %) and by the poller's own lateness on a busy machine: LATE, five times the
# worst measured here (0.2 s on the 2-core CI machine, with the suite running).
CLOCKS = 0.05
JITTER = 0.02
LATE = 1.0


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


def answered(sim: Simulator, instance_id: str) -> list[dict[str, Any]]:
    """The fetches of an instance that GBG answered with more than "token expired": a
    401 is sent again at once with a new token, whichever instance's fetch met it."""
    return [c for c in sim.fetches(instance_id) if c["status"] != 401]


def gaps(sim: Simulator, instance_id: str) -> list[float]:
    """From the end of each fetch to the start of the next, as the policy schedules it."""
    calls = answered(sim, instance_id)
    # A request that outlived the read timeout ended, for the poller, at the timeout.
    ends = [min(c["end"], c["start"] + READ_TIMEOUT) for c in calls]
    return [b["start"] - end for end, b in zip(ends, calls[1:], strict=False)]


def within(measured: list[float], expected: list[float]) -> bool:
    return len(measured) == len(expected) and all(
        e - CLOCKS <= m <= e * (1 + JITTER) + LATE for m, e in zip(measured, expected, strict=True)
    )


# Errors about one instance: GBG's policy for that instance, exactly.
FAULTS = {
    "garbage": Fault("garbage", count=3),
    "404": Fault("404", count=3),
}
# Errors about GBG as a whole, whichever instance asks: counted across instances, they
# pause everyone instead (taken in this order by the fetches that meet them).
WIDE = {
    "500": Fault("500", count=2),
    "502": Fault("502", count=2),
    "503": Fault("503", count=1),
    "timeout": Fault("timeout", count=1, delay=1.0),
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
    wait_for(lambda: sim.fetches("f-401"), 10, every=0.2)
    sim.expire_tokens()  # 401 mid-run: one refresh, no error
    sim.set_status("f-401", "Completed")
    wait_for(lambda: all(store.get(f"f-{k}").status == "completed" for k in FAULTS), 40, every=0.2)  # type: ignore[union-attr]
    wait_for(lambda: store.get("f-gone").polling_gave_up, 40, every=0.2)  # type: ignore[union-attr]
    wait_for(lambda: store.get("f-401").status == "completed", 20, every=0.2)  # type: ignore[union-attr]
    measured = {k: gaps(sim, f"f-{k}") for k in FAULTS}
    off = {k: m for k, m in measured.items() if not within(m, EXPECTED)}
    assert off == {}, f"expected {EXPECTED}, never sooner, at most {LATE} s late"
    gone = store.get("f-gone")
    assert gone is not None
    assert (gone.poll_errors, len(answered(sim, "f-gone"))) == (MAX_ERRORS, MAX_ERRORS)
    assert sim.token_requests == 2  # the first token, and one refresh after the 401
    # The expired token is met by the next fetch (f-401's, or another's; two at once are
    # possible): each is sent again, after the one refresh above, and charged nothing.
    assert [c["status"] for c in sim.fetches()].count(401) >= 1
    assert [c["status"] for c in answered(sim, "f-401")] == [200, 200]
    assert store.get("f-401").poll_errors == 0  # type: ignore[union-attr]
    time.sleep(INTERVAL * 2)
    assert len(answered(sim, "f-gone")) == MAX_ERRORS  # given up means no more fetches
    assert poller.stop() == 0
    store.engine.dispose()
    worst = max(
        abs(m - e) / e for ms in measured.values() for m, e in zip(ms, EXPECTED, strict=True)
    )
    figure(
        f"fault matrix: {len(FAULTS)} instance kinds x 3 consecutive errors -> intervals within "
        f"{worst:.1%} of {EXPECTED} s, all completed; give-up after exactly {MAX_ERRORS}; "
        f"{sim.token_requests} token requests incl. one 401 refresh"
    )


def test_gbg_wide_faults_pause_everyone_and_charge_no_instance(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], sim: Simulator, figure
) -> None:
    env = poller_env(tmp_path, sim.base_url, "wide.db")  # type: ignore[attr-defined]
    store = store_for(env)
    for kind, fault in WIDE.items():
        sim.set_status(f"w-{kind}", "Completed")
        sim.add_fault(fault)
    now = time.time()
    for kind in WIDE:
        apply(store, WebhookReceived(f"w-{kind}"), now)
    started = time.monotonic()
    poller = Proc(["poller"], env, tmp_path / "poller.log")
    procs.append(poller)
    wait_for(lambda: all(store.get(f"w-{k}").status == "completed" for k in WIDE), 60, every=0.2)  # type: ignore[union-attr]
    took = time.monotonic() - started
    faults = sum(f.count for f in WIDE.values())
    assert len(sim.fetches()) == faults + len(WIDE)  # every fault met once, then the truth
    ends = [store.get(f"w-{k}") for k in WIDE]
    assert all(e is not None and (e.poll_errors, e.polling_gave_up) == (0, False) for e in ends)
    assert '"gbg.paused"' in poller.log.read_text()
    assert '"gbg.recovered"' in poller.log.read_text()
    assert poller.stop() == 0
    store.engine.dispose()
    figure(
        f"GBG-wide faults: {faults} of {len(WIDE)} kinds on {len(WIDE)} instances -> polling "
        f"paused for all, none given up, all completed in {took:.1f} s"
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
    wait_for(lambda: store.get("r-1").status == "completed", 30, every=0.2)  # type: ignore[union-attr]
    measured = gaps(sim, "r-1")
    assert len(measured) == 2
    assert all(6.0 - CLOCKS <= m <= 6.0 * (1 + JITTER) + LATE for m in measured), measured
    store.engine.dispose()
    figure(
        f"429 Retry-After 6 s: waited {', '.join(f'{m:.2f}' for m in measured)} s, then completed"
    )


def test_gbg_unreachable_for_longer_than_the_error_budget_gives_up_nothing(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], figure
) -> None:
    port = free_port()
    env = poller_env(tmp_path, f"http://127.0.0.1:{port}", "refused.db")
    store = store_for(env)
    apply(store, WebhookReceived("c-1"), time.time())
    procs.append(Proc(["poller"], env, tmp_path / "poller.log"))
    started = time.monotonic()
    # The per-instance budget (5 errors at 3, 4, 5, 6 s: 18 s) runs out well inside this.
    outage = 25.0
    time.sleep(outage)
    during = store.get("c-1")
    assert during is not None
    assert (during.polling_gave_up, during.status) == (False, "in_progress")
    assert during.poll_errors < 3  # only before the failures were known to be GBG's
    back = Simulator()
    back.set_status("c-1", "Completed")
    server = back.server("127.0.0.1", port)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        wait_for(lambda: store.get("c-1").status == "completed", 40, every=0.2)  # type: ignore[union-attr]
    finally:
        server.shutdown()
        server.server_close()
    store.engine.dispose()
    figure(
        f"GBG unreachable {outage:.0f} s (error budget 18 s): never gave up "
        f"({during.poll_errors} errors charged), completed "
        f"{time.monotonic() - started - outage:.1f} s after GBG came back"
    )
