"""deploy/README.md, walked: every `sh` block of the guide runs, in order, as root in a
fresh prefix (its absolute paths moved there), with the real tools: useradd, a venv
from the lock, PostgreSQL with a role that has a password, the units' commands as their
user with their environment file and umask (tests/fakesystemd.py reads the unit files),
nginx in front. Between blocks the test does what the guide asks a person to do by hand
(GBG's settings, the site's certificate) and checks what each step promised."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.testing.simulator import Simulator
from tests.processes import free_port
from tests.proxy import NGINX, prepare, through_nginx, wait_listening

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "deploy" / "README.md"
USER = "gbg-receiver"


def blocks() -> list[str]:
    """The guide's `sh` blocks, in order (`shell` blocks are alternatives)."""
    return re.findall(r"^```sh\n(.*?)^```$", GUIDE.read_text(), re.M | re.S)


@pytest.fixture
def walk(sim: Simulator) -> Iterator[dict[str, Any]]:
    if os.geteuid() != 0 or shutil.which("runuser") is None or not Path(NGINX).exists():
        if os.environ.get("CI"):
            pytest.fail("CI walks the guide as root, with nginx and PostgreSQL's tools")
        pytest.skip("the guide's walk needs root, runuser, nginx and PostgreSQL's tools")
    prefix = Path(tempfile.mkdtemp(prefix="gbg-guide-", dir="/tmp"))
    prefix.chmod(0o755)  # the service's user reaches its files through it
    database = f"gbg_guide_{os.getpid()}"
    port = free_port()
    paths = {
        p: str(prefix / p.lstrip("/"))
        for p in (
            "/opt/gbg-receiver",
            "/etc/gbg-receiver",
            "/etc/systemd/system",
            "/etc/nginx/conf.d",
            "/usr/local/bin",
            "/var/backups/gbg-receiver",
            "/var/lib/gbg-receiver",
            "/run/gbg-receiver",
        )
    }
    for path in ("/etc/systemd/system", "/etc/nginx/conf.d", "/usr/local/bin"):
        Path(paths[path]).mkdir(parents=True)
    Path(paths["/opt/gbg-receiver"]).parent.mkdir()  # /opt is there on any host
    shims = prefix / "shims"
    shims.mkdir()
    (shims / "systemctl").write_text(
        f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests" / "fakesystemd.py"} "$@"\n'
    )
    # nginx's own configuration is the test's, which includes the guide's site.
    (shims / "nginx").write_text(f'#!/bin/sh\nexec {NGINX} -c "$GUIDE_NGINX" "$@"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {
        "PATH": f"{paths['/usr/local/bin']}:{shims}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "GUIDE_PREFIX": str(prefix),
        "GUIDE_MAP": json.dumps(paths),
        "GUIDE_NGINX": str(prefix / "nginx" / "nginx.conf"),
        "GUIDE_NGINX_BIN": NGINX,
        # The wrapper's own defaults are the guide's paths; here they are moved.
        "GBG_RECEIVER_HOME": paths["/opt/gbg-receiver"],
        "GBG_RECEIVER_ENV": paths["/etc/gbg-receiver"] + "/env",
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    state: dict[str, Any] = {
        "prefix": prefix,
        "paths": paths,
        "env": env,
        "port": port,
        "database": database,
        "sim": sim,
    }
    try:
        yield state
    finally:
        for name in ("gbg-receiver-web", "gbg-receiver-poller"):
            subprocess.run(["systemctl", "stop", name], env=env, check=False)
        for pid_file in (prefix / "fake-systemd").glob("*.pid"):  # nginx, and any left
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*postgres, "dropdb", "--if-exists", "--force", database], check=False)
        subprocess.run([*postgres, "psql", "-q", "-c", f"DROP ROLE IF EXISTS {database}"])
        shutil.rmtree(prefix, ignore_errors=True)


def localise(block: str, walk: dict[str, Any]) -> str:
    """The block as it runs here: paths under the prefix, the port and database the
    walk picked, the checkout instead of a clone, nothing to pull."""
    block = re.sub(
        r"^git clone \S+ /opt/gbg-receiver.*$",
        f"cp -a {walk['source']} /opt/gbg-receiver",
        block,
        flags=re.M,
    )
    block = re.sub(r"^git pull.*$", "true", block, flags=re.M)
    for old, new in walk["paths"].items():
        block = block.replace(old, new)
    return block.replace("127.0.0.1:8000", f"127.0.0.1:{walk['port']}").replace(
        "gbg_receiver", walk["database"]
    )


