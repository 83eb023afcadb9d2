"""Settings: the one place that reads the environment.

Every ``RECEIVER_*`` variable of the contract is parsed here into a frozen dataclass.
Every bad variable is collected, and start-up fails with one ``ConfigError`` naming
each of them: a bad value never becomes a silent default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from receiver.configvalues import PARSERS, unknown_names
from receiver.errors import ConfigError
from receiver.guards import demo_values, loopback, not_whsec, weak_secret

_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_HOST_PORT = re.compile(r"\[?[\w.:-]*\]?:\d{1,5}")
REGIONS = {
    "eu": "https://eu.platform.go.gbgplc.com",
    "us": "https://us.platform.go.gbgplc.com",
    "au": "https://au.platform.go.gbgplc.com",
}
# The one RECEIVER_* name that is not the service's, yet no typo: the test suite's.
OTHER_NAMES = frozenset({"RECEIVER_TEST_DATABASE_URL"})


@dataclass(frozen=True)
class Settings:
    """Typed configuration; defaults are the contract's."""

    database_url: str = "sqlite:///var/receiver.db"
    database_pooled: bool = False  # PgBouncer in transaction mode stands before PostgreSQL
    bind: str = "127.0.0.1:8000"
    web_workers: int | None = None  # None: gunicorn's rule of thumb, 2 x cores + 1
    web_threads: int = 4
    gbg_region: str = "eu"
    gbg_base_url: str | None = None  # None: the region's host
    gbg_token_url: str = "https://api.auth.gbgplc.com/as/token.oauth2"  # noqa: S105 - a URL
    gbg_api_version: str = "v2"
    gbg_timeout: float = 10.0  # read timeout of each GBG call; connect timeout is 3.05 s
    gbg_client_id: str | None = None
    gbg_client_secret: str | None = None
    gbg_username: str | None = None
    gbg_password: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = None
    webhook_api_key: str | None = None
    # While GBG's Webhook module is re-configured by hand: the old value still passes.
    webhook_password_previous: str | None = None
    webhook_api_key_previous: str | None = None
    webhook_api_key_header: str = "X-API-Key"
    webhook_auth: str = "required"
    api_tokens: tuple[str, ...] = ()
    webhook_timeout: float = 300.0
    confirm_delay: float = 1.0
    # After a webhook, the confirming fetch is followed up this many seconds apart while
    # the journey is still running: GBG's module fires seconds before the end.
    webhook_followups: tuple[float, ...] = (1.0, 2.0, 2.0, 2.0)
    poll_interval: float = 10.0
    poll_error_backoff: float = 5.0
    poll_max_errors: int = 30
    poll_max_interval: float = 300.0
    poll_concurrency: int = 8
    poll_lease: float = 90.0  # > two token requests and two fetches at full timeouts
    gbg_rate_limit: float = 20.0
    instance_ttl: float = 604800.0
    max_body_bytes: int = 1048576
    trusted_proxies: int = 0
    store_pii: bool = False
    log_format: str = "json"
    retention_days: float = 30.0
    metrics_dir: str | None = None
    # Set by the web's gunicorn for its workers: the host's inbox writer's socket.
    inbox_socket: str | None = None
    # A worker serves /metrics here too (HOST:PORT), for a host that runs no web.
    worker_metrics_bind: str | None = None
    # /readyz is not ready once no worker has been seen for this long (0: never).
    worker_stale_after: float = 60.0
    # Downstream notifications: each status change, signed, to the application.
    forward_url: str | None = None
    forward_secret: str | None = None
    # While the application moves to the new secret: every message is signed with both.
    forward_secret_previous: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse ``RECEIVER_*`` variables; raise ConfigError naming every bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        known = {"RECEIVER_" + f.name.upper() for f in fields(cls)} | OTHER_NAMES
        problems = unknown_names(env, known)
        for f in fields(cls):
            name = "RECEIVER_" + f.name.upper()
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[f.name] = PARSERS[f.type](raw.strip())
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        settings = cls(**values)  # unparseable variables stand at their defaults here
        failed = {p.split(":", 1)[0] for p in problems}
        problems += [p for p in settings.problems() if p.split(":", 1)[0] not in failed]
        if problems:
            raise ConfigError(problems)
        return settings

    def problems(self) -> list[str]:
        """Cross-field and range checks, each naming its variable."""
        out: list[str] = []

        def need(ok: bool, var: str, why: str) -> None:
            if not ok:
                out.append(f"RECEIVER_{var}: {why}")

        need(
            self.database_url.startswith(("sqlite:", "postgresql")),
            "DATABASE_URL",
            "must be a sqlite:/// or postgresql+psycopg:// URL",
        )
        need(":" in self.bind, "BIND", "must be HOST:PORT")  # or unix:PATH
        scrape = self.worker_metrics_bind
        need(not scrape or bool(_HOST_PORT.fullmatch(scrape)), "WORKER_METRICS_BIND", "HOST:PORT")
        need(self.gbg_api_version in ("v1", "v2"), "GBG_API_VERSION", "must be v1 or v2")
        need(self.gbg_region in REGIONS, "GBG_REGION", "must be " + ", ".join(REGIONS))
        for var, url in (
            ("GBG_BASE_URL", self.gbg_base_url or "https://"),
            ("GBG_TOKEN_URL", self.gbg_token_url),
            ("FORWARD_URL", self.forward_url or "https://"),
        ):
            need(url.startswith(("http://", "https://")), var, "must be an http(s) URL")
            # Plain HTTP would carry GBG's credentials and tokens in the clear: only to
            # a stand-in on this machine (the simulator).
            need(
                not url.startswith("http://") or loopback(url),
                var,
                "must be https:// (http:// only on loopback)",
            )
        need(self.webhook_auth in ("required", "none"), "WEBHOOK_AUTH", "must be required or none")
        need(
            (self.webhook_username is None) == (self.webhook_password is None),
            "WEBHOOK_USERNAME" if self.webhook_password else "WEBHOOK_PASSWORD",
            "RECEIVER_WEBHOOK_USERNAME and RECEIVER_WEBHOOK_PASSWORD go together",
        )
        need(
            bool(_HEADER.match(self.webhook_api_key_header)),
            "WEBHOOK_API_KEY_HEADER",
            "must be an HTTP header name",
        )
        need(
            (self.gbg_username is None) == (self.gbg_password is None),
            "GBG_USERNAME" if self.gbg_password else "GBG_PASSWORD",
            "RECEIVER_GBG_USERNAME and RECEIVER_GBG_PASSWORD go together",
        )
        need(
            (self.gbg_client_id is None) == (self.gbg_client_secret is None),
            "GBG_CLIENT_ID" if self.gbg_client_secret else "GBG_CLIENT_SECRET",
            "RECEIVER_GBG_CLIENT_ID and RECEIVER_GBG_CLIENT_SECRET go together",
        )
        need(
            self.gbg_username is None or self.gbg_client_id is not None,
            "GBG_CLIENT_ID",
            "is required when RECEIVER_GBG_USERNAME is set",
        )
        for var in (
            "webhook_timeout",
            "confirm_delay",
            "poll_error_backoff",
            "instance_ttl",
            "worker_stale_after",
        ):
            need(getattr(self, var) >= 0, var.upper(), "must be >= 0")
        for var in (
            "poll_interval",
            "poll_lease",
            "gbg_rate_limit",
            "retention_days",
            "gbg_timeout",
        ):
            need(getattr(self, var) > 0, var.upper(), "must be > 0")
        need(
            len(self.webhook_followups) <= 4 and all(f > 0 for f in self.webhook_followups),
            "WEBHOOK_FOLLOWUPS",
            "at most 4 positive numbers of seconds, comma-separated (or none)",
        )
        need(
            self.poll_max_interval >= self.poll_interval,
            "POLL_MAX_INTERVAL",
            "must be >= RECEIVER_POLL_INTERVAL",
        )
        for var in (
            "poll_max_errors",
            "poll_concurrency",
            "web_workers",
            "web_threads",
            "max_body_bytes",
        ):
            need(
                getattr(self, var) in (None,) or getattr(self, var) >= 1,
                var.upper(),
                "must be >= 1",
            )
        need(self.trusted_proxies >= 0, "TRUSTED_PROXIES", "must be >= 0")
        need(self.log_format in ("json", "text"), "LOG_FORMAT", "must be json or text")
        need(
            (self.forward_url is None) == (self.forward_secret is None),
            "FORWARD_SECRET" if self.forward_url else "FORWARD_URL",
            "RECEIVER_FORWARD_URL and RECEIVER_FORWARD_SECRET go together",
        )
        for var, key in (
            ("FORWARD_SECRET", self.forward_secret),
            ("FORWARD_SECRET_PREVIOUS", self.forward_secret_previous),
        ):
            if key is not None and (why := not_whsec(key)):
                need(False, var, why)
        for var, previous, current in (
            ("WEBHOOK_PASSWORD_PREVIOUS", self.webhook_password_previous, self.webhook_password),
            ("WEBHOOK_API_KEY_PREVIOUS", self.webhook_api_key_previous, self.webhook_api_key),
            ("FORWARD_SECRET_PREVIOUS", self.forward_secret_previous, self.forward_secret),
        ):
            current_name = "RECEIVER_" + var.removesuffix("_PREVIOUS")
            need(
                previous is None or current is not None,
                var,
                f"needs {current_name} (the new value)",
            )
        return out

    @property
    def _our_secrets(self) -> dict[str, tuple[str | None, ...]]:
        """The secrets that guard this service, by setting (less RECEIVER_)."""
        return {
            "WEBHOOK_PASSWORD": (self.webhook_password,),
            "WEBHOOK_PASSWORD_PREVIOUS": (self.webhook_password_previous,),
            "WEBHOOK_API_KEY": (self.webhook_api_key,),
            "WEBHOOK_API_KEY_PREVIOUS": (self.webhook_api_key_previous,),
            "API_TOKENS": self.api_tokens,
        }

    def check_web(self) -> None:
        """Raise ConfigError unless the webhook can be served as configured.

        Only the web role needs webhook credentials, and only it checks them (and the API
        tokens) for strength: commands that touch the store alone, and workers, run with
        nothing but their own settings, whatever the env file holds for the web. Without
        authentication anyone could make up ids that each cost ~30 fetches: that is for
        demos, with GBG on loopback.
        """
        if self.webhook_auth == "none" and not loopback(self.gbg_url):
            raise ConfigError(
                [
                    "RECEIVER_WEBHOOK_AUTH: 'none' is for demos with GBG on loopback "
                    f"(RECEIVER_GBG_BASE_URL is {self.gbg_url}); set webhook credentials"
                ]
            )
        weak = [
            f"RECEIVER_{var}: {weakness}"
            for var, values in self._our_secrets.items()
            for weakness in [next(filter(None, map(weak_secret, filter(None, values))), None)]
            if weakness
        ]
        if weak or (weak := demo_values(self._our_secrets, self.gbg_url, self.bind)):
            raise ConfigError(weak)
        if self.webhook_auth == "required" and not self.webhook_credentials_set:
            raise ConfigError(
                [
                    "RECEIVER_WEBHOOK_AUTH: is 'required' but neither "
                    "RECEIVER_WEBHOOK_USERNAME/PASSWORD nor RECEIVER_WEBHOOK_API_KEY is set "
                    "(set one, or RECEIVER_WEBHOOK_AUTH=none for demos)"
                ]
            )

    @property
    def gbg_url(self) -> str:
        """The platform host: RECEIVER_GBG_BASE_URL, else the region's."""
        return self.gbg_base_url or REGIONS[self.gbg_region]

    @property
    def webhook_credentials_set(self) -> bool:
        return self.webhook_username is not None or self.webhook_api_key is not None

    @property
    def gbg_configured(self) -> bool:
        return self.gbg_client_id is not None


def child_environ(overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child process: ours, with ``overrides`` on top."""
    return {**os.environ, **overrides}
