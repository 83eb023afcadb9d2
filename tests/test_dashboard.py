"""The operator's dashboard through Flask's test client: signing in, what each page
shows, the actions, and what it refuses. The browser tests are in test_dashboard_browser."""

from __future__ import annotations

import base64
import logging
import re
import time
import zlib
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from receiver import liveness, usecases
from receiver.domain.model import Fetched, GbgState, TtlPassed, WebhookReceived
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock, with_settings
from tests.test_poller import poll_once

OTHER_TOKEN = "another-token-of-24-chars-or-more"


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: FlaskClient, token: str = API_TOKEN) -> Any:
    form = client.get("/dashboard/signin").get_data(as_text=True)
    return client.post("/dashboard/signin", data={"token": token, "csrf": csrf(form)})


def page(client: FlaskClient, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def post(client: FlaskClient, path: str, from_page: str) -> Any:
    return client.post(path, data={"csrf": csrf(page(client, from_page))})


def figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">([^<]*)<', html)
    assert found, name
    return found.group(1).strip()


def failed_forward(services: Services, instance_id: str) -> int:
    """Mark the instance's first pending message failed, as after its last attempt."""
    owner, now = "test", services.clock()
    [message] = [
        m
        for m in services.store.claim_messages(owner, now, 100, 30)
        if m.instance_id == instance_id
    ]
    services.store.record_attempt(
        message.seq, owner, now=now, error="http_500", next_attempt_at=None
    )
    services.store.release_messages(owner)
    return message.seq


@pytest.fixture
def client(services: Services) -> FlaskClient:
    return create_app(services=services).test_client()


def test_every_page_asks_for_a_sign_in_first(client: FlaskClient) -> None:
    for path in ("/dashboard/", "/dashboard/instances", "/dashboard/instances/x-1"):
        answer = client.get(path)
        assert answer.status_code == 302
        assert answer.headers["Location"] == f"/dashboard/signin?next={path}"
    assert client.post("/dashboard/instances/x-1/poll").status_code == 302
    assert client.get("/dashboard").status_code == 308  # to /dashboard/


def test_a_token_signs_in_to_a_cookie_that_does_not_hold_it(client: FlaskClient) -> None:
    form = client.get("/dashboard/signin?next=/dashboard/instances")
    assert form.status_code == 200
    answer = client.post(
        "/dashboard/signin",
        data={
            "token": API_TOKEN,
            "csrf": csrf(form.get_data(as_text=True)),
            "next": "/dashboard/instances",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/dashboard/instances"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("__Secure-gbgr-dashboard=")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/dashboard"):
        assert flag in cookie.split("; ")
    # Kept across a browser restart, for the session's 8 h (not Flask's default month).
    [expires] = [f.removeprefix("Expires=") for f in cookie.split("; ") if f.startswith("Expires=")]
    left = parsedate_to_datetime(expires).timestamp() - time.time()
    assert 8 * 3600 - 60 < left <= 8 * 3600
    value = cookie.split(";")[0].split("=", 1)[1]
    compressed, payload = value.startswith("."), value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    content = zlib.decompress(raw) if compressed else raw
    assert b'"who"' in content
    assert API_TOKEN.encode() not in content
    assert "Overview" in page(client, "/dashboard/")


def test_a_wrong_token_is_refused_and_starts_no_session(client: FlaskClient) -> None:
    answer = sign_in(client, "not-the-token-at-all-not-at-all")
    assert answer.status_code == 401
    assert "That token is not accepted." in answer.get_data(as_text=True)
    assert client.get("/dashboard/").status_code == 302
    assert sign_in(client, API_TOKEN + "x").status_code == 401  # a prefix is not enough


def test_signing_in_and_every_action_need_the_forms_csrf_token(
    services: Services, client: FlaskClient
) -> None:
    refused = client.post("/dashboard/signin", data={"token": API_TOKEN})
    assert refused.status_code == 400
    assert client.get("/dashboard/").status_code == 302
    assert sign_in(client).status_code == 303
    usecases.register(services, "c-1", None)
    for path in (
        "/dashboard/instances/c-1/poll",
        "/dashboard/instances/c-1/resume",
        "/dashboard/instances/c-1/erase",
        "/dashboard/outbox/1/replay",
        "/dashboard/signout",
    ):
        for data in ({}, {"csrf": "forged"}):
            answer = client.post(path, data=data)
            assert answer.status_code == 400, path
            said = "<p>the form&#39;s CSRF token is missing or out of date: reload the page</p>"
            assert said in answer.get_data(as_text=True)
    assert services.store.get("c-1").last_polled_at is None  # type: ignore[union-attr]
    assert client.get("/dashboard/").status_code == 200  # still signed in


def test_signing_out_ends_the_session(client: FlaskClient) -> None:
    sign_in(client)
    answer = post(client, "/dashboard/signout", "/dashboard/")
    assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard/signin")
    assert client.get("/dashboard/").status_code == 302


def test_signing_out_revokes_the_session_on_every_host(
    services: Services, client: FlaskClient
) -> None:
    sign_in(client)
    saved = client.get_cookie("__Secure-gbgr-dashboard", path="/dashboard")
    assert saved is not None
    other_host = create_app(services=services).test_client()  # another process, same store
    other_host.set_cookie(saved.key, saved.value, path="/dashboard")
    assert other_host.get("/dashboard/").status_code == 200
    post(client, "/dashboard/signout", "/dashboard/")
    assert other_host.get("/dashboard/").status_code == 302  # the copy opens nothing now
    client.set_cookie(saved.key, saved.value, path="/dashboard")
    assert client.get("/dashboard/").status_code == 302
    sign_in(client)  # a new sign-in is a new session
    assert client.get("/dashboard/").status_code == 200


def test_a_session_ends_after_eight_hours_or_when_its_token_is_removed(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    sign_in(client)
    clock.advance(8 * 3600)
    assert client.get("/dashboard/").status_code == 200  # 8 h to the second
    clock.advance(1)
    assert client.get("/dashboard/").status_code == 302
    sign_in(client)
    cookie = client.get_cookie("__Secure-gbgr-dashboard", path="/dashboard")
    assert cookie is not None
    with_settings(services, api_tokens=(OTHER_TOKEN,))
    rotated = create_app(services=services).test_client()
    rotated.set_cookie(cookie.key, cookie.value, path="/dashboard")
    assert rotated.get("/dashboard/").status_code == 302
    assert sign_in(rotated, API_TOKEN).status_code == 401
    assert sign_in(rotated, OTHER_TOKEN).status_code == 303


def test_a_revocation_outlives_a_purge_while_its_cookie_could_be_used(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    sign_in(client)
    saved = client.get_cookie("__Secure-gbgr-dashboard", path="/dashboard")
    assert saved is not None
    sid = session_of(client)["sid"]
    clock.advance(3600)
    post(client, "/dashboard/signout", "/dashboard/")
    services.store.purge(clock())  # everything that lapsed before now
    client.set_cookie(saved.key, saved.value, path="/dashboard")
    assert client.get("/dashboard/").status_code == 302
    services.store.purge(clock() + 7 * 3600 + 1)  # the cookie has lapsed: so may its revocation
    assert not services.store.session_revoked(sid)


def session_of(client: FlaskClient) -> dict[str, Any]:
    with client.session_transaction("/dashboard/") as session:
        return dict(session)


@pytest.mark.parametrize(
    "kept",
    [{"who": "x"}, {"who": "x", "since": "yesterday", "sid": "s-1"}, {"sid": "s-1"}, {}],
)
def test_a_session_missing_its_fields_opens_nothing(
    client: FlaskClient, kept: dict[str, Any]
) -> None:
    """A cookie an earlier release wrote (signed with the same key) lacks fields."""
    page(client, "/dashboard/signin")  # a session with a CSRF token, as before sign-out
    with client.session_transaction("/dashboard/") as session:
        session.update(kept)
    assert client.get("/dashboard/").status_code == 302  # to the sign-in page, not a 500
    assert client.get("/dashboard/instances").status_code == 302


def test_signing_in_is_logged_with_the_peer_and_never_the_token(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sign_in(client, "not-the-token-at-all-not-at-all")
    sign_in(client)
    lines = [(r.getMessage(), r.levelname, getattr(r, "peer", None)) for r in caplog.records]
    assert ("dashboard.signin_refused", "WARNING", "127.0.0.1") in lines
    assert ("dashboard.signed_in", "INFO", "127.0.0.1") in lines
    assert API_TOKEN not in caplog.text


def test_with_two_tokens_either_signs_in(services: Services) -> None:
    with_settings(services, api_tokens=(API_TOKEN, OTHER_TOKEN))
    for token in (API_TOKEN, OTHER_TOKEN):
        client = create_app(services=services).test_client()
        assert sign_in(client, token).status_code == 303
        assert client.get("/dashboard/").status_code == 200, token


def test_without_api_tokens_nobody_signs_in(services: Services) -> None:
    with_settings(services, api_tokens=())
    client = create_app(services=services).test_client()
    assert sign_in(client, "").status_code == 401
    assert sign_in(client, API_TOKEN).status_code == 401


def test_pages_forbid_inline_scripts_and_framing(services: Services, client: FlaskClient) -> None:
    sign_in(client)
    usecases.register(services, "h-1", None)
    pages = ("/dashboard/signin", "/dashboard/", "/dashboard/instances", "/dashboard/instances/h-1")
    for path in pages:
        answer = client.get(path)
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Frame-Options"] == "DENY"
        html = answer.get_data(as_text=True)
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
        assert " style=" not in html
        assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers


def test_the_webhook_and_the_api_never_touch_the_session(client: FlaskClient) -> None:
    sign_in(client)
    for path in ("/api/v1/instances", "/readyz"):
        answer = client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 200
        assert "Set-Cookie" not in answer.headers
        assert "Cookie" not in answer.headers.get("Vary", "")
    # The cookie is not a credential for the API.
    assert client.get("/api/v1/instances").status_code == 401


def test_next_only_leads_within_the_dashboard(client: FlaskClient) -> None:
    for target in (
        "https://evil.example/",
        "//evil.example/x",
        "/api/v1/instances",
        "//evil.example/dashboard/",  # another host, a dashboard-looking path
        "javascript:/dashboard/",  # a scheme with no host
    ):
        form = client.get("/dashboard/signin").get_data(as_text=True)
        answer = client.post(
            "/dashboard/signin", data={"token": API_TOKEN, "csrf": csrf(form), "next": target}
        )
        assert answer.headers["Location"] == "/dashboard/", target


def test_the_overview_counts_what_the_store_holds(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    with_settings(services, forward_url="http://127.0.0.1:9/hook", forward_secret="s" * 32)
    for n in range(3):
        usecases.register(services, f"o-{n}", None)
    usecases.observe(services, Fetched("o-0", GbgState("completed", "Completed")), clock())
    usecases.observe(services, TtlPassed("o-1"), clock() + 10 * 86400)
    failed_forward(services, "o-0")
    liveness.beat(services, "host:1:aaaa")  # a worker runs: no warning for want of one
    sign_in(client)
    html = page(client, "/dashboard/")
    assert figure(html, "in_progress") == "1"
    assert figure(html, "completed") == "1"
    assert figure(html, "expired") == "1"
    assert figure(html, "failed") == "0"
    assert figure(html, "failed_forwards") == "1"
    assert figure(html, "gbg") == "ok"
    assert "Webhook 0 · poll 1 · operator 0" in html  # o-0's fetch ended it
    assert 'role="alert"' not in html


def endings(services: Services, source: str, count: int, at: float) -> None:
    for _ in range(count):
        instance_id = f"e-{source}-{at}-{_}"
        if source == "webhook":
            usecases.observe(services, WebhookReceived(instance_id, "Completed"), at - 1)
        else:
            usecases.register(services, instance_id, None)
        usecases.observe(services, Fetched(instance_id, GbgState("completed", "Completed")), at)


def test_the_overview_warns_when_polling_finds_a_rising_share_of_endings(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    now = clock()
    endings(services, "webhook", 9, now - 10 * 3600)  # the day before: webhooks found them
    endings(services, "poll", 1, now - 10 * 3600)
    endings(services, "webhook", 4, now - 3600)  # the last hours: polling found most
    endings(services, "poll", 6, now - 3600)
    endings(services, "poll", 5, now - 30 * 3600)  # older than a day: not counted
    sign_in(client)
    html = page(client, "/dashboard/")
    assert "Webhook 13 · poll 7 · operator 0" in html
    assert "polling found 35 %" in html
    assert re.search(r"Polling found 60% of the endings in the last 3 h \(10% in the 21 h", html)
    assert html.count('class="webhook"') == 2  # two hours with bars
    assert html.count('class="poll"') == 2
    clock.advance(4 * 3600)  # the recent hours have passed: nothing recent to judge
    assert "Polling found" not in page(client, "/dashboard/")


def test_the_overview_shows_polling_paused_while_gbg_fails(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    for _ in range(3):
        services.store.gbg_failed(clock(), lambda streak: 90.0 if streak >= 3 else None)
    sign_in(client)
    html = page(client, "/dashboard/")
    assert figure(html, "gbg") == "paused"
    assert "Polling is paused for 90 s: GBG failed 3 times in a row." in html


def test_instances_filter_and_page_with_a_cursor(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    for n in range(60):
        clock.advance(1)
        usecases.register(services, f"p-{n:02}", "shop-a" if n % 2 else "shop-b")
    usecases.observe(services, Fetched("p-07", GbgState("failed", "Failed")), clock())
    sign_in(client)
    first = page(client, "/dashboard/instances")
    shown = re.findall(r'href="/dashboard/instances/(p-\d\d)"', first)
    assert shown == [f"p-{n:02}" for n in range(59, 9, -1)]  # newest first, 50
    nxt = re.search(r'rel="next" href="([^"]+)"', first)
    assert nxt
    second = page(client, nxt.group(1).replace("&amp;", "&"))
    assert re.findall(r'href="/dashboard/instances/(p-\d\d)"', second) == [
        f"p-{n:02}" for n in range(9, -1, -1)
    ]
    assert 'rel="next"' not in second
    failed = page(client, "/dashboard/instances?status=failed")
    assert re.findall(r'href="/dashboard/instances/(p-\d\d)"', failed) == ["p-07"]
    assert '<option value="failed" selected>' in failed
    shop = page(client, "/dashboard/instances?reference=shop-a&status=in_progress")
    assert len(re.findall(r'href="/dashboard/instances/(p-\d\d)"', shop)) == 29
    assert page(client, "/dashboard/instances?givenUp=true").count("No instances match") == 1
    bad = client.get("/dashboard/instances?status=sideways")
    assert bad.status_code == 400
    assert "status: one of" in bad.get_data(as_text=True)
    assert bad.mimetype == "text/html"


def test_an_instance_page_shows_its_timeline_deliveries_and_forwards_without_pii(
    services: Services, client: FlaskClient, sim: Simulator, clock: FakeClock
) -> None:
    with_settings(services, forward_url="http://127.0.0.1:9/hook", forward_secret="s" * 32)
    sim.create("i-1", subject={"firstName": "Zebedee", "lastName": "Quixote"})
    usecases.register(services, "i-1", "order-9")
    body = b'{"instanceId": "i-1", "status": "Completed", "firstName": "Zebedee"}'
    hooked = client.post(
        "/webhooks/gbg",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": _basic()},
    )
    assert hooked.status_code == 202
    usecases.fold_inbox(services)
    sim.set_status("i-1", "Completed", "Of Age")
    clock.advance(services.settings.confirm_delay + 1)
    poll_once(services)
    seq = failed_forward(services, "i-1")
    sign_in(client)
    html = page(client, "/dashboard/instances/i-1")
    assert figure(html, "status") == "completed"
    assert "Of Age" in html
    assert "order-9" in html
    assert "first known (reference order-9)" in html
    assert (
        "in progress → <strong>completed</strong>, decided by a state fetch that a webhook prompted"
        in html
    )
    assert "fetch: GBG says " in html  # the fetch that decided, before its status change
    assert "claims Completed" in html
    assert f"msg_gbgr_{seq}" in html
    assert "http_500" in html
    assert html.count(">Replay</button>") == 1
    assert "Zebedee" not in html
    assert "Quixote" not in html
    assert "Authorization" not in html  # headers are allow-listed


def _basic() -> str:
    from tests.processes import HOOK

    return HOOK["Authorization"]


def test_poll_now_fetches_and_says_what_gbg_answered(
    services: Services, client: FlaskClient, sim: Simulator
) -> None:
    sim.set_status("a-1", "Completed", "Of Age")
    usecases.register(services, "a-1", None)
    sign_in(client)
    answer = post(client, "/dashboard/instances/a-1/poll", "/dashboard/instances/a-1")
    assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard/instances/a-1")
    html = page(client, "/dashboard/instances/a-1")
    assert "Polled: GBG says Completed." in html
    assert figure(html, "status") == "completed"
    assert services.store.get("a-1").source == "api"  # type: ignore[union-attr]


def test_poll_now_says_why_when_gbg_is_not_asked(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    usecases.register(services, "a-2", None)
    for _ in range(3):
        services.store.gbg_failed(clock(), lambda streak: 60.0 if streak >= 3 else None)
    sign_in(client)
    post(client, "/dashboard/instances/a-2/poll", "/dashboard/instances/a-2")
    html = page(client, "/dashboard/instances/a-2")
    assert "Not polled: polling is paused while GBG fails; try again in" in html
    services.gbg = None
    post(client, "/dashboard/instances/a-2/poll", "/dashboard/instances/a-2")
    assert "Not polled: GBG is not configured." in page(client, "/dashboard/instances/a-2")


def test_resume_polls_again_an_instance_that_gave_up(
    services: Services, client: FlaskClient, sim: Simulator, clock: FakeClock
) -> None:
    with_settings(services, poll_max_errors=1)
    usecases.register(services, "r-1", None)  # GBG does not know it: 404, an error
    usecases.register(services, "r-2", None)
    clock.advance(services.settings.webhook_timeout + 1)
    poll_once(services)
    assert services.store.get("r-1").polling_gave_up  # type: ignore[union-attr]
    sign_in(client)
    html = page(client, "/dashboard/instances/r-1")
    assert ">Resume polling</button>" in html
    post(client, "/dashboard/instances/r-1/resume", "/dashboard/instances/r-1")
    resumed = services.store.get("r-1")
    assert resumed is not None
    assert (resumed.polling_gave_up, resumed.poll_errors, resumed.next_poll_at) == (
        False,
        0,
        clock(),
    )
    assert services.store.get("r-2").polling_gave_up  # type: ignore[union-attr]  # only r-1
    assert "Polling resumed" in page(client, "/dashboard/instances/r-1")
    post(client, "/dashboard/instances/r-1/resume", "/dashboard/instances/r-1")
    assert "Nothing to resume" in page(client, "/dashboard/instances/r-1")


def test_replay_sends_a_failed_forward_again(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    with_settings(services, forward_url="http://127.0.0.1:9/hook", forward_secret="s" * 32)
    usecases.register(services, "f-1", None)
    usecases.observe(services, TtlPassed("f-1"), clock.advance(services.policy.ttl + 1))
    seq = failed_forward(services, "f-1")
    sign_in(client)
    answer = post(client, f"/dashboard/outbox/{seq}/replay", "/dashboard/instances/f-1")
    assert answer.headers["Location"] == "/dashboard/instances/f-1"
    [message] = services.store.messages(status=None, limit=10, instance_id="f-1")
    assert (message.status, message.attempts, message.next_attempt_at) == ("pending", 0, clock())
    html = page(client, "/dashboard/instances/f-1")
    assert f"Message {seq} will be sent again now." in html
    assert ">Replay</button>" not in html
    assert post(client, "/dashboard/outbox/999999/replay", "/dashboard/").status_code == 404
    assert post(client, f"/dashboard/outbox/{2**63}/replay", "/dashboard/").status_code == 404


def test_erase_asks_first_then_erases(
    services: Services, client: FlaskClient, sim: Simulator, clock: FakeClock
) -> None:
    with_settings(services, store_pii=True)
    sim.create("x-1", subject={"firstName": "Zebedee"})
    sim.set_status("x-1", "Completed", "Of Age")
    usecases.register(services, "x-1", None)
    usecases.poll_now(services, "x-1")
    sign_in(client)
    assert "Zebedee" not in page(client, "/dashboard/instances/x-1")  # the state is not shown
    confirm = page(client, "/dashboard/instances/x-1/erase")
    assert "Erase x-1?" in confirm
    assert services.store.get("x-1").state is not None  # type: ignore[union-attr]
    answer = post(client, "/dashboard/instances/x-1/erase", "/dashboard/instances/x-1/erase")
    assert answer.headers["Location"] == "/dashboard/instances/x-1"
    erased = services.store.get("x-1")
    assert erased is not None
    assert (erased.state, erased.status) == (None, "completed")
    assert "Personal data erased" in page(client, "/dashboard/instances/x-1")


def test_an_unknown_instance_is_a_page_that_says_so(client: FlaskClient) -> None:
    sign_in(client)
    for path in ("/dashboard/instances/nope", "/dashboard/instances/bad%20id"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.mimetype == "text/html"
        assert "no such instance" in answer.get_data(as_text=True)
    assert post(client, "/dashboard/instances/nope/poll", "/dashboard/").status_code == 404


def test_deliveries_set_aside_are_shown_and_folded_again(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    from receiver import usecases as uc
    from receiver.store import Delivery

    services.store.append_delivery(Delivery("q-1", clock(), b"{}", {}, None, None))
    [aside] = services.store.waiting_deliveries(1)
    for _ in range(uc.FOLD_TRIES):
        services.store.fold_failed(aside, "RuntimeError: a bug", clock(), uc.FOLD_TRIES)
    sign_in(client)
    html = page(client, "/dashboard/")
    assert figure(html, "quarantined") == "1"
    assert f'data-delivery="{aside}"' in html
    assert "RuntimeError: a bug" in html
    answer = post(client, f"/dashboard/quarantine/{aside}/refold", "/dashboard/")
    assert answer.headers["Location"] == "/dashboard/"
    html = page(client, "/dashboard/")
    assert f"Delivery {aside} is back in the inbox." in html
    assert figure(html, "quarantined") == "0"
    assert uc.fold_inbox(services) == 1
    post(client, f"/dashboard/quarantine/{aside}/refold", "/dashboard/")
    assert f"Delivery {aside} is not set aside." in page(client, "/dashboard/")


@pytest.mark.parametrize(
    ("address", "open_"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.20.0.4", True),
        ("192.168.1.9", True),
        ("::1", True),
        ("fd00::7", True),
        ("::ffff:10.0.0.1", True),
        ("203.0.113.9", False),
        ("172.32.0.1", False),
        ("2001:db8::1", False),
        ("::ffff:203.0.113.9", False),
    ],
)
def test_metrics_and_the_dashboard_answer_the_internal_network_only(
    services: Services, address: str, open_: bool
) -> None:
    client = create_app(services=services).test_client()
    env = {"REMOTE_ADDR": address}
    for path in ("/metrics", "/dashboard/signin", "/dashboard/"):
        answer = client.get(path, environ_base=env, base_url="https://localhost")
        assert (answer.status_code != 403) == open_, (path, answer.status_code)
        if not open_:  # a problem for programs, a page for people
            shown = "application/problem+json" if path == "/metrics" else "text/html"
            assert answer.mimetype == shown
    assert client.get("/healthz", environ_base=env).status_code == 200  # the rest is open


def test_behind_a_proxy_the_forwarded_client_is_the_one_checked(services: Services) -> None:
    with_settings(services, trusted_proxies=1)
    client = create_app(services=services).test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    outside = client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.9"})
    inside = client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "10.0.0.8"})
    assert (outside.status_code, inside.status_code) == (403, 200)


def test_an_instance_page_shows_the_latest_deliveries_and_links_the_rest(
    services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    from receiver import usecases as uc
    from receiver.store import Delivery

    for n in range(25):
        services.store.append_delivery(
            Delivery("many-1", clock() + n, b"{}", {}, f"10.0.0.{n}", None)
        )
    uc.fold_inbox(services)
    sign_in(client)
    html = page(client, "/dashboard/instances/many-1")
    assert html.count("<details>") == 20
    assert "from 10.0.0.24<" in html  # the latest ones
    assert "from 10.0.0.4<" not in html
    assert 'href="/dashboard/instances/many-1/deliveries"' in html
    first = page(client, "/dashboard/instances/many-1/deliveries")
    assert first.count("<details>") == 25  # one page holds up to 50
    assert "from 10.0.0.0<" in first
    assert 'rel="next"' not in first
    assert client.get("/dashboard/instances/many-1/deliveries?after=x").status_code == 400
    assert client.get("/dashboard/instances/nope/deliveries").status_code == 404


def test_a_line_break_in_next_leads_home(client: FlaskClient) -> None:
    form = client.get("/dashboard/signin").get_data(as_text=True)
    answer = client.post(
        "/dashboard/signin",
        data={"token": API_TOKEN, "csrf": csrf(form), "next": "/dashboard/\r\nSet-Cookie: x=1"},
    )
    assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard/")


def test_plain_http_from_another_machine_says_https_is_needed(services: Services) -> None:
    client = create_app(services=services).test_client()
    office = {"REMOTE_ADDR": "10.0.0.5"}
    for method in ("GET", "POST"):
        answer = client.open("/dashboard/signin", method=method, environ_base=office)
        assert answer.status_code == 403
        html = answer.get_data(as_text=True)
        assert "The dashboard needs HTTPS" in html
        assert "<form" not in html
    secure = client.get("/dashboard/signin", environ_base=office, base_url="https://localhost")
    assert (secure.status_code, "<form" in secure.get_data(as_text=True)) == (200, True)


def test_the_chart_says_so_when_nothing_ended(client: FlaskClient) -> None:
    sign_in(client)
    html = page(client, "/dashboard/")
    assert "data-chart-empty" in html
    assert "No journey ended in the last 24 h." in html
    assert "<svg" not in html
