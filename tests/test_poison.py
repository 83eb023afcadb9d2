"""One bad delivery never stops the inbox: tried alone, set aside with its reason, the
rest folded, its instance still polled, and folded again after a fix."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from receiver import usecases
from receiver.domain import reconcile
from receiver.domain.model import Observation, WebhookReceived
from receiver.services import Services
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock
from tests.test_usecase_lines import lines
from tests.test_webhook import URL, basic

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def test_a_delivery_that_cannot_be_folded_is_set_aside_and_the_rest_fold(
    services: Services,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    client = create_app(services=services).test_client()
    usecases.register(services, "poison-1", None)
    clock.advance(services.settings.webhook_timeout + 1)  # due: its webhook is late

    def broken(instance: Any, observation: Observation, now: float, policy: Any) -> Any:
        if isinstance(observation, WebhookReceived) and observation.instance_id == "poison-1":
            raise RuntimeError("a bug in folding")
        return reconcile.decide(instance, observation, now, policy)

    monkeypatch.setattr(usecases, "decide", broken)
    for instance_id in ("ok-1", "poison-1", "ok-2"):
        assert (
            client.post(URL, json={"instanceId": instance_id}, headers=basic()).status_code == 202
        )
    assert usecases.fold_inbox(services) == 2  # the others, past the bad one
    assert services.store.get("ok-1") is not None
    assert services.store.get("ok-2") is not None
    assert services.store.claim_due("w", clock(), 10, 30) == []  # poison-1 waits on its delivery
    assert usecases.fold_inbox(services) == 0
    assert client.get("/api/v1/quarantine", headers=BEARER).get_json()["deliveries"] == []
    assert usecases.fold_inbox(services) == 0  # the third try: set aside
    [aside] = client.get("/api/v1/quarantine", headers=BEARER).get_json()["deliveries"]
    assert (aside["instanceId"], aside["foldTries"]) == ("poison-1", 3)
    assert aside["foldError"] == "RuntimeError: a bug in folding"
    assert lines(caplog, "inbox.fold_failed") == [
        {"delivery_id": aside["id"], "error": "RuntimeError", "quarantined": last}
        for last in (False, False, True)
    ]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^gbg_receiver_inbox_quarantined 1\.0$", metrics, re.M)
    assert re.search(r"^gbg_receiver_inbox_depth 0\.0$", metrics, re.M)
    assert client.post(URL, json={"instanceId": "ok-3"}, headers=basic()).status_code == 202
    assert usecases.fold_inbox(services) == 1  # the inbox folds on
    [claimed] = services.store.claim_due("w", clock(), 10, 30)  # and poison-1 is polled
    assert claimed.instance_id == "poison-1"
    services.store.release("w")

    monkeypatch.setattr(usecases, "decide", reconcile.decide)  # the fix
    assert client.post("/api/v1/quarantine/999/refold", headers=BEARER).status_code == 404
    refolded = client.post(f"/api/v1/quarantine/{aside['id']}/refold", headers=BEARER)
    assert refolded.get_json() == {"id": aside["id"], "refolded": True}
    assert lines(caplog, "inbox.refolded") == [
        {"delivery_id": 999, "deliveries": 0},
        {"delivery_id": aside["id"], "deliveries": 1},
    ]
    again = client.post(f"/api/v1/quarantine/{aside['id']}/refold", headers=BEARER)
    assert again.status_code == 200  # a retry of the same request: still back in the inbox
    assert usecases.fold_inbox(services) == 1
    instance = services.store.get("poison-1")
    assert instance is not None
    assert instance.webhook_received_at is not None
    assert client.get("/api/v1/quarantine", headers=BEARER).get_json()["deliveries"] == []
    folded = client.post(f"/api/v1/quarantine/{aside['id']}/refold", headers=BEARER)
    assert folded.status_code == 404  # folded now: nothing to put back


def test_the_store_going_away_is_not_poison(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from receiver.errors import StoreUnavailable

    client = create_app(services=services).test_client()
    assert client.post(URL, json={"instanceId": "s-1"}, headers=basic()).status_code == 202

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("OperationalError")

    monkeypatch.setattr(usecases, "decide", down)
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            usecases.fold_inbox(services)
    assert services.store.quarantined() == []  # never set aside for our own outage
    monkeypatch.undo()
    assert usecases.fold_inbox(services) == 1


def test_folding_one_by_one_keeps_to_the_batch_size(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(instance: Any, observation: Observation, now: float, policy: Any) -> Any:
        if observation.instance_id == "poison-1":
            raise RuntimeError("a bug in folding")
        return reconcile.decide(instance, observation, now, policy)

    monkeypatch.setattr(usecases, "decide", broken)
    client = create_app(services=services).test_client()
    for instance_id in ("poison-1", "ok-1", "ok-2", "ok-3"):
        assert (
            client.post(URL, json={"instanceId": instance_id}, headers=basic()).status_code == 202
        )
    assert usecases.fold_inbox(services, limit=2) == 1  # the batch's other delivery only
    assert services.store.get("ok-1") is not None
    assert services.store.get("ok-2") is None  # the next batch's
