"""The composition root: what the web app, the poller and the CLI are built from."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from receiver import metrics
from receiver.config import Settings
from receiver.gbg import CONNECT_TIMEOUT, GbgClient
from receiver.metrics import Metrics
from receiver.schedule import Policy
from receiver.store import Store

log = logging.getLogger("receiver.services")


@dataclass
class Services:
    settings: Settings
    store: Store
    gbg: GbgClient | None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    metrics: Metrics = field(default_factory=lambda: metrics.start(None))


def build_services(
    settings: Settings,
    *,
    store: Store | None = None,
    gbg: GbgClient | None = None,
    clock: Callable[[], float] | None = None,
) -> Services:
    """Wire the store and the GBG client from settings; tests inject their own parts."""
    if settings.forward_url is not None:
        log.warning("forward.not_available", extra={"variable": "RECEIVER_FORWARD_URL"})
    if store is None:
        store = Store.from_url(settings.database_url, Policy.from_settings(settings))
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
            session=requests.Session(),
            timeout=(CONNECT_TIMEOUT, settings.gbg_timeout),
        )
    return Services(
        settings, store, gbg, clock or time.time, metrics=metrics.start(settings.metrics_dir)
    )
