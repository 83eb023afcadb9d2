"""The operator's dashboard: server-rendered pages over the API's own store reads, read
only except for a few explicit actions (poll now, resume, replay, erase).

For internal networks: nginx's site restricts /dashboard like /metrics (see deploy/).
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as Redirect

from receiver import liveness, notify, usecases
from receiver.errors import GbgError, Problem, Superseded, Throttled
from receiver.guards import loopback_host
from receiver.shapes import (
    DECIDED_BY,
    delivery_json,
    outbox_json,
    steps,
    timeline_json,
)
from receiver.store.schema import MAX_ID
from receiver.web import context, reads
from receiver.web.dashboard import filters, overview, signin

log = logging.getLogger("receiver.dashboard")
bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix=signin.PATH,
    template_folder="templates",
    static_folder="static",
)

PAGE = 50
DELIVERIES_SHOWN = 20  # the latest ones on an instance's page; the rest a link away
REFRESH = 10  # seconds between in-place refreshes of a page's live part
OPEN = frozenset({"dashboard.sign_in", "dashboard.static"})


def _tokens() -> tuple[str, ...]:
    return context.services().settings.api_tokens


@bp.before_request
def _require_session() -> Redirect | None:
    if request.endpoint in OPEN:
        return None
    services = context.services()
    key, now, revoked = current_app.secret_key, services.clock(), services.store.session_revoked
    if not signin.signed_in(_tokens(), key, now, revoked):  # type: ignore[arg-type]
        return redirect(url_for("dashboard.sign_in", next=request.full_path.rstrip("?")))
    if request.method == "POST":
        signin.check_csrf()
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(signin.HEADERS)
    return response


@bp.errorhandler(Problem)
def _problem(exc: Problem) -> tuple[str, int]:
    return render_template("dashboard/error.html", title=exc.title, detail=exc.detail), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return render_template(
        "dashboard/error.html", title=exc.name, detail=exc.description
    ), exc.code or 500


@bp.app_template_global()
def csrf_token() -> str:
    return signin.csrf_token()


filters.register(bp)


@bp.route("/signin", methods=["GET", "POST"])
def sign_in() -> Any:
    target = _safe_next(request.values.get("next"))
    if not request.is_secure and not loopback_host(request.remote_addr or ""):
        # The browser would drop the Secure cookie: say why, never a bare 400 after.
        return render_template("dashboard/signin.html", next=target, plain_http=True), 403
    if request.method == "POST":
        signin.check_csrf()
        key, now = current_app.secret_key, context.services().clock()
        if signin.sign_in(request.form.get("token", ""), _tokens(), key, now):  # type: ignore[arg-type]
            return redirect(target, 303)
        page = render_template("dashboard/signin.html", next=target, refused=True)
        return page, 401
    return render_template("dashboard/signin.html", next=target, refused=False)


@bp.post("/signout")
def sign_out() -> Redirect:
    signin.sign_out(context.services().store.revoke_session)
    return redirect(url_for("dashboard.sign_in"), 303)


@bp.get("/")
def home() -> str:
    services = context.services()
    now = services.clock()
    endings = overview.endings(services.store, now)
    return render_template(
        "dashboard/overview.html",
        snap=services.store.snapshot(now),
        quarantined=services.store.quarantined(limit=PAGE),
        seen=liveness.read(services),
        endings=endings,
        chart=endings.chart(),
        refresh=REFRESH,
    )


@bp.get("/instances")
def instances() -> str:
    filters = {k: v for k in ("status", "reference", "givenUp") if (v := request.args.get(k))}
    page, next_cursor = reads.instance_page(filters | _cursor(), PAGE)
    return render_template(
        "dashboard/instances.html",
        instances=page,
        filters=filters,
        next_cursor=next_cursor,
        refresh=REFRESH,
    )


@bp.get("/instances/<instance_id>")
def instance(instance_id: str) -> str:
    services = context.services()
    found = reads.known(instance_id)
    messages = services.store.messages(status=None, limit=reads.MAX_PAGE, instance_id=instance_id)
    history = services.store.history(instance_id)  # the timeline, and the latest deliveries
    latest = history["deliveries"]
    return render_template(
        "dashboard/instance.html",
        i=found,
        steps=steps(found.state),
        timeline=timeline_json(found, history),
        decided_by=DECIDED_BY,
        deliveries=[delivery_json(d) for d in latest[-DELIVERIES_SHOWN:]],
        earlier=len(latest) > DELIVERIES_SHOWN,
        messages=[outbox_json(m) for m in messages],
        forwarding=services.forwarding,
        pii=services.settings.store_pii,
        refresh=REFRESH,
    )


@bp.get("/instances/<instance_id>/deliveries")
def deliveries(instance_id: str) -> str:
    """Every delivery of one instance, a page at a time, oldest first."""
    reads.known(instance_id)
    after = reads.int_arg(request.args, "after", 0, 0, MAX_ID)
    rows = context.services().store.deliveries_for(instance_id, after=after, limit=PAGE + 1)
    return render_template(
        "dashboard/deliveries.html",
        instance_id=instance_id,
        deliveries=[delivery_json(d) for d in rows[:PAGE]],
        next_after=rows[PAGE - 1]["id"] if len(rows) > PAGE else None,
        pii=context.services().settings.store_pii,
    )


@bp.post("/instances/<instance_id>/poll")
def poll(instance_id: str) -> Redirect:
    services = context.services()
    reads.known(instance_id)
    try:
        polled = usecases.poll_now(services, instance_id)
    except Throttled as exc:
        why = "polling is paused while GBG fails" if exc.gbg_down else "GBG's rate is used up"
        flash(f"Not polled: {why}; try again in {math.ceil(exc.retry_after)} s.", "error")
    except GbgError as exc:
        flash(f"Not polled: {exc}.", "error")
    else:
        if polled is None:
            flash("A poller is fetching it right now; look again in a moment.", "error")
        else:
            flash(f"Polled: GBG says {polled.gbg_status or 'nothing yet'}.", "ok")
    return _back_to(instance_id)


@bp.post("/instances/<instance_id>/resume")
def resume(instance_id: str) -> Redirect:
    reads.known(instance_id)
    if usecases.resume_given_up(context.services(), instance_id):
        flash("Polling resumed from now, with a fresh error budget.", "ok")
    else:
        flash("Nothing to resume: polling had not given up on it.", "error")
    return _back_to(instance_id)


@bp.route("/instances/<instance_id>/erase", methods=["GET", "POST"])
def erase(instance_id: str) -> Any:
    found = reads.known(instance_id)
    if request.method == "GET":
        return render_template("dashboard/erase.html", i=found)
    usecases.erase(context.services(), instance_id)
    flash("Personal data erased: deliveries, sent messages and the stored result.", "ok")
    return _back_to(instance_id)


@bp.post("/outbox/<int:message_id>/replay")
def replay(message_id: int) -> Redirect:
    try:
        message = notify.replay(context.services(), message_id)
    except Superseded as exc:
        flash(f"Not replayed: {exc.detail}.", "error")
        return _back_to(exc.instance_id)
    if message is None:
        raise Problem("unknown-message", "no such message")
    flash(f"Message {message.seq} will be sent again now.", "ok")
    return _back_to(message.instance_id)


@bp.post("/quarantine/<int:delivery_id>/refold")
def refold(delivery_id: int) -> Redirect:
    if usecases.refold(context.services(), delivery_id):
        flash(f"Delivery {delivery_id} is back in the inbox.", "ok")
    else:
        flash(f"Delivery {delivery_id} is not set aside.", "error")
    return redirect(url_for("dashboard.home"), 303)


def _cursor() -> dict[str, str]:
    cursor = request.args.get("cursor")
    return {"cursor": cursor} if cursor else {}


def _back_to(instance_id: str) -> Redirect:
    return redirect(url_for("dashboard.instance", instance_id=instance_id), 303)


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard: never another site (an open redirect)."""
    home = url_for("dashboard.home")
    if not target or not target.isprintable():  # a line break would split the header
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(signin.PATH):
        return home
    return target
