"""GBG's hosted journey, as the simulator plays it: the page behind every instanceUrl.

The person opens the URL the journey start handed out, sees the journey, and ends it
with one button per ending. Passing or failing ends the journey a moment later, and
the journey's Webhook module posts now, as GBG's does: before the end (early). Leaving
ends nothing: the journey stays in progress and no webhook comes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, Response, render_template_string, request

if TYPE_CHECKING:
    from receiver.testing.simulator import Simulator

ENDS_IN = 2.0  # seconds from the button to the journey's end; the webhook goes at once
ENDINGS = {  # button: GBG's status and outcome
    "passed": ("Completed", "Of Age"),
    "failed": ("Failed", "Not Of Age"),
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Journey {{ i.instance_id }} (GBG simulator)</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }
button { font: inherit; padding: .5rem 1rem; margin: 0 .5rem .5rem 0; cursor: pointer; }
.note { color: #555; }
</style></head>
<body>
<h1>Age check</h1>
<p class="note">The bundled GBG simulator plays GBG's hosted journey
<code>{{ i.resource_id }}</code>, instance <code>{{ i.instance_id }}</code>.</p>
{% if said %}<p role="status"><strong>{{ said }}</strong></p>{% endif %}
<p>Status at GBG: <strong data-status>{{ i.status }}</strong>
{% if i.outcome %}({{ i.outcome }}){% endif %}</p>
{% if i.status == "InProgress" and not said %}
<form method="post">
  <button name="ending" value="passed">Pass (of age)</button>
  <button name="ending" value="failed">Fail (not of age)</button>
  <button name="ending" value="abandoned">Leave the journey</button>
</form>
<p class="note">Passing or failing ends the journey in {{ ends_in }} s; GBG's Webhook module
posts to the receiver at once, before the end, as GBG's does.</p>
{% endif %}
</body></html>
"""

_SAID = {
    "passed": "You passed. The journey ends in a moment; the webhook is on its way.",
    "failed": "You did not pass. The journey ends in a moment; the webhook is on its way.",
    "abandoned": "You left. The journey stays in progress: no webhook comes, and the "
    "receiver marks it expired after RECEIVER_INSTANCE_TTL.",
}


def add_hosted(app: Flask, sim: Simulator) -> None:
    """Serve the hosted journey at /journey/<id>, the instanceUrl the start answers."""

    @app.route("/journey/<instance_id>", methods=["GET", "POST"])
    def hosted_journey(instance_id: str) -> Response | tuple[str, int]:
        with sim.lock:
            found = sim.instances.get(instance_id)
        if found is None:
            return "<h1>No such journey</h1>", 404
        said = None
        if request.method == "POST":
            ending = request.form.get("ending", "")
            if ending not in (*ENDINGS, "abandoned"):
                return "<h1>No such ending</h1>", 400
            if ending in ENDINGS and found.status == "InProgress":
                status, outcome = ENDINGS[ending]
                sim.finish(instance_id, status, outcome, ends_in=ENDS_IN, webhook_in=0.0)
            said = _SAID[ending]
        page = render_template_string(_PAGE, i=found, said=said, ends_in=ENDS_IN)
        return Response(page, mimetype="text/html")
