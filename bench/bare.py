"""The baseline: a bare Flask endpoint answering 202, served by the same gunicorn config;
and the ceiling: the same endpoint after a 1 ms wait that costs no CPU, what a durable
write that took no CPU at all would leave."""

import time

from flask import Flask

app = Flask(__name__)
ceiling = Flask(__name__)


@app.post("/webhooks/gbg")
def receive() -> tuple[dict[str, str], int]:
    return {"instanceId": "bare", "status": "in_progress"}, 202


@ceiling.post("/webhooks/gbg")
def receive_after_a_wait() -> tuple[dict[str, str], int]:
    time.sleep(0.001)
    return {"instanceId": "bare", "status": "in_progress"}, 202
