"""Restarts and upgrades behind the real nginx: what the guide's upgrade does (reload the
web with HUP, restart the workers one at a time) under a steady webhook load refuses
nothing, and a web that is gone is a problem the sender can act on, not an HTML 502."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from receiver.store import Store
from tests.processes import HOOK, Proc, base_env, call, run, start_web
from tests.proxy import through_nginx

pytestmark = pytest.mark.live

PACKAGE = Path(__file__).resolve().parents[1] / "receiver"
SENDERS = [f"127.0.1.{n}" for n in range(1, 101)]  # each under the proxy's per-client limit


def webhook(nginx: dict[str, Any], instance_id: str, client: str) -> int:
    body = json.dumps({"instanceId": instance_id, "status": "Completed"}).encode()
    headers = {**HOOK, "Content-Type": "application/json"}
    try:
        return through_nginx(nginx["https"], "POST", "/webhooks/gbg", body, headers, client)[0]
    except OSError:
        return 0  # no answer at all: as bad as a refusal


def test_a_web_that_is_gone_answers_a_problem_with_retry_after(nginx: dict[str, Any]) -> None:
    assert nginx["web"].stop() == 0
    body = json.dumps({"instanceId": "while-down"}).encode()
    status, headers, text = through_nginx(
        nginx["https"], "POST", "/webhooks/gbg", body, {**HOOK, "Content-Type": "application/json"}
    )
    assert status == 503
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Retry-After"] == "5"
    assert json.loads(text)["status"] == 503


def test_the_guides_upgrade_under_load_refuses_nothing(
    nginx: dict[str, Any], tmp_path: Path, procs: list[Proc], figure: Any
) -> None:
    """Webhooks from four steady senders through nginx while the web is reloaded twice
    (HUP: new workers, then the old ones finish) and the worker is restarted: every
    answer is 202, and every acknowledged delivery is folded by the worker after."""
    env = nginx["env"] | {
        "RECEIVER_GBG_BASE_URL": "http://127.0.0.1:9",  # no GBG: folding needs none
        "RECEIVER_GBG_TOKEN_URL": "http://127.0.0.1:9/token",
        "RECEIVER_GBG_CLIENT_ID": "sim-client",
        "RECEIVER_GBG_CLIENT_SECRET": "sim-secret",
    }
    worker = Proc(["poller"], env, tmp_path / "worker-1.log")
    procs.append(worker)
    answers: list[tuple[str, int]] = []
    stop = threading.Event()

    def load(first: int) -> None:
        n = first
        while not stop.is_set():
            instance_id = f"upgrade-{n}"
            answers.append((instance_id, webhook(nginx, instance_id, SENDERS[n % len(SENDERS)])))
            n += len(senders)
            time.sleep(0.05)

    senders = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for sender in senders:
        sender.start()
    try:
        master = nginx["web"].popen.pid
        time.sleep(1.5)
        os.kill(master, signal.SIGHUP)  # systemctl reload gbg-receiver-web
        time.sleep(2.0)
        os.kill(master, signal.SIGHUP)
        time.sleep(1.5)
        assert worker.stop() == 0  # systemctl restart gbg-receiver-poller
        worker = Proc(["poller"], env, tmp_path / "worker-2.log")
        procs.append(worker)
        time.sleep(1.5)
    finally:
        stop.set()
        for sender in senders:
            sender.join()
    web_log = nginx["web"].log.read_text()
    assert web_log.count("Handling signal: hup") == 2
    assert web_log.count("Booting worker") >= 3 * 2  # the reloads started new workers

    statuses = Counter(status for _, status in answers)
    assert statuses == {202: len(answers)}, statuses
    assert len(answers) > 60  # a steady load throughout (about 25 a second here)
    store = Store.from_url(env["RECEIVER_DATABASE_URL"])
    deadline = time.monotonic() + 30
    while (snap := store.snapshot(time.time()))["inbox_depth"]:
        assert time.monotonic() < deadline, worker.log.read_text()
        time.sleep(0.2)
    assert sum(snap["by_status"].values()) == len(answers)  # each acknowledged one, folded
    store.engine.dispose()
    figure(
        f"upgrade under load: {len(answers)} webhooks through nginx during 2 web reloads "
        f"(HUP) and a worker restart -> {statuses[202]} x 202, 0 refused; all folded"
    )


def test_a_reload_serves_the_release_installed_since_start(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """After `pip install` of a new release, HUP must bring up workers on the new code
    throughout: the master imported part of the package at start, and workers forked
    from it kept that old part, mixing two releases (here: an ImportError at boot)."""
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "receiver", ignore=shutil.ignore_patterns("__pycache__"))
    env = base_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    web, base = start_web(env, tmp_path / "web.log", procs, cwd=src)
    assert call("GET", f"{base}/healthz") == (200, {"status": "ok"})

    # The next release: a name the master's copy of receiver.config does not have.
    with (src / "receiver" / "config.py").open("a") as config:
        config.write('\nRELEASE = "next"\n')
    health = src / "receiver" / "web" / "health.py"
    health.write_text(
        health.read_text().replace(
            'return {"status": "ok"}',
            "from receiver.config import RELEASE\n\n"
            '    return {"status": "ok", "release": RELEASE}',
        )
    )
    os.kill(web.popen.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while (answer := call("GET", f"{base}/healthz"))[1] == {"status": "ok"}:
        assert web.popen.poll() is None, web.log.read_text()
        assert time.monotonic() < deadline, web.log.read_text()
        time.sleep(0.1)
    assert answer == (200, {"status": "ok", "release": "next"})
    assert "Worker failed to boot" not in web.log.read_text()
