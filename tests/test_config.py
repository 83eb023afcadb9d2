from __future__ import annotations

import base64
import sys

import pytest

from receiver.config import Settings
from receiver.errors import ConfigError
from receiver.store.engine import make_engine
from receiver.web import create_app

BASIC = {"RECEIVER_WEBHOOK_USERNAME": "u", "RECEIVER_WEBHOOK_PASSWORD": "pw-8f2c-41d9-b7e0-3a6c59"}


def test_defaults_are_the_contracts() -> None:
    s = Settings.from_env(BASIC)
    assert s.database_url == "sqlite:///var/receiver.db"
    assert s.bind == "127.0.0.1:8000"
    assert s.gbg_url == "https://eu.platform.go.gbgplc.com"
    assert s.gbg_token_url == "https://api.auth.gbgplc.com/as/token.oauth2"
    assert s.gbg_api_version == "v2"
    assert s.webhook_api_key_header == "X-API-Key"
    assert s.webhook_auth == "required"
    assert s.api_tokens == ()
    assert (s.webhook_timeout, s.confirm_delay, s.poll_interval) == (300, 1, 10)
    assert (s.poll_error_backoff, s.poll_max_errors, s.poll_max_interval) == (5, 30, 300)
    assert (s.poll_concurrency, s.gbg_rate_limit, s.instance_ttl) == (8, 20, 604800)
    assert (s.max_body_bytes, s.trusted_proxies, s.store_pii) == (1048576, 0, False)
    assert s.log_format == "json"


TOKENS = tuple(f"token-{n}-4c1e-93ba-7d05-e2f8" for n in "abc")


def test_values_are_typed() -> None:
    s = Settings.from_env(
        BASIC
        | {
            "RECEIVER_POLL_INTERVAL": "2.5",
            "RECEIVER_POLL_MAX_ERRORS": "3",
            "RECEIVER_STORE_PII": "true",
            "RECEIVER_API_TOKENS": f"{TOKENS[0]}, {TOKENS[1]},,{TOKENS[2]}",
            "RECEIVER_TRUSTED_PROXIES": "1",
        }
    )
    assert s.poll_interval == 2.5
    assert s.poll_max_errors == 3
    assert s.store_pii is True
    assert s.api_tokens == TOKENS
    assert s.trusted_proxies == 1


def test_every_bad_variable_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            BASIC
            | {
                "RECEIVER_POLL_INTERVAL": "soon",
                "RECEIVER_POLL_MAX_ERRORS": "2.5",
                "RECEIVER_STORE_PII": "maybe",
                "RECEIVER_GBG_RATE_LIMIT": "nan",
            }
        )
    message = str(caught.value)
    for name in ("POLL_INTERVAL", "POLL_MAX_ERRORS", "STORE_PII", "GBG_RATE_LIMIT"):
        assert f"RECEIVER_{name}:" in message
    assert len(caught.value.problems) == 4


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RECEIVER_GBG_API_VERSION": "v3"}, "RECEIVER_GBG_API_VERSION"),
        ({"RECEIVER_WEBHOOK_AUTH": "sometimes"}, "RECEIVER_WEBHOOK_AUTH"),
        ({"RECEIVER_LOG_FORMAT": "xml"}, "RECEIVER_LOG_FORMAT"),
        ({"RECEIVER_DATABASE_URL": "mysql://x"}, "RECEIVER_DATABASE_URL"),
        ({"RECEIVER_POLL_CONCURRENCY": "0"}, "RECEIVER_POLL_CONCURRENCY"),
        ({"RECEIVER_POLL_INTERVAL": "-1"}, "RECEIVER_POLL_INTERVAL"),
        ({"RECEIVER_POLL_MAX_INTERVAL": "5"}, "RECEIVER_POLL_MAX_INTERVAL"),
        ({"RECEIVER_TRUSTED_PROXIES": "-1"}, "RECEIVER_TRUSTED_PROXIES"),
        ({"RECEIVER_MAX_BODY_BYTES": "0"}, "RECEIVER_MAX_BODY_BYTES"),
        ({"RECEIVER_GBG_BASE_URL": "ftp://x"}, "RECEIVER_GBG_BASE_URL"),
        ({"RECEIVER_WEBHOOK_API_KEY_HEADER": "Bad Header"}, "RECEIVER_WEBHOOK_API_KEY_HEADER"),
        ({"RECEIVER_GBG_CLIENT_ID": "id"}, "RECEIVER_GBG_CLIENT_SECRET"),
        ({"RECEIVER_GBG_USERNAME": "user"}, "RECEIVER_GBG_PASSWORD"),
        ({"RECEIVER_API_TOKENS": " , "}, "RECEIVER_API_TOKENS"),
        ({"RECEIVER_WORKER_METRICS_BIND": "9100"}, "RECEIVER_WORKER_METRICS_BIND"),
        ({"RECEIVER_WORKER_STALE_AFTER": "-1"}, "RECEIVER_WORKER_STALE_AFTER"),
    ],
)
def test_bad_value_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(BASIC | env)


WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"RECEIVER_WORKER_METRICS_BIND": "9100"},
            "RECEIVER_WORKER_METRICS_BIND: HOST:PORT",
        ),
        (
            {"RECEIVER_WEBHOOK_FOLLOWUPS": "1,2,3,4,5"},
            "RECEIVER_WEBHOOK_FOLLOWUPS: at most 4 positive numbers of seconds, "
            "comma-separated (or none)",
        ),
        (
            {"RECEIVER_WEBHOOK_API_KEY_PREVIOUS": "k" * 32},
            "RECEIVER_WEBHOOK_API_KEY_PREVIOUS: needs RECEIVER_WEBHOOK_API_KEY (the new value)",
        ),
        (
            {"RECEIVER_FORWARD_SECRET_PREVIOUS": WHSEC},
            "RECEIVER_FORWARD_SECRET_PREVIOUS: needs RECEIVER_FORWARD_SECRET (the new value)",
        ),
    ],
)
def test_a_bad_setting_says_what_it_needs(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(BASIC | env)
    assert caught.value.problems == [problem]


def test_a_worker_metrics_bind_of_host_and_port_is_taken() -> None:
    bind = Settings.from_env(BASIC | {"RECEIVER_WORKER_METRICS_BIND": "127.0.0.1:9100"})
    assert bind.worker_metrics_bind == "127.0.0.1:9100"


def test_required_webhook_auth_without_credentials_refuses_to_serve() -> None:
    settings = Settings.from_env({})  # store-only commands need nothing more
    with pytest.raises(ConfigError, match="RECEIVER_WEBHOOK_AUTH"):
        settings.check_web()
    with pytest.raises(ConfigError, match="RECEIVER_WEBHOOK_AUTH"):
        create_app(settings)


def test_an_unknown_variable_is_named_with_the_closest_known_one() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(BASIC | {"RECEIVER_POLL_INTERVALL": "5", "RECEIVER_ZZZ": "1"})
    assert caught.value.problems == [
        "RECEIVER_POLL_INTERVALL: unknown variable; did you mean RECEIVER_POLL_INTERVAL?",
        "RECEIVER_ZZZ: unknown variable",
    ]


def test_the_test_suites_database_variable_is_not_a_typo() -> None:
    assert Settings.from_env(BASIC | {"RECEIVER_TEST_DATABASE_URL": "postgresql://x"})


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("eu", "https://eu.platform.go.gbgplc.com"),
        ("us", "https://us.platform.go.gbgplc.com"),
        ("au", "https://au.platform.go.gbgplc.com"),
    ],
)
def test_region_names_the_platform_host_unless_a_base_url_is_set(region: str, host: str) -> None:
    assert Settings.from_env({"RECEIVER_GBG_REGION": region}).gbg_url == host
    both = {"RECEIVER_GBG_REGION": region, "RECEIVER_GBG_BASE_URL": "http://127.0.0.1:9"}
    assert Settings.from_env(both).gbg_url == "http://127.0.0.1:9"


