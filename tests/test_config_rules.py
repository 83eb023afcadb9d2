# ruff: noqa: E501 (the expected lines are printed whole, as the operator reads them)
"""Every configuration rule, by the exact line it prints: the variable it names, the
reason, and the edges of each range (what is refused and the first value allowed)."""

from __future__ import annotations

import pytest

from receiver.config import Settings
from receiver.errors import ConfigError

BASIC = {
    "RECEIVER_WEBHOOK_USERNAME": "gbg",
    "RECEIVER_WEBHOOK_PASSWORD": "a-strong-password-for-tests-1",
}
HINT = "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


@pytest.mark.parametrize(
    ("env", "problems"),
    [
        (
            {"RECEIVER_DATABASE_URL": "mysql://x"},
            ["RECEIVER_DATABASE_URL: must be a sqlite:/// or postgresql+psycopg:// URL"],
        ),
        ({"RECEIVER_BIND": "8000"}, ["RECEIVER_BIND: must be HOST:PORT"]),
        ({"RECEIVER_BIND": "unix:/run/r.sock"}, []),
        ({"RECEIVER_GBG_API_VERSION": "v3"}, ["RECEIVER_GBG_API_VERSION: must be v1 or v2"]),
        ({"RECEIVER_GBG_REGION": "mars"}, ["RECEIVER_GBG_REGION: must be eu, us, au"]),
        ({"RECEIVER_GBG_BASE_URL": "ftp://x"}, ["RECEIVER_GBG_BASE_URL: must be an http(s) URL"]),
        (
            {"RECEIVER_GBG_BASE_URL": "http://gbg.example.com"},
            ["RECEIVER_GBG_BASE_URL: must be https:// (http:// only on loopback)"],
        ),
        ({"RECEIVER_GBG_BASE_URL": "http://127.0.0.1:8001"}, []),
        ({"RECEIVER_GBG_TOKEN_URL": "http://[::1]:9/t"}, []),
        (
            {"RECEIVER_GBG_TOKEN_URL": "http://auth.example.com/t"},
            ["RECEIVER_GBG_TOKEN_URL: must be https:// (http:// only on loopback)"],
        ),
        (
            {
                "RECEIVER_FORWARD_URL": "http://app.example.com/h",
                "RECEIVER_FORWARD_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            },
            ["RECEIVER_FORWARD_URL: must be https:// (http:// only on loopback)"],
        ),
        (
            {"RECEIVER_FORWARD_URL": "https://app.example.com/h"},
            [
                "RECEIVER_FORWARD_SECRET: RECEIVER_FORWARD_URL and RECEIVER_FORWARD_SECRET go together"
            ],
        ),
        (
            {"RECEIVER_FORWARD_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            ["RECEIVER_FORWARD_URL: RECEIVER_FORWARD_URL and RECEIVER_FORWARD_SECRET go together"],
        ),
        (
            {
                "RECEIVER_FORWARD_URL": "https://app.example.com/h",
                "RECEIVER_FORWARD_SECRET": "whsec_c2hvcnQ=",
            },
            [
                "RECEIVER_FORWARD_SECRET: must be whsec_ and the base64 of 24 random bytes or more; make one: python3 -c \"import base64,secrets; print('whsec_'+base64.b64encode(secrets.token_bytes(32)).decode())\""
            ],
        ),
        (
            {"RECEIVER_WEBHOOK_AUTH": "sometimes"},
            ["RECEIVER_WEBHOOK_AUTH: must be required or none"],
        ),
        (
            {"RECEIVER_WEBHOOK_PASSWORD": ""},
            [
                "RECEIVER_WEBHOOK_PASSWORD: RECEIVER_WEBHOOK_USERNAME and RECEIVER_WEBHOOK_PASSWORD go together"
            ],
        ),
        (
            {"RECEIVER_WEBHOOK_API_KEY_HEADER": "Bad Header"},
            ["RECEIVER_WEBHOOK_API_KEY_HEADER: must be an HTTP header name"],
        ),
        (
            {"RECEIVER_GBG_USERNAME": "user"},
            [
                "RECEIVER_GBG_PASSWORD: RECEIVER_GBG_USERNAME and RECEIVER_GBG_PASSWORD go together",
                "RECEIVER_GBG_CLIENT_ID: is required when RECEIVER_GBG_USERNAME is set",
            ],
        ),
        (
            {"RECEIVER_GBG_PASSWORD": "pw"},
            ["RECEIVER_GBG_USERNAME: RECEIVER_GBG_USERNAME and RECEIVER_GBG_PASSWORD go together"],
        ),
        (
            {"RECEIVER_GBG_CLIENT_ID": "id"},
            [
                "RECEIVER_GBG_CLIENT_SECRET: RECEIVER_GBG_CLIENT_ID and RECEIVER_GBG_CLIENT_SECRET go together"
            ],
        ),
        (
            {"RECEIVER_GBG_CLIENT_SECRET": "s"},
            [
                "RECEIVER_GBG_CLIENT_ID: RECEIVER_GBG_CLIENT_ID and RECEIVER_GBG_CLIENT_SECRET go together"
            ],
        ),
        (
            {"RECEIVER_GBG_USERNAME": "u", "RECEIVER_GBG_PASSWORD": "p"},
            ["RECEIVER_GBG_CLIENT_ID: is required when RECEIVER_GBG_USERNAME is set"],
        ),
        (
            {
                "RECEIVER_WEBHOOK_TIMEOUT": "-0.1",
                "RECEIVER_CONFIRM_DELAY": "-1",
                "RECEIVER_POLL_ERROR_BACKOFF": "-1",
                "RECEIVER_INSTANCE_TTL": "-1",
            },
            [
                "RECEIVER_WEBHOOK_TIMEOUT: must be >= 0",
                "RECEIVER_CONFIRM_DELAY: must be >= 0",
                "RECEIVER_POLL_ERROR_BACKOFF: must be >= 0",
                "RECEIVER_INSTANCE_TTL: must be >= 0",
            ],
        ),
        (
            {
                "RECEIVER_WEBHOOK_TIMEOUT": "0",
                "RECEIVER_CONFIRM_DELAY": "0",
                "RECEIVER_POLL_ERROR_BACKOFF": "0",
                "RECEIVER_INSTANCE_TTL": "0",
                "RECEIVER_TRUSTED_PROXIES": "0",
            },
            [],
        ),
        (
            {
                "RECEIVER_POLL_INTERVAL": "0",
                "RECEIVER_POLL_LEASE": "0",
                "RECEIVER_GBG_RATE_LIMIT": "0",
                "RECEIVER_RETENTION_DAYS": "0",
                "RECEIVER_GBG_TIMEOUT": "0",
            },
            [
                "RECEIVER_POLL_INTERVAL: must be > 0",
                "RECEIVER_POLL_LEASE: must be > 0",
                "RECEIVER_GBG_RATE_LIMIT: must be > 0",
                "RECEIVER_RETENTION_DAYS: must be > 0",
                "RECEIVER_GBG_TIMEOUT: must be > 0",
            ],
        ),
        (
            {"RECEIVER_POLL_MAX_INTERVAL": "9.9"},
            ["RECEIVER_POLL_MAX_INTERVAL: must be >= RECEIVER_POLL_INTERVAL"],
        ),
        ({"RECEIVER_POLL_MAX_INTERVAL": "10"}, []),
        (
            {
                "RECEIVER_POLL_MAX_ERRORS": "0",
                "RECEIVER_POLL_CONCURRENCY": "0",
                "RECEIVER_WEB_WORKERS": "0",
                "RECEIVER_WEB_THREADS": "0",
                "RECEIVER_MAX_BODY_BYTES": "0",
            },
            [
                "RECEIVER_POLL_MAX_ERRORS: must be >= 1",
                "RECEIVER_POLL_CONCURRENCY: must be >= 1",
                "RECEIVER_WEB_WORKERS: must be >= 1",
                "RECEIVER_WEB_THREADS: must be >= 1",
                "RECEIVER_MAX_BODY_BYTES: must be >= 1",
            ],
        ),
        (
            {
                "RECEIVER_POLL_MAX_ERRORS": "1",
                "RECEIVER_POLL_CONCURRENCY": "1",
                "RECEIVER_WEB_WORKERS": "1",
                "RECEIVER_WEB_THREADS": "1",
                "RECEIVER_MAX_BODY_BYTES": "1",
            },
            [],
        ),
        ({"RECEIVER_TRUSTED_PROXIES": "-1"}, ["RECEIVER_TRUSTED_PROXIES: must be >= 0"]),
        ({"RECEIVER_LOG_FORMAT": "xml"}, ["RECEIVER_LOG_FORMAT: must be json or text"]),
        ({"RECEIVER_LOG_FORMAT": "text"}, []),
        (
            {"RECEIVER_WEBHOOK_PASSWORD": "abcdefghijk"},
            ["RECEIVER_WEBHOOK_PASSWORD: is shorter than 24 characters; " + HINT],
        ),
        (
            {"RECEIVER_WEBHOOK_PASSWORD": "short"},
            ["RECEIVER_WEBHOOK_PASSWORD: is shorter than 24 characters; " + HINT],
        ),
        (
            {"RECEIVER_WEBHOOK_API_KEY": "change-me-change-me-change-me"},
            ["RECEIVER_WEBHOOK_API_KEY: is a placeholder, not a secret; " + HINT],
        ),
        (
            {
                "RECEIVER_API_TOKENS": "a-good-token-of-24-chars-or-more,aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            },
            [
                "RECEIVER_API_TOKENS: has fewer than 8 different characters, no random secret; "
                + HINT
            ],
        ),
        ({"RECEIVER_DATABASE_URL": "postgresql+psycopg://u@db.internal/receiver"}, []),
        ({"RECEIVER_GBG_API_VERSION": "v1"}, []),
        (
            {
                "RECEIVER_POLL_INTERVAL": "0.5",
                "RECEIVER_POLL_LEASE": "0.5",
                "RECEIVER_GBG_RATE_LIMIT": "0.5",
                "RECEIVER_RETENTION_DAYS": "0.5",
                "RECEIVER_GBG_TIMEOUT": "0.5",
            },
            [],
        ),
        (
            {"RECEIVER_POLL_MAX_INTERVAL": "1:2", "RECEIVER_POLL_INTERVAL": "400"},
            ["RECEIVER_POLL_MAX_INTERVAL: '1:2' is not a number"],
        ),
        ({"RECEIVER_POLL_INTERVAL": "soon"}, ["RECEIVER_POLL_INTERVAL: 'soon' is not a number"]),
        (
            {"RECEIVER_POLL_INTERVAL": "nan"},
            ["RECEIVER_POLL_INTERVAL: 'nan' is not a finite number"],
        ),
        ({"RECEIVER_POLL_INTERVAL": "  "}, []),  # blank: unset, the default stands
        # A value that did not parse stands at its default: the rules it then breaks with
        # others are not blamed on it a second time.
        (
            {"RECEIVER_POLL_MAX_INTERVAL": "abc", "RECEIVER_POLL_INTERVAL": "400"},
            ["RECEIVER_POLL_MAX_INTERVAL: 'abc' is not a number"],
        ),
        (
            {"RECEIVER_BINDD": "x"},
            ["RECEIVER_BINDD: unknown variable; did you mean RECEIVER_BIND?"],
        ),
        (
            {"RECEIVER_POLL_INTERVAL": "inf"},
            ["RECEIVER_POLL_INTERVAL: 'inf' is not a finite number"],
        ),
        (
            {"RECEIVER_POLL_INTERVAL": "-inf"},
            ["RECEIVER_POLL_INTERVAL: '-inf' is not a finite number"],
        ),
        (
            {"RECEIVER_POLL_INTERVAL": "1e400"},
            ["RECEIVER_POLL_INTERVAL: '1e400' is not a finite number"],
        ),
        (
            {"RECEIVER_POLL_MAX_ERRORS": "2.5"},
            ["RECEIVER_POLL_MAX_ERRORS: '2.5' is not a whole number"],
        ),
        ({"RECEIVER_STORE_PII": "maybe"}, ["RECEIVER_STORE_PII: 'maybe' is not true or false"]),
        ({"RECEIVER_STORE_PII": "YES"}, []),
        ({"RECEIVER_API_TOKENS": " , "}, ["RECEIVER_API_TOKENS: lists no token"]),
        (
            {"RECEIVER_POLL_INTERVALL": "3"},
            ["RECEIVER_POLL_INTERVALL: unknown variable; did you mean RECEIVER_POLL_INTERVAL?"],
        ),
        (
            {"RECEIVER_NOTHING_LIKE_IT_AT_ALL": "3"},
            ["RECEIVER_NOTHING_LIKE_IT_AT_ALL: unknown variable"],
        ),
    ],
)
def test_each_rule_names_its_variable_and_its_reason(
    env: dict[str, str], problems: list[str]
) -> None:
    if not problems:
        Settings.from_env(BASIC | env).check_web()
        return
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(BASIC | env).check_web()  # the secrets' rules: the web's
    assert caught.value.problems == problems
    assert str(caught.value) == "invalid configuration:\n  " + "\n  ".join(problems)


def test_a_password_without_its_user_names_the_user() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RECEIVER_WEBHOOK_PASSWORD": "a-strong-password-for-tests-1"})
    assert caught.value.problems == [
        "RECEIVER_WEBHOOK_USERNAME: RECEIVER_WEBHOOK_USERNAME and RECEIVER_WEBHOOK_PASSWORD go together"
    ]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("FALSE", False),
        ("off", False),
        ("No", False),
    ],
)
def test_booleans_take_the_usual_spellings(raw: str, value: bool) -> None:
    assert Settings.from_env(BASIC | {"RECEIVER_STORE_PII": raw}).store_pii is value


def test_the_process_environment_is_read_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (BASIC | {"RECEIVER_POLL_INTERVAL": "7"}).items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env().poll_interval == 7.0


def test_serving_webhooks_needs_credentials_or_a_demo_with_gbg_on_loopback() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({}).check_web()
    assert caught.value.problems == [
        "RECEIVER_WEBHOOK_AUTH: is 'required' but neither RECEIVER_WEBHOOK_USERNAME/PASSWORD "
        "nor RECEIVER_WEBHOOK_API_KEY is set (set one, or RECEIVER_WEBHOOK_AUTH=none for demos)"
    ]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RECEIVER_WEBHOOK_AUTH": "none"}).check_web()
    assert caught.value.problems == [
        "RECEIVER_WEBHOOK_AUTH: 'none' is for demos with GBG on loopback (RECEIVER_GBG_BASE_URL "
        "is https://eu.platform.go.gbgplc.com); set webhook credentials"
    ]
    demo = {"RECEIVER_WEBHOOK_AUTH": "none", "RECEIVER_GBG_BASE_URL": "http://127.0.0.1:8001"}
    Settings.from_env(demo).check_web()
    Settings.from_env(BASIC).check_web()


@pytest.mark.parametrize(
    ("raw", "value", "problem"),
    [
        ("1,2,4", (1.0, 2.0, 4.0), None),
        (" 0.5 , 1 ", (0.5, 1.0), None),
        ("none", (), None),
        ("1,2,4,8,16", None, "at most 4 positive numbers"),
        ("1,0", None, "at most 4 positive numbers"),
        ("1,x", None, "'x' is not a number"),
    ],
)
def test_webhook_follow_ups_are_a_short_list_of_seconds(
    raw: str, value: tuple[float, ...] | None, problem: str | None
) -> None:
    env = {"RECEIVER_WEBHOOK_FOLLOWUPS": raw}
    if problem is None:
        assert Settings.from_env(env).webhook_followups == value
        return
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    [said] = refused.value.problems
    assert said.startswith("RECEIVER_WEBHOOK_FOLLOWUPS: ")
    assert problem in said
