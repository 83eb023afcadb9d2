"""Our own secrets at start-up, rule by rule, at the edges of each rule."""

from __future__ import annotations

import base64

import pytest

from receiver.guards import MIN_SECRET, loopback, not_whsec, weak_secret

HINT = "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("abcdefgh" * 3, None),  # 24 characters, 8 different: enough
        ("abcdefg" * 4, "is a placeholder, not a secret; " + HINT),  # 7 different
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
