"""gunicorn behind a real nginx (deploy/nginx/gbg-receiver.conf) on loopback ports."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.conftest import API_TOKEN
from tests.processes import HOOK, Proc
from tests.proxy import CLIENT, through_nginx

pytestmark = pytest.mark.live


def accepted_event(web: Proc, instance_id: str) -> dict[str, object]:
    for line in web.log.read_text().splitlines():
        if line.startswith("{") and '"webhook.accepted"' in line:
            event = json.loads(line)
            if event["instance_id"] == instance_id:
                return event
    raise AssertionError(f"no webhook.accepted for {instance_id}")


def test_app_sees_the_client_and_scheme_and_no_forged_hop(nginx) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"instanceId": "via-nginx-1"}).encode()
    status, _, _ = through_nginx(
        nginx["https"],
        "POST",
        "/webhooks/gbg",
        body,
        {
            **HOOK,
            "Content-Type": "application/json",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Port": "1",
        },
    )
    assert status == 202
    event = accepted_event(nginx["web"], "via-nginx-1")
    assert (event["peer"], event["scheme"]) == (CLIENT, "https")
    assert event["host"] == f"127.0.0.1:{nginx['https']}"  # nginx's port, not the forged one


def test_hsts_and_a_per_client_rate_limit_answered_as_a_problem(nginx) -> None:  # type: ignore[no-untyped-def]
    answers = [through_nginx(nginx["https"], "GET", "/healthz") for _ in range(20)]
    assert all(h["Strict-Transport-Security"] == "max-age=63072000" for _, h, _ in answers)
    limited = [(h, text) for status, h, text in answers if status == 429]
    assert 8 <= len(answers) - len(limited) <= 11  # the burst, and a second's refill or two
    headers, text = limited[0]
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Retry-After"] == "1"
    assert json.loads(text)["status"] == 429


def test_oversized_body_is_413_problem_at_the_proxy(nginx) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"instanceId": "big-1", "pad": "x" * (2 << 20)}).encode()
    status, headers, text = through_nginx(
        nginx["https"], "POST", "/webhooks/gbg", body, {**HOOK, "Content-Type": "application/json"}
    )
    assert status == 413
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(text)["status"] == 413


def test_webhook_and_api_work_through_the_proxy(nginx) -> None:  # type: ignore[no-untyped-def]
    api = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    created = through_nginx(
        nginx["https"],
        "POST",
        "/api/v1/instances",
        json.dumps({"instanceId": "api-1"}).encode(),
        api,
    )
    assert created[0] == 201
    status, headers, text = through_nginx(
        nginx["https"],
        "GET",
        "/api/v1/instances/api-1",
        headers={**api, "X-Request-ID": "trace-77"},
    )
    assert status == 200
    assert json.loads(text)["instanceId"] == "api-1"
    assert headers["X-Request-ID"] == "trace-77"
    assert through_nginx(nginx["https"], "GET", "/healthz")[0] == 200


def test_metrics_and_readiness_are_not_public(nginx) -> None:  # type: ignore[no-untyped-def]
    assert through_nginx(nginx["https"], "GET", "/metrics")[0] == 403
    assert through_nginx(nginx["https"], "GET", "/readyz")[0] == 403
    direct = http.client.HTTPConnection("127.0.0.1", nginx["app"], timeout=10)
    direct.request("GET", "/metrics")
    assert direct.getresponse().status == 200
    direct.close()


def test_the_dashboard_answers_internal_addresses_only(nginx) -> None:  # type: ignore[no-untyped-def]
    for path in ("/dashboard/", "/dashboard/signin", "/dashboard"):
        assert through_nginx(nginx["https"], "GET", path)[0] == 403
    status, headers, page = through_nginx(
        nginx["https"], "GET", "/dashboard/signin", client="127.0.0.1"
    )
    assert status == 200
    assert b"API token" in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    assert "Secure" in headers["Set-Cookie"].split("; ")  # the form's CSRF token's session
    status, headers, _ = through_nginx(nginx["https"], "GET", "/dashboard/", client="127.0.0.1")
    assert (status, headers["Location"]) == (302, "/dashboard/signin?next=/dashboard/")


def test_plain_http_redirects_to_https(nginx) -> None:  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection("127.0.0.1", nginx["http"], timeout=10)
    conn.request("POST", "/webhooks/gbg", body=b"{}")
    answer = conn.getresponse()
    conn.close()
    assert answer.status == 308
    assert answer.getheader("Location", "").startswith("https://")


def test_the_access_log_keeps_no_query_string(nginx) -> None:  # type: ignore[no-untyped-def]
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    status, _, _ = through_nginx(
        nginx["https"], "GET", "/api/v1/instances?reference=jane.doe%40example.com", None, api
    )
    assert status == 200
    through_nginx(nginx["https"], "GET", "/dashboard/signin?next=/dashboard/instances/x-1")
    log = (nginx["logs"] / "site-access.log").read_text()
    assert '"GET /api/v1/instances HTTP/1.1" 200' in log
    assert "jane.doe" not in log
    assert "x-1" not in log


def test_a_body_up_to_the_limit_is_never_spooled_to_disk(nginx) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"instanceId": "kept-in-memory", "pad": "x" * 900_000}).encode()
    status, _, _ = through_nginx(
        nginx["https"], "POST", "/webhooks/gbg", body, {**HOOK, "Content-Type": "application/json"}
    )
    assert status == 202
    errors = (nginx["logs"] / "nginx-error.log").read_text()
    assert "buffered to a temporary file" not in errors
    assert not any((nginx["logs"] / "client_body").iterdir())


def test_the_site_answers_over_ipv6_too(nginx) -> None:  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection("::1", nginx["http"], timeout=10)
    conn.request("GET", "/healthz")
    answer = conn.getresponse()
    conn.close()
    assert answer.status == 308
