"""The deployment files: systemd units verify, every variable is in env.example, and the
commands the container files run are real commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from receiver.config import Settings
from tests.conftest import SHARED

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("unit", ["gbg-receiver-web.service", "gbg-receiver-poller.service"])
def test_systemd_unit_verifies(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("CI has systemd-analyze; it is needed to check the units")
        pytest.skip("systemd-analyze is not installed")
    text = (DEPLOY / "systemd" / unit).read_text()
    assert "User=gbg-receiver" in text
    assert "EnvironmentFile=/etc/gbg-receiver/env" in text
    assert "Restart=on-failure" in text
    assert "NoNewPrivileges=yes" in text
    # The executables must exist for verify: point them at this checkout's virtualenv.
    (tmp_path / unit).write_text(text.replace("/opt/gbg-receiver/.venv/bin", str(VENV_BIN)))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert unit not in result.stderr, result.stderr  # no warning about the unit itself


def test_env_example_lists_every_variable() -> None:
    listed = set(re.findall(r"^(RECEIVER_[A-Z_]+)=", (DEPLOY / "env.example").read_text(), re.M))
    ours = {"RECEIVER_" + f.name.upper() for f in fields(Settings)}
    contract = set(re.findall(r"`(RECEIVER_[A-Z_]+)`", (SHARED / "CONTRACT.md").read_text()))
    contract |= {"RECEIVER_GBG_" + s for s in ("CLIENT_SECRET", "USERNAME", "PASSWORD")}
    contract |= {"RECEIVER_FORWARD_SECRET"}
    contract -= {"RECEIVER_TEST_DATABASE_URL"}  # the test suite's, not the service's
    assert ours - listed == set()
    assert contract - listed == set()


def test_env_example_is_a_valid_configuration() -> None:
    values = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line.startswith("RECEIVER_")
    )
    settings = Settings.from_env(values)
    assert settings.trusted_proxies == 1
    assert settings.webhook_username == "gbg"


def commands(text: str) -> set[str]:
    found = set(re.findall(r'command: \["([a-z-]+)"\]', text))
    found |= set(re.findall(r'CMD \["([a-z-]+)"\]', text))
    found |= set(re.findall(r"bin/gbg-receiver ([a-z][a-z-]*)", text))
    found |= set(re.findall(r"^\s*(?:\$ )?gbg-receiver ([a-z][a-z-]*)", text, re.M))
    return found


@pytest.mark.parametrize(
    "path",
    [
        "compose.yaml",
        "Dockerfile",
        "systemd/gbg-receiver-web.service",
        "systemd/gbg-receiver-poller.service",
        "README.md",
    ],
)
def test_deploy_files_call_real_commands(path: str) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "receiver", "--help"], capture_output=True, text=True, check=True
    ).stdout
    real = set(re.findall(r"^  ([a-z-]+)\s", helped, re.M))
    used = commands((DEPLOY / path).read_text())
    assert used, f"{path} calls no gbg-receiver command"
    assert used - real == set(), f"{path} calls commands that do not exist"


def test_container_and_units_agree_on_paths() -> None:
    docker = (DEPLOY / "Dockerfile").read_text()
    units = (DEPLOY / "systemd" / "gbg-receiver-web.service").read_text()
    assert "/opt/gbg-receiver" in docker
    assert "/opt/gbg-receiver" in units
    assert "USER gbg-receiver" in docker
    assert "HEALTHCHECK" in docker
    assert "/readyz" in docker
    for copied in re.findall(r"^COPY (?!--)(\S+)", docker, re.M):
        assert (DEPLOY.parent / copied).exists(), copied