def run_block(block: str, walk: dict[str, Any]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", localise(block, walk)],
        env=walk["env"],
        # As in one shell session: section 1 goes to the release, and stays there.
        cwd=home if (home := Path(walk["paths"]["/opt/gbg-receiver"])).exists() else walk["prefix"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    logs = (
        "".join(
            f"\n--- {p.name}\n{p.read_text()[-3000:]}"
            for p in (walk["prefix"] / "fake-systemd").glob("*.log")
        )
        if (walk["prefix"] / "fake-systemd").exists()
        else ""
    )
    assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}{logs}"
    return done.stdout


def env_file(walk: dict[str, Any]) -> Path:
    return Path(walk["paths"]["/etc/gbg-receiver"]) / "env"


def set_values(walk: dict[str, Any], **values: str) -> None:
    """An operator's edit of the environment file."""
    path = env_file(walk)
    text = path.read_text()
    for key, value in values.items():
        text, n = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert n == 1, key
    path.write_text(text)


def api(walk: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    token = read_value(walk, "RECEIVER_API_TOKENS").split(",")[0]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    status, _, text = through_nginx(walk["https"], method, path, data, headers, "127.0.0.1")
    return status, json.loads(text or b"null")


def read_value(walk: dict[str, Any], key: str) -> str:
    [value] = re.findall(rf"^{key}=(.*)$", env_file(walk).read_text(), re.M)
    return value


def test_the_deploy_guide_walked_as_an_operator_would(walk: dict[str, Any]) -> None:
    source = walk["prefix"] / "release"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    walk["source"] = source
    sim: Simulator = walk["sim"]
    steps = blocks()
    assert len(steps) >= 10
    for block in steps:
        before(block, walk)
        run_block(block, walk)
        after(block, walk)
    assert walk["checked"] == {
        "config",
        "units",
        "nginx",
        "journey",
        "list",
        "upgrade",
        "backup",
        "restore",
    }
    assert sim  # the fixture's simulator played GBG throughout


def before(block: str, walk: dict[str, Any]) -> None:
    if "pg_dump" in block:  # something to back up, and something after the backup
        assert api(walk, "POST", "/api/v1/instances", {"instanceId": "before-backup"})[0] == 201
    if "dropdb" in block:
        assert api(walk, "POST", "/api/v1/instances", {"instanceId": "after-backup"})[0] == 201


def after(block: str, walk: dict[str, Any]) -> None:
    checked: set[str] = walk.setdefault("checked", set())
    sim: Simulator = walk["sim"]
    if "deploy/env.example /etc/gbg-receiver/env" in block:
        # What the guide asks a person to fill in: GBG (here the simulator), the port.
        env = env_file(walk)
        assert env.stat().st_mode & 0o777 == 0o640
        assert (env.stat().st_uid, env.stat().st_gid) == (0, pwd.getpwnam(USER).pw_gid)
        base = sim.base_url  # type: ignore[attr-defined]
        set_values(
            walk,
            RECEIVER_GBG_BASE_URL=base,
            RECEIVER_GBG_TOKEN_URL=f"{base}/as/token.oauth2",
            RECEIVER_GBG_CLIENT_ID="sim-client",
            RECEIVER_GBG_CLIENT_SECRET="sim-secret",
            RECEIVER_BIND=f"127.0.0.1:{walk['port']}",
            RECEIVER_METRICS_DIR=walk["paths"]["/run/gbg-receiver"] + "/metrics",
        )
    if "CREATE ROLE" in block:
        url = read_value(walk, "RECEIVER_DATABASE_URL")
        assert re.fullmatch(rf"postgresql\+psycopg://{walk['database']}:[\w-]{{20,}}@.*", url)
        checked.add("config")
    if "systemctl enable --now" in block:
        for name in ("gbg-receiver-web", "gbg-receiver-poller"):
            pid = int((walk["prefix"] / "fake-systemd" / f"{name}.pid").read_text())
            uid = re.search(r"^Uid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
            assert uid is not None
            assert int(uid.group(1)) == pwd.getpwnam(USER).pw_uid
        heartbeat = Path(walk["paths"]["/run/gbg-receiver"]) / "gbg-receiver-worker.heartbeat"
        wait_for(heartbeat.exists)
        assert heartbeat.stat().st_mode & 0o777 == 0o600  # the units' umask
        checked.add("units")
    if block.startswith("cp deploy/nginx"):
        site = Path(walk["paths"]["/etc/nginx/conf.d"]) / "gbg-receiver.conf"
        walk["https"], http = free_port(), free_port()
        nginx_dir = walk["prefix"] / "nginx"
        nginx_dir.mkdir()
        made, main = prepare(nginx_dir, site.read_text(), walk["port"], walk["https"], http)
        site.write_text(made.read_text())  # the operator's edits, in the guide's place
        main.write_text(main.read_text().replace(str(made), str(site)))
        walk["nginx_ports"] = (walk["https"], http)
    if "systemctl reload nginx" in block:
        wait_listening(walk["prefix"] / "nginx", *walk["nginx_ports"])
        journey(walk)
        checked.add("nginx")
    if block.startswith("gbg-receiver list"):
        checked.add("list")
    if "systemctl reload gbg-receiver-web" in block:
        log = (walk["prefix"] / "fake-systemd" / "gbg-receiver-web.log").read_text()
        assert "Handling signal: hup" in log
        journey(walk, "after-upgrade")
        checked.add("upgrade")
    if "pg_dump" in block:
        dump = Path(walk["paths"]["/var/backups/gbg-receiver"]) / f"{walk['database']}.dump"
        assert (dump.stat().st_uid, dump.stat().st_mode & 0o777) == (0, 0o600)
        checked.add("backup")
    if "pg_restore" in block:
        wait_for(lambda: api(walk, "GET", "/api/v1/instances/before-backup")[0] == 200)
        assert api(walk, "GET", "/api/v1/instances/after-backup")[0] == 404
        checked.add("restore")


def journey(walk: dict[str, Any], instance_id: str = "guide-1") -> None:
    """GBG's webhook through nginx, then the worker confirms with GBG's state."""
    sim: Simulator = walk["sim"]
    sim.set_status(instance_id, "Completed")
    password = read_value(walk, "RECEIVER_WEBHOOK_PASSWORD")
    user = read_value(walk, "RECEIVER_WEBHOOK_USERNAME")
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, _, _ = through_nginx(
        walk["https"],
        "POST",
        "/webhooks/gbg",
        json.dumps({"instanceId": instance_id, "status": "Completed"}).encode(),
        {"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    assert status == 202
    wait_for(
        lambda: api(walk, "GET", f"/api/v1/instances/{instance_id}")[1]["status"] == "completed"
    )
    walk.setdefault("checked", set()).add("journey")


def wait_for(ready: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "the guide's step did not come true in time"
        time.sleep(0.2)
