"""The operator commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.testing.simulator import Simulator
from tests.processes import base_env, gbg_env, run

ROOT = Path(__file__).resolve().parents[1]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run(list(args), env)


def test_operator_commands_register_show_list_and_poll(tmp_path: Path, sim: Simulator) -> None:
    env = gbg_env(
        tmp_path,
        sim.base_url,
    )
    assert cli(env, "migrate").stdout.strip() == "schema is up to date"
    assert cli(env, "migrate").returncode == 0  # idempotent
    registered = cli(env, "register", "op-1", "--reference", "order-1")
    assert json.loads(registered.stdout)["reference"] == "order-1"
    sim.set_status("op-1", "Completed", "Of Age")
    polled = json.loads(cli(env, "poll", "op-1").stdout)
    assert (polled["status"], polled["source"], polled["outcome"]) == ("completed", "api", "Of Age")
    shown = json.loads(cli(env, "show", "op-1").stdout)
    assert shown["status"] == "completed"
    kinds = [entry["kind"] for entry in shown["timeline"]]
    assert kinds == ["registered", "fetch", "status"]
    decided = shown["timeline"][-1]
    assert (decided["from"], decided["to"], decided["source"]) == (
        "in_progress",
        "completed",
        "api",
    )
    assert decided["decidedBy"] == "an operator's poll"
    assert shown["timeline"][1]["gbgStatus"] in ("Completed", "COMPLETED")
    started = json.loads(cli(env, "start", "age-check@latest", "--reference", "order-2").stdout)
    assert (started["reference"], started["status"]) == ("order-2", "in_progress")
    assert started["instanceUrl"].endswith("/journey/" + started["instanceId"])
    listed = cli(env, "list", "--status", "completed").stdout.splitlines()
    assert [json.loads(line)["instanceId"] for line in listed] == ["op-1"]
    assert cli(env, "list", "--status", "failed").stdout == ""


def test_commands_fail_clearly(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cli(env, "migrate")
    unknown = cli(env, "show", "nope")
    assert unknown.returncode == 1
    assert "no such instance: nope" in unknown.stderr
    assert "RECEIVER_GBG_CLIENT_ID" in cli(env, "poller").stderr
    assert cli(env, "register", "bad/id").returncode == 2
    bad = cli(base_env(tmp_path, RECEIVER_CONFIRM_DELAY="-1"), "list")
    assert bad.returncode == 1
    assert "RECEIVER_CONFIRM_DELAY: must be >= 0" in bad.stderr


def test_purge_deletes_raw_deliveries_past_retention(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cli(env, "migrate")
    from receiver import usecases
    from receiver.config import Settings
    from receiver.services import build_services
    from receiver.store import Delivery

    services = build_services(Settings(database_url=env["RECEIVER_DATABASE_URL"]))
    services.store.append_delivery(Delivery("p-1", 1000.0, b"{}", {}, None, None))
    services.store.append_delivery(Delivery("p-2", 1000.0, b"{}", {}, None, None))
    assert usecases.fold_inbox(services, limit=1) == 1  # p-2 stays in the inbox
    services.store.engine.dispose()
    assert (
        cli(env, "purge").stdout.strip()
        == "deleted 1 deliveries and messages, forgot 0 instances' data"
    )
    assert cli(env, "purge", "--days", "0").returncode == 2
    assert json.loads(cli(env, "show", "p-1").stdout)["instanceId"] == "p-1"
    assert "no such instance: p-2" in cli(env, "show", "p-2").stderr  # unfolded, and kept


def test_store_commands_need_only_the_database_url(tmp_path: Path) -> None:
    env = {k: v for k, v in base_env(tmp_path).items() if not k.startswith("RECEIVER_WEBHOOK")}
    env.pop("RECEIVER_API_TOKENS")
    assert [k for k in env if k.startswith("RECEIVER_")] == [
        "RECEIVER_DATABASE_URL",
        "RECEIVER_WEB_WORKERS",
    ]
    for args in (["migrate"], ["register", "alone-1"], ["show", "alone-1"], ["list"], ["purge"]):
        done = cli(env, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert "RECEIVER_WEBHOOK_AUTH" in cli(env, "web").stderr  # serving does need them


def test_serve_runs_the_simulator_only_on_a_loopback_gbg_url(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        RECEIVER_GBG_CLIENT_ID="demo-client",
        RECEIVER_GBG_CLIENT_SECRET="demo-secret",
    )
    refused = cli(env, "serve", "--simulator")
    assert refused.returncode == 1
    assert "RECEIVER_GBG_BASE_URL: --simulator serves GBG on this machine" in refused.stderr


def test_a_typo_in_a_variable_stops_every_command(tmp_path: Path) -> None:
    typo = cli(base_env(tmp_path, RECEIVER_POLL_INTERVALL="5"), "list")
    assert typo.returncode == 1
    assert "RECEIVER_POLL_INTERVALL: unknown variable; did you mean RECEIVER_POLL_INTERVAL?" in (
        typo.stderr
    )


def test_a_store_that_is_down_is_one_clear_line(tmp_path: Path) -> None:
    from tests.processes import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"  # nothing listens
    down = cli(base_env(tmp_path, RECEIVER_DATABASE_URL=url), "show", "any-1")
    assert down.returncode == 1
    assert down.stderr.startswith("Error: the store is unavailable: OperationalError")
    assert "Traceback" not in down.stderr


def test_outbox_lists_and_replay_sends_again(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cli(env, "migrate")
    from receiver import usecases
    from receiver.domain.model import COMPLETED, Fetched, GbgState, Registered
    from receiver.domain.schedule import Policy
    from receiver.store import Store

    store = Store.from_url(env["RECEIVER_DATABASE_URL"])
    changes = [
        (Registered("o-1"), 1000.0),
        (Fetched("o-1", GbgState(COMPLETED, "Completed")), 1001.0),
    ]
    usecases.fold(store, Policy(), changes, forward=True)
    [message] = store.messages(status=None, limit=10)
    with store.db.write() as conn:  # as if it had used up its attempts
        conn.exec_driver_sql("UPDATE outbox SET status = 'failed', attempts = 8")
    store.engine.dispose()
    [line] = cli(env, "outbox", "--failed").stdout.splitlines()
    listed = json.loads(line)
    assert (listed["id"], listed["status"], listed["body"]["type"]) == (
        message.seq,
        "failed",
        "journey.completed",
    )
    replayed = json.loads(cli(env, "replay", str(message.seq)).stdout)
    assert (replayed["status"], replayed["attempts"]) == ("pending", 0)
    assert cli(env, "outbox", "--failed").stdout == ""
    assert "no such message: 999" in cli(env, "replay", "999").stderr
    huge = str(2**63)  # no store column holds it: no message, not a crash
    assert f"no such message: {huge}" in cli(env, "replay", huge).stderr


def test_replay_of_a_superseded_message_is_refused_with_why(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cli(env, "migrate")
    from receiver.config import Settings
    from receiver.services import build_services
    from receiver.store import outbox

    store = build_services(Settings(database_url=env["RECEIVER_DATABASE_URL"])).store
    with store.db.write() as conn:
        outbox.enqueue(conn, [(1, "c-1", "{}"), (2, "c-1", "{}")], 1000.0)
    [first] = store.claim_messages("w", 1000.0, 10, 30)
    store.record_attempt(first.seq, "w", now=1000.0, error="http_500", next_attempt_at=None)
    [second] = store.claim_messages("w", 1000.0, 10, 30)
    store.record_attempt(second.seq, "w", now=1000.0, error=None, next_attempt_at=None)
    store.engine.dispose()
    refused = cli(env, "replay", "1")
    assert refused.returncode == 1
    assert "not replayed: message 1: message 2, a later status of its instance, was delivered" in (
        refused.stderr
    )
    assert json.loads(cli(env, "replay", "2").stdout)["status"] == "pending"


def test_quarantine_lists_deliveries_set_aside_and_refold_puts_them_back(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cli(env, "migrate")
    from receiver import usecases
    from receiver.config import Settings
    from receiver.services import build_services
    from receiver.store import Delivery

    store = build_services(Settings(database_url=env["RECEIVER_DATABASE_URL"])).store
    store.append_delivery(Delivery("q-1", 1000.0, b"{}", {}, None, None))
    [aside] = store.waiting_deliveries(1)
    for _ in range(usecases.FOLD_TRIES):
        store.fold_failed(aside, "RuntimeError: a bug", 1000.0, usecases.FOLD_TRIES)
    store.engine.dispose()
    [listed] = [json.loads(line) for line in cli(env, "quarantine").stdout.splitlines()]
    assert (listed["id"], listed["instanceId"], listed["foldError"]) == (
        aside,
        "q-1",
        "RuntimeError: a bug",
    )
    assert cli(env, "refold").returncode == 2  # an id or --all
    assert "no such delivery set aside: 999" in cli(env, "refold", "999").stderr
    assert cli(env, "refold", "--all").stdout.strip() == "1 deliveries back in the inbox"
    assert cli(env, "quarantine").stdout == ""


def test_the_cli_answers_version_and_short_help(tmp_path: Path) -> None:
    from importlib.metadata import version

    env = base_env(tmp_path)
    shown = cli(env, "--version")
    assert shown.returncode == 0
    assert version("gbg-receiver") in shown.stdout
    short = cli(env, "-h")
    assert short.returncode == 0
    assert "Usage:" in short.stdout
    assert "quarantine" in short.stdout
    assert "Usage:" in cli(env, "show", "-h").stdout


def test_people_get_tables_and_summaries_scripts_get_json(tmp_path: Path, sim: Simulator) -> None:
    env = gbg_env(tmp_path, sim.base_url)
    cli(env, "migrate")
    assert cli(env, "list", "--human").stdout == "no instances\n"
    assert cli(env, "list", "--given-up", "--human").stdout == "no instances\n"
    assert cli(env, "list").stdout == ""  # a script reads no line at all
    registered = cli(env, "register", "p-1", "--reference", "order-1", "--human").stdout
    assert "instance     p-1\n" in registered
    assert "reference    order-1\n" in registered
    polled = cli(env, "poll", "p-1", "--human")  # the simulator does not know p-1: 404
    assert polled.returncode == 0
    assert "last error   http_404: " in polled.stdout
    assert "29 errors left" in polled.stdout
    assert polled.stderr == ""  # no log line for a person: the result is the output
    table = cli(env, "list", "--human").stdout.splitlines()
    assert table[0].split() == [
        "INSTANCE",
        "STATUS",
        "OUTCOME",
        "REFERENCE",
        "REGISTERED",
        "LAST",
        "ERROR",
    ]
    assert table[1].startswith("p-1  ")
    shown = cli(env, "show", "p-1", "--human").stdout
    assert "\ntimeline\n" in shown
    scripted = cli(env, "show", "p-1")
    assert json.loads(scripted.stdout)["instanceId"] == "p-1"  # all of stdout is the JSON
    assert cli(env, "outbox", "--human").stdout == "no messages\n"
    assert cli(env, "quarantine", "--human").stdout == "no deliveries set aside\n"


@pytest.mark.parametrize("token", ["demo-token-for-make-run-only", "a-token-of-our-own-9c2d-6e0a"])
def test_the_ready_message_shows_only_a_published_token(
    token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import http.server
    import threading

    from receiver.config import Settings
    from receiver.supervise import greeting

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bind = f"127.0.0.1:{server.server_port}"
        settings = Settings(bind=bind, api_tokens=(token,), gbg_base_url="http://127.0.0.1:8001")
        assert greeting(settings, with_simulator=True)() is True
    finally:
        server.shutdown()
        server.server_close()
    said = capsys.readouterr().err
    assert f"gbg-receiver is ready on http://{bind}" in said
    assert (token in said) is token.startswith("demo-")
    assert ("Bearer" in said) is token.startswith("demo-")


def test_a_store_error_names_its_cause(tmp_path: Path) -> None:
    down = base_env(tmp_path, RECEIVER_DATABASE_URL="postgresql+psycopg://u@127.0.0.1:9/x")
    refused = cli(down, "list")
    assert refused.returncode == 1
    assert "the store is unavailable: OperationalError: connection" in refused.stderr
    assert "port 9 failed" in refused.stderr
    (tmp_path / "receiver.db").touch()
    unmigrated = cli(base_env(tmp_path), "list")  # a store whose schema was never made
    assert "the store is unavailable: OperationalError: no such table" in unmigrated.stderr


def test_an_operators_command_never_invents_a_store(tmp_path: Path) -> None:
    """Run without the service's settings, `show` used to create ./var/receiver.db and
    answer from it; now it says where it looked and how to point it at the service's."""
    env = {k: v for k, v in base_env(tmp_path).items() if k != "RECEIVER_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "show", "demo-2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "RECEIVER_DATABASE_URL: there is no store at var/receiver.db" in done.stderr
    assert "--env-file /etc/gbg-receiver/env" in done.stderr
    assert not (tmp_path / "var").exists()


def test_the_services_env_file_is_what_a_command_sees(tmp_path: Path) -> None:
    """`--env-file` reads systemd's format; its values win over the shell's. A worker or
    store command runs with the web's placeholders still in the file (deploy/env.example:
    a host that runs only workers need not hold the web's secrets)."""
    shipped = (ROOT / "deploy" / "env.example").read_text()
    db = tmp_path / "service.db"
    env_file = tmp_path / "env"
    env_file.write_text(
        shipped.replace(
            "RECEIVER_DATABASE_URL=sqlite:////var/lib/gbg-receiver/receiver.db",
            f'RECEIVER_DATABASE_URL="sqlite:///{db}"',
        ).replace("/run/gbg-receiver/metrics", str(tmp_path / "metrics"))
        + "; a comment in systemd's other style\n"
    )
    shell = base_env(tmp_path, RECEIVER_DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}")
    assert cli(shell, "--env-file", str(env_file), "migrate").returncode == 0
    assert db.exists()
    assert not (tmp_path / "other.db").exists()
    listed = cli(shell, "--env-file", str(env_file), "list", "--json")
    assert (listed.returncode, listed.stdout) == (0, ""), listed.stderr
    assert list((tmp_path / "metrics").glob("*")) == []  # a command counts nothing there
    # The web does check them: it is the one they guard.
    refused = cli(shell, "--env-file", str(env_file), "web")
    assert refused.returncode == 1
    assert "RECEIVER_WEBHOOK_PASSWORD: is a placeholder" in refused.stderr
    (tmp_path / "bad").write_text("RECEIVER_LOG_FORMAT text\n")
    bad = cli(shell, "--env-file", str(tmp_path / "bad"), "list")
    assert "bad:1: not a KEY=VALUE line" in bad.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give the store to another user")
def test_root_is_refused_a_sqlite_store_that_belongs_to_the_service(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert cli(env, "migrate").returncode == 0
    os.chown(tmp_path / "receiver.db", 65534, 65534)  # the service's user, as installed
    refused = cli(env, "list")
    assert refused.returncode == 1
    assert "belongs to uid 65534; run this command as that user" in refused.stderr
    assert not (tmp_path / "receiver.db.writer-lock").exists()


def test_a_sqlite_backup_restores_what_it_held(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert cli(env, "migrate").returncode == 0
    assert cli(env, "register", "kept-1").returncode == 0
    copy = tmp_path / "backup.db"
    made = cli(env, "backup", str(copy))
    assert made.returncode == 0, made.stderr
    assert copy.stat().st_mode & 0o777 == 0o600  # no wider than the store itself
    assert "a new file" in cli(env, "backup", "--help").stdout
    assert "exists" in cli(env, "backup", str(copy)).stderr  # never over an older one
    assert cli(env, "register", "after-1").returncode == 0
    # The guide's restore: the service stopped, the copy in place of the store.
    store = tmp_path / "receiver.db"
    for extra in ("-wal", "-shm"):
        Path(f"{store}{extra}").unlink(missing_ok=True)
    store.write_bytes(copy.read_bytes())
    assert cli(env, "show", "kept-1").returncode == 0
    assert "no such instance" in cli(env, "show", "after-1").stderr
    pg = base_env(tmp_path, RECEIVER_DATABASE_URL="postgresql+psycopg://u@127.0.0.1:9/x")
    assert "back PostgreSQL up with pg_dump" in cli(pg, "backup", str(tmp_path / "x")).stderr
