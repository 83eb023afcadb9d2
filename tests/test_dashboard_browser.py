"""The dashboard in a real browser: Playwright driving Debian's chromium against
`gbg-receiver serve --simulator` (gunicorn, the worker, the simulator), with a store
seeded with a day of journeys and a forward that failed for good.

Screenshots go to var/screenshots/; docs/ holds two of them (see docs/dashboard.md).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver import usecases
from receiver.domain.model import (
    Fetched,
    FetchFailed,
    GbgState,
    Observation,
    Registered,
    WebhookReceived,
)
from receiver.domain.schedule import Policy
from receiver.store import Store
from tests.appserver import SECRET, App, running
from tests.conftest import API_TOKEN
from tests.processes import API, Proc, call, post_webhook, start_serve

pytestmark = pytest.mark.live

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "var" / "screenshots"
FAILED_ID = "8d0c52aa-5d0e-4c8e-9b59-2b7f3c1f0a11"
GAVE_UP_ID = "c41f2b07-93d4-4a57-8a0e-6e2b1f4d9c30"

sync_api = pytest.importorskip("playwright.sync_api")


def seed(url: str) -> None:
    """A day of journeys, most ended by webhook, more by polling lately; one given up;
    one whose message to the application failed for good."""
    store = Store.from_url(url)
    rng = random.Random(5)  # noqa: S311 (a repeatable spread, not a secret)
    now = time.time()
    changes: list[tuple[Observation, float]] = []
    for n in range(120):
        at = now - rng.uniform(60, 23.5 * 3600)
        lost = rng.random() < (0.6 if now - at < 3 * 3600 else 0.1)
        instance_id = f"{rng.getrandbits(32):08x}-{n:04x}-4000-8000-{rng.getrandbits(48):012x}"
        changes.append((Registered(instance_id, f"order-{1000 + n}"), at - 40))
        if not lost:
            changes.append((WebhookReceived(instance_id, "Completed"), at - 1))
        failed = rng.random() < 0.15
        state = GbgState("failed" if failed else "completed", "Failed" if failed else "Completed")
        changes.append((Fetched(instance_id, state, started_at=at - 0.5), at))
    for n in range(6):
        changes.append((Registered(f"in-progress-{n}", f"order-{2000 + n}"), now - 30 * n))
    changes.append((Registered(GAVE_UP_ID, "order-3000"), now - 7200))
    changes.append((FetchFailed(GAVE_UP_ID, "http_404"), now - 3000))
    changes.append((Registered(FAILED_ID, "order-3001"), now - 600))
    changes.append((WebhookReceived(FAILED_ID, "Completed"), now - 590))
    changes.append((Fetched(FAILED_ID, GbgState("completed", "Completed", "Of Age")), now - 580))
    changes.sort(key=lambda change: change[1])
    usecases.fold(store, Policy(max_errors=1), changes, forward=True)
    owner = "seed"
    for message in store.claim_messages(owner, now, 1000, 60):
        failed = message.instance_id == FAILED_ID
        error = "http_500" if failed else None
        store.record_attempt(message.seq, owner, now=now, error=error, next_attempt_at=None)
    store.engine.dispose()


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


def test_an_operator_signs_in_looks_acts_and_signs_out(
    tmp_path: Path, procs: list[Proc], browser: object
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running(App()) as app:
        base, sim, _ = start_serve(
            tmp_path,
            procs,
            seed,
            RECEIVER_WEBHOOK_TIMEOUT="3600",  # only the operator polls here
            RECEIVER_FORWARD_URL=app.url,
            RECEIVER_FORWARD_SECRET=SECRET,
        )
        _, journey = call("POST", f"{sim}/_sim/journeys", {"endsIn": 0, "webhook": "drop"})
        polled = journey["instanceId"]
        assert post_webhook(base, FAILED_ID)[0] == 202  # late, after the end: a delivery to see
        assert call("POST", f"{base}/api/v1/instances", {"instanceId": polled}, API)[0] == 201

        context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

        # Signing in: a wrong token is refused, the right one lands where it was going.
        page.goto(f"{base}/dashboard/instances")
        assert page.url.startswith(f"{base}/dashboard/signin")
        page.fill("#token", "not-the-token-not-the-token")
        page.click("button:has-text('Sign in')")
        page.wait_for_selector("text=That token is not accepted.")
        page.fill("#token", API_TOKEN)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(f"{base}/dashboard/instances")

        # The overview, as a person sees it.
        page.goto(f"{base}/dashboard/")
        assert page.locator("[data-figure=failed_forwards]").inner_text() == "1"
        assert page.locator("[data-figure=given_up]").inner_text() == "1"
        assert page.locator("text=GBG's webhooks are probably being lost").is_visible()
        assert page.locator("svg.chart rect.poll").count() > 0
        page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

        # Filtering, then opening an instance from the list.
        page.goto(f"{base}/dashboard/instances")
        page.select_option("select[name=status]", "in_progress")
        page.click("button:has-text('Filter')")
        page.wait_for_url("**status=in_progress**")
        statuses = page.locator("tbody .status:not(:has-text('gave up'))").all_inner_texts()
        assert len(statuses) == 8  # six seeded, the one that gave up, the one to poll
        assert set(statuses) == {"in progress"}
        page.click(f"a:has-text('{polled}')")
        page.wait_for_url(f"**/dashboard/instances/{polled}")

        # Poll now, reached by keyboard alone.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        for _ in range(40):
            if page.evaluate("document.activeElement.textContent") == "Poll now":
                break
            page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Polled: GBG says Completed.")
        assert page.locator("[data-figure=status]").inner_text() == "completed"

        # Replay the failed forward; the page refreshes in place until it is delivered.
        page.goto(f"{base}/dashboard/instances/{FAILED_ID}")
        row = page.locator("tr[data-message]")
        assert row.locator(".status").inner_text() == "failed"
        page.click("summary")  # a delivery, opened: its allow-listed headers, minimised body
        page.screenshot(path=str(SHOTS / "instance.png"), full_page=True)
        page.click("summary")
        page.click("button:has-text('Replay')")
        page.wait_for_selector("text=will be sent again now")
        page.evaluate("window.notReloaded = true")
        page.wait_for_selector("tr[data-message] .status.delivered", timeout=30_000)
        assert page.evaluate("window.notReloaded === true")  # swapped in place, not reloaded
        assert any(r.body["data"]["instance"]["instanceId"] == FAILED_ID for r in app.delivered())

        # Actions need the form's CSRF token, even with the session cookie.
        refused = context.request.post(
            f"{base}/dashboard/instances/{polled}/poll", form={"csrf": "forged"}
        )
        assert refused.status == 400

        # A phone's width: nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{base}/dashboard/instances/{GAVE_UP_ID}")
        assert page.locator("button:has-text('Resume polling')").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(SHOTS / "instance-phone.png"), full_page=True)

        # Signing out ends it.
        page.click("button:has-text('Sign out')")
        page.wait_for_url(f"{base}/dashboard/signin")
        page.goto(f"{base}/dashboard/")
        assert page.url.startswith(f"{base}/dashboard/signin")
        # No script errors, no CSP violations; the one failed load is the refused sign-in.
        assert problems == [
            "Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"
        ]
        context.close()


def box(page: object, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()  # type: ignore[attr-defined]
    assert found is not None, selector
    return dict(found)


@pytest.mark.parametrize("width", [390, 1280, 1440, 1920])
def test_the_dashboard_fits_every_screen(
    tmp_path: Path, procs: list[Proc], browser: object, width: int
) -> None:
    base, _, _ = start_serve(tmp_path, procs, seed, RECEIVER_WEBHOOK_TIMEOUT="3600")
    context = browser.new_context(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{base}/dashboard/signin")
    page.fill("#token", API_TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/dashboard/")
    fits = "document.documentElement.scrollWidth <= window.innerWidth"

    # The overview: its chart spans the content's width, with hour ticks and a scale.
    assert page.evaluate(fits)
    chart, main = box(page, "svg.chart"), box(page, "main")
    assert chart["width"] >= main["width"] - 2 * 20 - 2  # main's padding, the border
    assert page.locator("svg.chart text.tick").count() == 8  # every 3 hours of 24
    assert page.locator("svg.chart line.grid").count() == 3  # 0, half, the busiest hour

    # The instances: no column clipped; on a phone, id, status and outcome in view.
    page.goto(f"{base}/dashboard/instances")
    assert page.evaluate(fits)
    scroll = "(e => e.scrollWidth <= e.clientWidth)(document.querySelector('.scroll'))"
    assert page.evaluate(scroll), "a column of the instances table is cut off"
    row = "tbody tr:first-child"
    for cell in ("td.id", "td:nth-child(2)", "td:nth-child(3)"):
        shown = box(page, f"{row} {cell}")
        assert shown["x"] >= 0
        assert shown["x"] + shown["width"] <= width, cell
    header = page.locator("thead th").all_inner_texts()
    assert header[:3] == ["Instance", "Status", "Outcome"]
    polling = page.locator("th:has-text('Polling')")
    assert polling.is_visible() is (width >= 700)
    # The filter button sits on the inputs' line.
    button, select = box(page, ".filters button"), box(page, ".filters select")
    if width >= 700:
        assert abs((button["y"] + button["height"]) - (select["y"] + select["height"])) <= 1
    # Times read as how long ago, the exact time on hover.
    registered = page.locator("tbody tr:first-child time").first
    if width >= 700:
        shown_time = registered.inner_text()
        assert shown_time == "just now" or shown_time.endswith(" ago"), shown_time
        assert registered.get_attribute("title").endswith("UTC")
    if width in (390, 1280):
        page.screenshot(path=str(SHOTS / f"instances-{width}.png"), full_page=True)
    context.close()
