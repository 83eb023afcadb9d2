"""PostgreSQL through a real PgBouncer in transaction pooling mode (Debian's pgbouncer),
as most managed PostgreSQL is reached: migrate, the web, the worker and the forwarder,
with RECEIVER_DATABASE_POOLED=true. Without it the service cannot even connect (PgBouncer
refuses the startup options), and psycopg's prepared statements would each live on one
server connection only."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.appserver import SECRET, App, running
from tests.conftest import PG_URL, empty_tables
from tests.processes import API, Proc, call, free_port, post_webhook, run, start_serve

pytestmark = [pytest.mark.live, pytest.mark.postgres]


@pytest.fixture
def pgbouncer(pg_engine: sa.Engine) -> Iterator[str]:
    """A PgBouncer in transaction mode before the test database: its URL."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        if os.environ.get("CI"):
            pytest.fail("CI must provide pgbouncer (.ci/run installs it)")
        pytest.skip("pgbouncer is not installed")
    empty_tables(pg_engine)
    assert PG_URL
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="gbg-pgbouncer-", dir="/tmp"))
    home.chmod(0o755)  # PgBouncer drops root for postgres before it reads its files
    (home / "pgbouncer.ini").write_text(
        "[databases]\n* = host=127.0.0.1 port=5432 user=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = any\n"
        "pool_mode = transaction\nunix_socket_dir =\nmax_client_conn = 500\n"
        "default_pool_size = 10\n"  # fewer server connections than clients: they are shared
    )
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    with (home / "log").open("wb") as log:  # the child keeps its own descriptor
        server = subprocess.Popen(
            [binary, *as_user, str(home / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while b"listening on" not in (home / "log").read_bytes():
            assert server.poll() is None, (home / "log").read_text()
            assert time.monotonic() < deadline, (home / "log").read_text()
            time.sleep(0.05)
        yield PG_URL.replace(":5432/", f":{port}/")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def test_the_service_runs_through_pgbouncer_in_transaction_mode(
    tmp_path: Path, procs: list[Proc], pgbouncer: str, figure: Any
) -> None:
    direct = {"RECEIVER_DATABASE_URL": pgbouncer}
    refused = run(["migrate"], {**os.environ, **direct})
    assert "unsupported startup parameter: options" in refused.stderr  # what a user meets
    total = 200
    with running(App()) as app:
        base, sim, serve = start_serve(
            tmp_path,
            procs,
            RECEIVER_DATABASE_URL=pgbouncer,
            RECEIVER_DATABASE_POOLED="true",
            RECEIVER_FORWARD_URL=app.url,
            RECEIVER_FORWARD_SECRET=SECRET,
            RECEIVER_CONFIRM_DELAY="0",
        )
        ids = [f"pgb-{n}" for n in range(total)]
        for iid in ids:
            assert call("POST", f"{sim}/_sim/instances/{iid}", {"status": "Completed"})[0] == 200
        answers: list[int] = []

        def send(part: list[str]) -> None:
            answers.extend(post_webhook(base, iid)[0] for iid in part)

        senders = [threading.Thread(target=send, args=(ids[n::4],)) for n in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert answers == [202] * total
        deadline = time.monotonic() + 60
        while len({r.body["data"]["instance"]["instanceId"] for r in app.delivered()}) < total:
            assert time.monotonic() < deadline, serve.log.read_text()[-3000:]
            time.sleep(0.2)
        assert app.unverified == 0
    page = call("GET", f"{base}/api/v1/instances?status=completed&limit=1000", headers=API)[1]
    assert len(page["instances"]) == total
    log = serve.log.read_text()
    assert "prepared statement" not in log
    assert '"level": "error"' not in log
    figure(
        f"pgbouncer (transaction mode, 10 server connections): {total} webhooks 202, "
        f"{total} confirmed by the worker and forwarded, 0 errors"
    )
