"""Secrets rotated without a gap: the webhook's previous password or key still passes
while it is set; each message is signed with both forward secrets meanwhile."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from receiver.config import Settings
from receiver.downstream import Downstream
from receiver.errors import ConfigError
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from receiver.workers.forwarder import Forwarder
from tests.appserver import SECRET, App, running
from tests.conftest import WEBHOOK_PASS, WEBHOOK_USER, FakeClock, with_settings
from tests.test_forwarding import complete, send

NEW_PASS = "hook-pass-new-3f9a-81cc-20be-77d1"
NEW_KEY = "api-key-new-6d2e-91ab-4c07-e5f3"
OLD_KEY = "api-key-old-0a4c-7be2-1f95-36d8"
NEW_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


def basic(password: str) -> dict[str, str]:
    pair = f"{WEBHOOK_USER}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def test_the_previous_webhook_password_and_key_pass_until_removed(services: Services) -> None:
    with_settings(
        services,
        webhook_password=NEW_PASS,
        webhook_password_previous=WEBHOOK_PASS,
        webhook_api_key=NEW_KEY,
        webhook_api_key_previous=OLD_KEY,
    )
    client = create_app(services=services).test_client()
    hook = {"instanceId": "r-1"}
    for headers in (
        basic(NEW_PASS),
        basic(WEBHOOK_PASS),
        {"X-API-Key": NEW_KEY},
        {"X-API-Key": OLD_KEY},
    ):
        assert client.post("/webhooks/gbg", json=hook, headers=headers).status_code == 202
    assert client.post("/webhooks/gbg", json=hook, headers=basic("x" * 30)).status_code == 401
    with_settings(services, webhook_password_previous=None, webhook_api_key_previous=None)
    after = create_app(services=services).test_client()
    assert after.post("/webhooks/gbg", json=hook, headers=basic(WEBHOOK_PASS)).status_code == 401
    assert after.post("/webhooks/gbg", json=hook, headers={"X-API-Key": OLD_KEY}).status_code == 401
    assert after.post("/webhooks/gbg", json=hook, headers=basic(NEW_PASS)).status_code == 202


def test_each_message_is_signed_with_both_forward_secrets_during_a_rotation() -> None:
    body = '{"type": "journey.completed"}'
    now = datetime.now(UTC)
    both = Downstream("https://app.example/hooks", NEW_SECRET, previous=SECRET)
    signature = " ".join(s.sign("msg_gbgr_1", now, body) for s in both._signers)
    headers = {
        "webhook-id": "msg_gbgr_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert signature.count("v1,") == 2
    for secret in (SECRET, NEW_SECRET):  # the application verifies with either
        assert Webhook(secret).verify(body, headers) == {"type": "journey.completed"}
    alone = Downstream("https://app.example/hooks", NEW_SECRET)
    headers["webhook-signature"] = " ".join(s.sign("msg_gbgr_1", now, body) for s in alone._signers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)  # after the rotation the old key fails


def test_a_forward_during_a_rotation_is_verified_by_an_application_on_the_old_secret() -> None:
    with running(App()) as app:  # the application still verifies with SECRET
        both = Downstream(app.url, NEW_SECRET, previous=SECRET)
        assert (
            both.send(7, json.dumps({"data": {"seq": 7, "instance": {"instanceId": "v-1"}}})).error
            is None
        )
        assert app.unverified == 0
        assert Downstream(app.url, NEW_SECRET).send(8, "{}").error == "http_400"
        assert app.unverified == 1


def test_the_forwarder_signs_with_the_previous_secret_from_the_settings(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App()) as app:  # the application still verifies with SECRET
        with_settings(
            services,
            forward_url=app.url,
            forward_secret=NEW_SECRET,
            forward_secret_previous=SECRET,
        )
        forwarder = Forwarder(services)
        complete(services, sim, clock, "rot-1")
        assert send(forwarder) == ["delivered"]
        assert (len(app.delivered()), app.unverified) == (1, 0)
        forwarder.close()


FORWARD = {"RECEIVER_FORWARD_URL": "https://a.example", "RECEIVER_FORWARD_SECRET": NEW_SECRET}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RECEIVER_WEBHOOK_PASSWORD_PREVIOUS": WEBHOOK_PASS}, "WEBHOOK_PASSWORD_PREVIOUS"),
        (
            {"RECEIVER_WEBHOOK_API_KEY": NEW_KEY, "RECEIVER_WEBHOOK_API_KEY_PREVIOUS": "short"},
            "WEBHOOK_API_KEY_PREVIOUS",
        ),
        (FORWARD | {"RECEIVER_FORWARD_SECRET_PREVIOUS": "whsec_YWJj"}, "FORWARD_SECRET_PREVIOUS"),
    ],
)
def test_a_previous_value_is_checked_like_the_current_one(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env).check_web()
    assert [p.split(":")[0] for p in refused.value.problems] == ["RECEIVER_" + named]
