"""The exception tree of gbg-receiver.

    ReceiverError
    ├── ConfigError          bad RECEIVER_* variables; start-up stops
    ├── StoreUnavailable     our database does not answer; HTTP 503 + Retry-After
    ├── Problem              a request the sender must not retry as is (RFC 9457 body)
    ├── Throttled            an operator's fetch would wait too long; 429/503 + Retry-After
    └── GbgError             talking to GBG GO went wrong
        ├── GbgUnavailable   timeout, connection, 5xx, 429 (retry_after), garbage 200
        ├── GbgAuthError     the token endpoint refused our credentials, or 401 twice
        └── GbgRejected      any other 4xx, e.g. 404 for an unknown instance

Views turn these into HTTP in one place (``receiver.web.problems``); the poller counts GbgError
as a failed fetch under GBG's policy.
"""

from __future__ import annotations

from receiver.problemtypes import KINDS


class ReceiverError(Exception):
    """Base of every error raised on purpose by gbg-receiver."""


class ConfigError(ReceiverError):
    """One or more configuration variables are bad; each problem names its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class StoreUnavailable(ReceiverError):
    """The database could not be reached or did not commit."""


class Problem(ReceiverError):
    """An RFC 9457 problem answered to the client: one of the kinds in
    ``receiver.problemtypes`` (its status and title), ``field`` naming the part of the
    request at fault where there is one."""

    def __init__(
        self,
        kind: str,
        detail: str = "",
        headers: dict[str, str] | None = None,
        *,
        field: str | None = None,
    ) -> None:
        self.status, self.title, _ = KINDS[kind]
        super().__init__(f"{self.status} {self.title}: {detail}")
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}
        self.field = field


class Superseded(Problem):
    """A message that would now arrive after a later status of its instance: not sent."""

    def __init__(self, seq: int, instance_id: str, detail: str) -> None:
        super().__init__("superseded", f"message {seq}: {detail}")
        self.instance_id = instance_id


class Throttled(ReceiverError):
    """A fetch could not start within the caller's wait: try again after ``retry_after``.

    ``gbg_down`` when GBG-wide failures paused every fetch (a 503), else the shared rate
    limit or GBG's own 429 is what holds it back (a 429).
    """

    def __init__(self, retry_after: float, *, gbg_down: bool) -> None:
        super().__init__(f"no fetch slot for {retry_after:.1f} s")
        self.retry_after = retry_after
        self.gbg_down = gbg_down


class GbgError(ReceiverError):
    """A state fetch, journey start or token request did not succeed."""

    kind = "error"

    @property
    def wide(self) -> bool:
        """The failure says nothing about the instance asked for: GBG itself, or our
        access to it, is failing (no connection, timeouts, 5xx, refused credentials)."""
        return self.kind in ("connect", "timeout", "auth", "token") or self.kind.startswith(
            "http_5"
        )


class GbgUnavailable(GbgError):
    """GBG did not answer usefully; try again later (after ``retry_after`` when given)."""

    def __init__(
        self, message: str, *, kind: str = "unavailable", retry_after: float | None = None
    ):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class GbgAuthError(GbgError):
    """GBG refused our credentials or token."""

    kind = "auth"


class GbgRejected(GbgError):
    """GBG answered a 4xx other than 401/429, e.g. 404 for an unknown instance."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.kind = f"http_{status}"
