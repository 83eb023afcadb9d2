"""The composition root: what the web app, the poller and the CLI are built from."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from receiver import httpread, metrics
from receiver.config import Settings
from receiver.domain.schedule import Policy
from receiver.gbg.client import CONNECT_TIMEOUT, GbgClient
from receiver.metrics import Metrics
from receiver.store import Store
from receiver.store.clock import shared_clock
from receiver.store.rate import FetchSlots


@dataclass
class Services:
    settings: Settings
    store: Store
    gbg: GbgClient | None
    policy: Policy
    slots: FetchSlots
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    metrics: Metrics = field(default_factory=lambda: metrics.start(None))

    @property
    def forwarding(self) -> bool:
        """Status changes are sent to the application (RECEIVER_FORWARD_URL is set)."""
        return self.settings.forward_url is not None


def build_services(
    settings: Settings,
    *,
    store: Store | None = None,
    gbg: GbgClient | None = None,
    clock: Callable[[], float] | None = None,
) -> Services:
    """Wire the store and the GBG client from settings; tests inject their own parts."""
    if store is None:
        # Each fetch thread may reserve a rate slot at once; a few more for the jobs.
        connections = max(settings.web_threads, settings.poll_concurrency) + 4
        store = Store.from_url(
            settings.database_url,
            connections=connections,
            pooled=settings.database_pooled,
            inbox_socket=settings.inbox_socket or "",
        )
    if gbg is None and settings.gbg_client_id is not None:
        gbg = GbgClient(
            base_url=settings.gbg_url,
            token_url=settings.gbg_token_url,
            client_id=settings.gbg_client_id,
            client_secret=settings.gbg_client_secret or "",
            username=settings.gbg_username,
            password=settings.gbg_password,
            api_version=settings.gbg_api_version,
            store_pii=settings.store_pii,
            session=gbg_session(settings),
            timeout=(CONNECT_TIMEOUT, settings.gbg_timeout),
        )
    return Services(
        settings,
        store,
        gbg,
        Policy.from_settings(settings),
        FetchSlots(store.db, settings.gbg_rate_limit),
        clock or shared_clock(store.db),
        metrics=metrics.start(settings.metrics_dir),
    )


def gbg_session(settings: Settings) -> requests.Session:
    """An HTTP session for GBG: a connection for every concurrent fetch, proxies read once.

    With ``trust_env`` requests would read the proxy variables again on every call, a
    measurable share of a fetch's CPU; they are read here once instead.
    """
    session = httpread.session(settings.poll_concurrency + 2)
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(settings.gbg_url)
    return session
