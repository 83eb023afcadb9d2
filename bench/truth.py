"""Time to truth and GBG economy: `gbg-receiver serve` with the simulator as GBG."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

from bench.harness import (
    PYTHON,
    TOKEN,
    call,
    environment,
    free_port,
    gbg_settings,
    process,
    summary,
    wait_http,
)

WITH_WEBHOOK = 100
WITHOUT_WEBHOOK = 40
EARLY = 16  # journeys whose module fires 0-5 s before the end, as GBG's may
EARLY_BY = 5.0
TARGET_EARLY_S = 3.0  # p99 from the real end to the status in the API
EXTRA_FETCHES = 4  # at most, per webhook, beyond the confirmation
WEBHOOK_TIMEOUT = 5.0
CONFIRM_DELAY = 1.0
POLL_INTERVAL = 10.0


def measure(out: Path) -> dict[str, Any]:
    port, sim_port = free_port(), free_port()
    env = environment(
        f"sqlite:///{out / 'truth.db'}",
        RECEIVER_BIND=f"127.0.0.1:{port}",
        RECEIVER_WEBHOOK_TIMEOUT=str(WEBHOOK_TIMEOUT),
        RECEIVER_CONFIRM_DELAY=str(CONFIRM_DELAY),
        RECEIVER_GBG_RATE_LIMIT="100",
        **gbg_settings(f"http://127.0.0.1:{sim_port}"),
    )
    subprocess.run(
        [sys.executable, "-m", "receiver", "migrate"], env=env, check=True, capture_output=True
    )
    base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    api = {"Authorization": f"Bearer {TOKEN}"}
    rng = random.Random(7)
    with process(
        [PYTHON, "-m", "receiver", "serve", "--simulator"],
        env,
        out / "truth-serve.log",
    ):
        wait_http(base + "/readyz")
        wait_http(sim + "/_sim/calls")
        hooked, silent, early = [], [], []
        for _ in range(EARLY):
            ends = rng.uniform(EARLY_BY, EARLY_BY + 1.0)
            spec = {"endsIn": ends, "webhookIn": ends - rng.uniform(0.0, EARLY_BY)}
            early.append(call("POST", f"{sim}/_sim/journeys", spec)["instanceId"])
            time.sleep(0.03)
        for n in range(WITH_WEBHOOK + WITHOUT_WEBHOOK):
            ends = rng.uniform(1.0, 4.0)
            if n < WITH_WEBHOOK:  # the module, placed last, fires just before the end
                spec = {"endsIn": ends, "webhookIn": ends - 0.05}
                hooked.append(call("POST", f"{sim}/_sim/journeys", spec)["instanceId"])
            else:  # the webhook is lost; the application registered the instance
                spec = {"endsIn": ends, "webhook": "drop"}
                iid = call("POST", f"{sim}/_sim/journeys", spec)["instanceId"]
                call("POST", f"{base}/api/v1/instances", {"instanceId": iid}, api)
                silent.append(iid)
            time.sleep(0.03)
        deadline = time.monotonic() + WEBHOOK_TIMEOUT + POLL_INTERVAL + 30
        final: dict[str, Any] = {}
        everyone = hooked + silent + early
        while time.monotonic() < deadline and len(final) < len(everyone):
            for iid in everyone:
                if iid not in final:
                    try:
                        got = call("GET", f"{base}/api/v1/instances/{iid}", headers=api)
                    except urllib.error.HTTPError as exc:
                        if exc.code != 404:  # 404: its webhook has not come yet
                            raise
                        continue
                    if got["status"] != "in_progress":
                        final[iid] = got
            time.sleep(0.5)
        events = call("GET", f"{base}/api/v1/events?after=0&limit=1000", headers=api)["events"]
        calls = call("GET", f"{sim}/_sim/calls")
    at = {e["instanceId"]: _ts(e["at"]) for e in events if e["status"] in ("completed", "failed")}
    fetches = [c for c in calls["calls"] if c["kind"] == "fetch"]
    per_instance = Counter(c["instanceId"] for c in fetches)
    # One fetch round trip as the poller sees it: request, GBG's answer, folding it in.
    durations = [
        json.loads(line)["duration_ms"] / 1000
        for line in (out / "truth-serve.log").read_text().splitlines()
        if '"poll.fetched"' in line
    ]
    rtt = median(durations)

    def delays(ids: list[str]) -> list[float]:
        return [at[i] - _ts(final[i]["journey"]["endedAt"]) for i in ids if i in at and i in final]

    return {
        "rtt_s": rtt,
        "webhook": summary(delays(hooked), len(hooked)),
        "timeout": summary(delays(silent), len(silent)),
        "early": summary(delays(early), len(early)),
        "fetches_early": [per_instance[i] for i in early],
        "target_early_s": TARGET_EARLY_S,
        "fetches_webhook": [per_instance[i] for i in hooked],
        "fetches_timeout": [per_instance[i] for i in silent],
        "token_requests": calls["tokenRequests"],
        "target_webhook_s": CONFIRM_DELAY + rtt + 0.2,
        "target_timeout_s": WEBHOOK_TIMEOUT + POLL_INTERVAL + rtt,
    }


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
