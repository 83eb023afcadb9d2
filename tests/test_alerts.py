"""The shipped alert rules (deploy/prometheus/): promtool checks them and the scrape
example, its unit tests make each alert fire and resolve, and every series the rules
read is one the service really exposes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"
# What the operators asked to be told about, by the name each alert has.
EXPECTED = {
    "GbgReceiverDown",
    "GbgReceiverStoreUnavailable",
    "GbgReceiverNoWorker",
    "GbgReceiverInboxStuck",
    "GbgReceiverWebhooksLost",
    "GbgReceiverGbgPaused",
    "GbgReceiverInstancesGivenUp",
    "GbgReceiverForwardsFailed",
    "GbgReceiverForwardsBehind",
    "GbgReceiverErrors",
}


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide promtool (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    done = subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def rules() -> list[dict[str, str]]:
    [group] = yaml.safe_load(RULES.read_text())["groups"]
    return list(group["rules"])


def test_promtool_accepts_the_rules_and_the_scrape_example() -> None:
    assert "SUCCESS: 11 rules found" in promtool("check", "rules", str(RULES))
    assert "is valid prometheus config file syntax" in promtool("check", "config", str(SCRAPE))


def test_each_alert_fires_and_resolves_on_the_series_the_test_writes() -> None:
    assert "SUCCESS" in promtool("test", "rules", str(TESTS))
    checks: dict[str, set[bool]] = {}
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            checks.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts == EXPECTED
    # Each alert both fires and, before or after, does not.
    assert checks == {name: {True, False} for name in EXPECTED}


def test_every_series_the_rules_read_is_exposed(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200  # a request, for the request counts
    exposed = set(
        re.findall(r"^# TYPE (\w+) ", client.get("/metrics").get_data(as_text=True), re.M)
    )
    names = set()
    for name in re.findall(r"\bgbg_receiver_\w+", " ".join(r["expr"] for r in rules())):
        names.add(re.sub(r"_(total|count|sum|bucket)$", "", name))
    assert names
    assert names - exposed == set()
