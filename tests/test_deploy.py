"""The deployment files: systemd units verify, every variable is in env.example, and the
commands the container files run are real commands."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from receiver.config import Settings
from receiver.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SETTINGS = {"RECEIVER_" + f.name.upper() for f in fields(Settings)}
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


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    listed = re.findall(r"^(RECEIVER_[A-Z_]+)=", (DEPLOY / "env.example").read_text(), re.M)
    assert sorted(listed) == sorted(SETTINGS)


def test_the_contract_documents_every_setting_and_nothing_else() -> None:
    text = (ROOT / "docs" / "contract.md").read_text()
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in re.findall(r"^\| (`RECEIVER_.*?) \|", table, re.M):
        documented |= set(re.findall(r"`(RECEIVER_[A-Z_]+)`", row))
    assert documented == SETTINGS


def test_the_contract_names_only_real_commands() -> None:
    text = (ROOT / "docs" / "contract.md").read_text()
    named = set(re.findall(r"`gbg-receiver ([a-z][a-z-]*)", text))
    assert named - real_commands() == set()
    assert real_commands() - named == set(), "a command the contract does not describe"


def test_env_example_is_refused_until_its_placeholders_are_replaced() -> None:
    values = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line.startswith("RECEIVER_")
    )
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(values).check_web()
    named = {p.split(":")[0] for p in refused.value.problems}
    assert named == {"RECEIVER_WEBHOOK_PASSWORD", "RECEIVER_API_TOKENS"}
    assert all("placeholder" in p for p in refused.value.problems)
    filled = values | {
        "RECEIVER_WEBHOOK_PASSWORD": secrets.token_urlsafe(32),
        "RECEIVER_API_TOKENS": secrets.token_urlsafe(32),
    }
    settings = Settings.from_env(filled)
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
    used = commands((DEPLOY / path).read_text())
    assert used, f"{path} calls no gbg-receiver command"
    assert used - real_commands() == set(), f"{path} calls commands that do not exist"


def real_commands() -> set[str]:
    helped = subprocess.run(
        [sys.executable, "-m", "receiver", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"^  ([a-z][a-z-]*)\s", helped, re.M))


def test_container_and_units_agree_on_paths() -> None:
    docker = (DEPLOY / "Dockerfile").read_text()
    units = (DEPLOY / "systemd" / "gbg-receiver-web.service").read_text()
    assert "/opt/gbg-receiver" in docker
    assert "/opt/gbg-receiver" in units
    assert "USER gbg-receiver" in docker
    assert "HEALTHCHECK" in docker
    assert "/readyz" in docker
    copied = set()
    for line in re.findall(r"^COPY (?!--)(.+)$", docker, re.M):
        copied |= set(line.split()[:-1])
    assert copied == {"requirements/runtime.txt", "pyproject.toml", "README.md", "receiver"}
    for path in copied:
        assert (ROOT / path).exists(), path


def test_the_docker_context_holds_only_what_the_image_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything is left out, then the few inputs let back in
    let_in = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert let_in == {"pyproject.toml", "README.md", "requirements/runtime.txt", "receiver"}


def demo_env(preset: dict[str, str]) -> tuple[dict[str, str], str]:
    """What `. deploy/demo.env` leaves in a shell that had ``preset``; and what it said."""
    shell = subprocess.run(
        ["sh", "-c", ". deploy/demo.env && env -0"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **preset},
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = (item.split("=", 1) for item in shell.stdout.split("\0") if item)
    return {k: v for k, v in pairs if k.startswith("RECEIVER_")}, shell.stderr


def test_demo_settings_fill_only_what_is_unset_and_say_so_in_one_line() -> None:
    alone, said = demo_env({})
    assert said.count("\n") == 1
    assert said.startswith("demo settings (deploy/demo.env) for unset variables:")
    assert set(said.split(":", 1)[1].split()) == set(alone)
    Settings.from_env(alone).check_web()  # a complete, valid configuration
    assert Settings.from_env(alone).gbg_url == "http://127.0.0.1:8001"

    mine = {"RECEIVER_API_TOKENS": "my-own-token-0123456789abcdef", "RECEIVER_WEBHOOK_API_KEY": "k"}
    mine["RECEIVER_GBG_CLIENT_ID"] = "real-client"
    kept, said = demo_env(mine)
    assert {k: kept[k] for k in mine} == mine  # a configured value always wins
    assert not any(
        k.startswith(("RECEIVER_GBG_", "RECEIVER_WEBHOOK_USERNAME")) for k in said.split()
    )
    assert "RECEIVER_WEBHOOK_PASSWORD" not in kept  # an API key was chosen: no Basic added

    everything, said = demo_env(alone)
    assert everything == alone
    assert said == ""
