"""The baseline: a bare Flask endpoint answering 202, served by the same gunicorn config."""

from flask import Flask

app = Flask(__name__)


@app.post("/webhooks/gbg")
def receive() -> tuple[dict[str, str], int]:
    return {"instanceId": "bare", "status": "in_progress"}, 202