def test_an_unknown_region_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="RECEIVER_GBG_REGION: must be eu, us, au"):
        Settings.from_env({"RECEIVER_GBG_REGION": "uk"})


def test_webhook_username_without_password_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="RECEIVER_WEBHOOK_PASSWORD"):
        Settings.from_env({"RECEIVER_WEBHOOK_USERNAME": "u"})


STRONG = "Zq3v-8Lw1_KpT6yR0mXe2NcB"  # 24 characters, no placeholder


def test_api_key_alone_or_auth_none_is_enough() -> None:
    Settings.from_env({"RECEIVER_WEBHOOK_API_KEY": STRONG}).check_web()
    loopback = {"RECEIVER_WEBHOOK_AUTH": "none", "RECEIVER_GBG_BASE_URL": "http://127.0.0.1:8001"}
    Settings.from_env(loopback).check_web()
    Settings.from_env(loopback | {"RECEIVER_GBG_BASE_URL": "http://localhost:8001"}).check_web()


@pytest.mark.parametrize(
    "base_url", [None, "https://eu.platform.go.gbgplc.com", "https://10.0.0.5"]
)
def test_no_webhook_authentication_only_with_gbg_on_loopback(base_url: str | None) -> None:
    env = {"RECEIVER_WEBHOOK_AUTH": "none"}
    if base_url is not None:
        env["RECEIVER_GBG_BASE_URL"] = base_url
    with pytest.raises(ConfigError, match="RECEIVER_WEBHOOK_AUTH: 'none' is for demos"):
        Settings.from_env(env).check_web()


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("RECEIVER_WEBHOOK_PASSWORD", "short-but-random-9f", "shorter than 24"),
        ("RECEIVER_WEBHOOK_PASSWORD", "change-me-long-random", "placeholder"),
        ("RECEIVER_WEBHOOK_API_KEY", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "8 different"),
        ("RECEIVER_WEBHOOK_API_KEY", "your-api-key-goes-right-here", "placeholder"),
        ("RECEIVER_API_TOKENS", f"{STRONG},example-token-0123456789", "placeholder"),
        ("RECEIVER_API_TOKENS", f"{STRONG},tiny-9f2a", "shorter than 24"),
    ],
)
def test_a_weak_secret_of_ours_refuses_to_start(variable: str, value: str, why: str) -> None:
    env = {variable: value}
    if variable == "RECEIVER_WEBHOOK_PASSWORD":
        env["RECEIVER_WEBHOOK_USERNAME"] = "gbg"
    settings = Settings.from_env(env)  # workers and store commands use none of them
    with pytest.raises(ConfigError) as refused:
        settings.check_web()
    [problem] = refused.value.problems
    assert problem.startswith(f"{variable}: ")
    assert why in problem
    assert value.split(",")[-1] not in problem  # the message never repeats the secret
    assert "secrets.token_urlsafe" in problem


def test_gbg_credentials_are_gbgs_to_choose() -> None:
    short = {"RECEIVER_GBG_CLIENT_ID": "id", "RECEIVER_GBG_CLIENT_SECRET": "s3cret"}
    assert Settings.from_env(short).gbg_client_secret == "s3cret"


def test_postgresql_without_its_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"RECEIVER_DATABASE_URL: .*gbg-receiver\[postgres\]"):
        make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.mark.parametrize("variable", ["RECEIVER_GBG_BASE_URL", "RECEIVER_GBG_TOKEN_URL"])
def test_plain_http_to_gbg_only_on_loopback(variable: str) -> None:
    with pytest.raises(ConfigError, match=f"{variable}: must be https://"):
        Settings.from_env(BASIC | {variable: "http://gbg.internal.example:8080"})
    for url in ("https://gbg.internal.example", "http://127.0.0.1:8001", "http://localhost:1"):
        Settings.from_env(BASIC | {variable: url})
