"""Fixtures: settings on a temporary SQLite file, the store on SQLite and PostgreSQL,
the simulator on an ephemeral port, services wired to both, the app and its client."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from receiver import usecases
from receiver.config import Settings
from receiver.domain.model import Decision, Observation
from receiver.domain.schedule import Policy
from receiver.gbg.client import GbgClient
from receiver.migrations import upgrade
from receiver.services import Services, build_services
from receiver.store import Store
from receiver.store.engine import make_engine
from receiver.store.schema import metadata, rate_limits
from receiver.testing.simulator import Simulator
from receiver.web import create_app

if TYPE_CHECKING:
    from tests.processes import Proc

pytest_plugins = ["tests.proxy"]  # the nginx fixture

PG_URL = os.environ.get("RECEIVER_TEST_DATABASE_URL")
WEBHOOK_USER = "gbg-hook"
WEBHOOK_PASS = "hook-pass-5e1f-b27c-90ad-41f3"  # secrets of ours: 24 characters at least
API_TOKEN = "api-token-9c2d-6e0a-b83f-17c5"
# The contract's instance shape: exactly these keys.
INSTANCE_FIELDS = {
    "instanceId",
    "reference",
    "steps",
    "instanceUrl",
    "status",
    "gbgStatus",
    "outcome",
    "result",
    "journey",
    "registeredAt",
    "webhookReceivedAt",
    "lastPolledAt",
    "completedAt",
    "nextPollAt",
    "pollErrors",
    "pollingGaveUp",
    "lastError",
    "webhookClaim",
    "source",
    "updatedAt",
}


class FakeClock:
    """Wall-clock time the test moves by hand; sleeping advances it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'receiver.db'}",
        webhook_username=WEBHOOK_USER,
        webhook_password=WEBHOOK_PASS,
        api_tokens=(API_TOKEN,),
        gbg_client_id="sim-client",
        gbg_client_secret="sim-secret",
    )


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[sa.Engine]:
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: set RECEIVER_TEST_DATABASE_URL")
        pytest.skip("RECEIVER_TEST_DATABASE_URL is not set")
    engine = make_engine(PG_URL)
    upgrade(engine)
    yield engine
    engine.dispose()


def empty_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name in (
            "deliveries",
            "outbox",
            "attempts",
            "events",
            "instances",
            "revoked_sessions",
            "idempotency_keys",
            "workers",
        ):
            conn.execute(metadata.tables[name].delete())
        conn.execute(rate_limits.update().values(tat=0.0, failures=0, paused_until=None))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, settings: Settings) -> str:
    if request.param == "sqlite":
        return settings.database_url
    engine = request.getfixturevalue("pg_engine")
    empty_tables(engine)
    assert PG_URL
    return PG_URL


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store.from_url(database_url)
    upgrade(store.engine)
    yield store
    store.engine.dispose()


def apply(
    store: Store,
    observation: Observation,
    now: float,
    policy: Policy | None = None,
    *,
    lease_owner: str | None = None,
) -> Decision:
    """Fold one observation into the store, as every path does."""
    [decision] = usecases.fold(
        store, policy or Policy(), [(observation, now)], lease_owner=lease_owner, forward=False
    )
    return decision


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator()
    server = simulator.server()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    simulator.base_url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    yield simulator
    server.shutdown()
    server.server_close()


def gbg_client(sim: Simulator, **overrides: object) -> GbgClient:
    base = sim.base_url  # type: ignore[attr-defined]
    options: dict[str, object] = {
        "base_url": base,
        "token_url": f"{base}/as/token.oauth2",
        "client_id": "sim-client",
        "client_secret": "sim-secret",
        "timeout": (1.0, 2.0),
    }
    options.update(overrides)
    return GbgClient(**options)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_services(settings: Settings, store: Store, clock: FakeClock) -> Services:
    """Services over the store alone: for use cases that never call GBG."""
    built = build_services(settings, store=store, clock=clock)
    built.sleep = clock.sleep
    return built


@pytest.fixture
def services(settings: Settings, store: Store, sim: Simulator, clock: FakeClock) -> Services:
    built = build_services(settings, store=store, gbg=gbg_client(sim), clock=clock)
    built.sleep = clock.sleep
    return built


@pytest.fixture
def app(services: Services):  # type: ignore[no-untyped-def]
    return create_app(services=services)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


def with_settings(services: Services, **changes: object) -> Services:
    """The same services with some settings changed (and the policy that follows)."""
    settings = replace(services.settings, **changes)  # type: ignore[arg-type]
    services.settings = settings
    services.policy = replace(Policy.from_settings(settings), jitter=services.policy.jitter)
    return services


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; any still running at the end are killed with their group,
    and so are their children's groups (serve starts each child in a session of its own)."""
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.popen.poll() is None:
            for pid in [*_descendants(proc.popen.pid), proc.popen.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            proc.popen.wait()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    children = [int(p) for p in found]
    return children + [d for child in children for d in _descendants(child)]


FIGURES: list[str] = []


@pytest.fixture
def figure():  # type: ignore[no-untyped-def]
    """Record one figure line of a reliability test; all are printed at the end of the run."""

    def record(line: str) -> None:
        FIGURES.append(line)

    return record


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
