"""Our own secrets at start-up, rule by rule, at the edges of each rule."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from receiver.config import Settings
from receiver.errors import ConfigError
from receiver.guards import (
    DEMO_SECRETS,
    MIN_SECRET,
    demo_values,
    loopback,
    loopback_bind,
    not_whsec,
    weak_secret,
)
from tests.processes import base_env, run

HINT = "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("abcdefgh" * 3, None),  # 24 characters, 8 different: enough
        ("abcdefg" * 4, "has fewer than 8 different characters, no random secret; " + HINT),
        ("short", f"is shorter than {MIN_SECRET} characters; " + HINT),
        ("aaaa", f"is shorter than {MIN_SECRET} characters; " + HINT),
        ("abcdefghijklmnopqrstuvw", f"is shorter than {MIN_SECRET} characters; " + HINT),
        ("please-CHANGE-this-value-now", "is a placeholder, not a secret; " + HINT),
        ("<your token of many letters>", "is a placeholder, not a secret; " + HINT),
    ],
)
def test_a_secret_of_ours_is_long_varied_and_no_placeholder(value: str, why: str | None) -> None:
    assert weak_secret(value) == why


KEY = bytes(range(24))  # 24 bytes, 24 different


@pytest.mark.parametrize(
    ("secret", "good"),
    [
        (whsec(KEY), True),
        (whsec(bytes(range(8)) * 3), True),  # 8 different bytes
        (whsec(bytes(range(7)) * 4), False),  # 7 different
        (whsec(KEY[:23]), False),  # 23 bytes
        (base64.b64encode(KEY).decode(), False),  # no whsec_ prefix
        ("whsec_" + base64.b64encode(KEY).decode()[:-4] + "!!!!", False),  # not base64
        ("whsec_" + base64.b64encode(KEY).decode() + "*", False),
    ],
)
def test_a_signing_key_is_whsec_and_24_random_bytes(secret: str, good: bool) -> None:
    why = not_whsec(secret)
    assert (why is None) is good
    if why is not None:
        assert why.startswith(
            f"must be whsec_ and the base64 of {MIN_SECRET} random bytes or more; "
        )
        assert "make one: python3 -c" in why


@pytest.mark.parametrize(
    ("url", "near"),
    [
        ("http://127.0.0.1:8001", True),
        ("http://127.8.9.1/x", True),
        ("http://[::1]:9", True),
        ("http://localhost:9", True),
        ("http://10.0.0.1", False),
        ("http://gbg.example.com", False),
        ("http://", False),
    ],
)
def test_loopback_is_this_machine_only(url: str, near: bool) -> None:
    assert loopback(url) is near


DEMO_ENV = Path(__file__).resolve().parents[1] / "deploy" / "demo.env"


def test_every_secret_demo_env_publishes_is_known_as_a_demo_value() -> None:
    published = set(re.findall(r"_demo_default RECEIVER_\w+ (demo-\S+-only)", DEMO_ENV.read_text()))
    assert len(published) == 3
    assert published == DEMO_SECRETS


@pytest.mark.parametrize(
    ("gbg", "bind", "refused"),
    [
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),  # make run
        ("http://localhost:8001", "[::1]:8000", False),
        ("http://127.0.0.1:8001", "unix:/run/gbg-receiver.sock", False),
        ("https://eu.platform.go.gbgplc.com", "127.0.0.1:8000", True),
        ("http://127.0.0.1:8001", "0.0.0.0:8000", True),
        ("http://127.0.0.1:8001", "10.0.0.5:8000", True),
    ],
)
def test_published_demo_values_guard_only_a_demo_on_loopback(
    gbg: str, bind: str, refused: bool
) -> None:
    secrets = {
        "WEBHOOK_PASSWORD": ("demo-password-for-make-run-only",),
        "WEBHOOK_API_KEY": (None,),
        "API_TOKENS": ("a-token-of-our-own-9c2d-6e0a", "demo-token-for-make-run-only"),
    }
    problems = demo_values(secrets, gbg, bind)
    assert [p.split(":")[0] for p in problems] == (
        ["RECEIVER_WEBHOOK_PASSWORD", "RECEIVER_API_TOKENS"] if refused else []
    )
    assert demo_values({"API_TOKENS": ("a-token-of-our-own-9c2d-6e0a",)}, gbg, bind) == []
    assert all(
        p.endswith(f"(GBG is {gbg}, the bind {bind}); set a secret of your own") for p in problems
    )


def test_the_web_role_takes_the_demo_values_for_a_demo_on_loopback() -> None:
    demo = {
        "RECEIVER_GBG_BASE_URL": "http://127.0.0.1:8001",
        "RECEIVER_BIND": "127.0.0.1:8000",
        "RECEIVER_WEBHOOK_USERNAME": "demo",
        "RECEIVER_WEBHOOK_PASSWORD": "demo-password-for-make-run-only",
        "RECEIVER_API_TOKENS": "demo-token-for-make-run-only",
    }
    Settings.from_env(demo).check_web()  # make run's settings: no refusal
    with pytest.raises(ConfigError, match="RECEIVER_API_TOKENS: is a published demo value"):
        Settings.from_env(demo | {"RECEIVER_BIND": "0.0.0.0:8000"}).check_web()


def test_web_with_real_gbg_and_the_demo_values_does_not_start(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        RECEIVER_GBG_CLIENT_ID="real-client",
        RECEIVER_GBG_CLIENT_SECRET="real-secret-7f3e-a91c-55d0",
        RECEIVER_BIND="0.0.0.0:8000",
        RECEIVER_WEBHOOK_USERNAME="demo",
        RECEIVER_WEBHOOK_PASSWORD="demo-password-for-make-run-only",
        RECEIVER_API_TOKENS="demo-token-for-make-run-only",
    )
    refused = run(["web"], env)
    assert refused.returncode == 1
    assert "RECEIVER_WEBHOOK_PASSWORD: is a published demo value" in refused.stderr
    assert "RECEIVER_API_TOKENS: is a published demo value" in refused.stderr


@pytest.mark.parametrize(
    ("bind", "local"),
    [
        ("127.0.0.1:8000", True),
        ("[::1]:8000", True),
        ("localhost:8000", True),
        ("unix:/run/gbg-receiver.sock", True),
        ("0.0.0.0:8000", False),
        ("[::]:8000", False),
        ("Xlocalhost:8000", False),  # a name that only contains "localhost"
        ("10.0.0.5:8000", False),
    ],
)
def test_a_bind_is_loopback_only_when_its_host_is_this_machine(bind: str, local: bool) -> None:
    assert loopback_bind(bind) is local
