"""Secrets are compared in constant time: checked by the comparison each check uses
(hmac.compare_digest, on every configured secret, whatever matched or failed first),
not by timing requests, which says little on a busy machine."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from receiver.services import Services
from receiver.web import create_app
from tests.conftest import API_TOKEN, WEBHOOK_PASS, WEBHOOK_USER, with_settings

SECOND = "second-token-of-24-chars-or-more"
KEY = "an-api-key-of-24-chars-or-more"

Calls = list[tuple[bytes, bytes]]


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every call to hmac.compare_digest from here on, as bytes."""
    calls: Calls = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes | str, b: bytes | str) -> bool:
        calls.append(
            (a.encode() if isinstance(a, str) else a, b.encode() if isinstance(b, str) else b)
        )
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def hook(client: FlaskClient, headers: dict[str, str]) -> int:
    return client.post("/webhooks/gbg", json={"instanceId": "ct-1"}, headers=headers).status_code


def test_basic_auth_compares_user_and_password_every_time(
    services: Services, compared: Calls
) -> None:
    client = create_app(services=services).test_client()
    for user, password, expected in (
        (WEBHOOK_USER, WEBHOOK_PASS, 202),
        ("someone-else", WEBHOOK_PASS, 401),  # a wrong user does not skip the password
        (WEBHOOK_USER, "a-wrong-password", 401),
        ("", "", 401),
    ):
        compared.clear()
        assert hook(client, basic(user, password)) == expected
        assert compared == [
            (user.encode(), WEBHOOK_USER.encode()),
            (password.encode(), WEBHOOK_PASS.encode()),
        ]
    compared.clear()
    assert hook(client, {"Authorization": "Bearer x"}) == 401  # no Basic: still both compared
    assert [expected for _, expected in compared] == [WEBHOOK_USER.encode(), WEBHOOK_PASS.encode()]


def test_an_api_key_is_compared_in_both_forms_every_time(
    services: Services, compared: Calls
) -> None:
    with_settings(services, webhook_username=None, webhook_password=None, webhook_api_key=KEY)
    client = create_app(services=services).test_client()
    as_basic = "Basic " + base64.b64encode(KEY.encode()).decode()
    for presented, expected in ((KEY, 202), (as_basic, 202), ("wrong", 401)):
        compared.clear()
        assert hook(client, {"X-API-Key": presented}) == expected
        assert compared == [
            (presented.encode(), KEY.encode()),
            (presented.encode(), as_basic.encode()),
        ]


def test_api_tokens_are_all_compared_whichever_matches(services: Services, compared: Calls) -> None:
    with_settings(services, api_tokens=(API_TOKEN, SECOND))
    client = create_app(services=services).test_client()
    for presented, expected in ((API_TOKEN, 200), (SECOND, 200), ("wrong", 401)):
        compared.clear()
        answer = client.get("/api/v1/events", headers={"Authorization": f"Bearer {presented}"})
        assert answer.status_code == expected
        assert compared == [
            (presented.encode(), API_TOKEN.encode()),
            (presented.encode(), SECOND.encode()),
        ]


def test_dashboard_sign_in_compares_every_token(services: Services, compared: Calls) -> None:
    with_settings(services, api_tokens=(API_TOKEN, SECOND))
    client = create_app(services=services).test_client()
    page = client.get("/dashboard/signin").get_data(as_text=True)
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    compared.clear()
    answer = client.post("/dashboard/signin", data={"token": API_TOKEN, "csrf": csrf})
    assert answer.status_code == 303
    assert (csrf.encode(), csrf.encode()) in compared  # the CSRF token too
    assert (API_TOKEN.encode(), API_TOKEN.encode()) in compared
    assert (API_TOKEN.encode(), SECOND.encode()) in compared  # the first match ends nothing
