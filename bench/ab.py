"""Ingest A/B: the receiver of two (or more) checkouts against bare Flask, in rounds.

    .venv/bin/python bench/ab.py before=/path/to/old/checkout after=. [--postgres]

Each checkout's receiver runs under gunicorn with receiver.web.gunicorn_conf exactly as
in `make bench`, on its own fresh database (SQLite, or PostgreSQL with --postgres, made
through BENCH_PG_ADMIN_URL); the servers take turns, 5 s each, with bare Flask (this
checkout's bench/bare.py) in every round. Prints each one's median ratio to bare, its
rounds and its CPU per request, as `make bench`'s ingest table does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from statistics import median
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import PYTHON, ROOT, cpu_seconds, environment, free_port, process, wait_http, wrk
from bench.ingest import CONNECTIONS, ROUNDS, SECONDS
from bench.run import ADMIN


def database(name: str, out: Path, postgres: bool) -> str:
    if not postgres:
        return f"sqlite:///{out / name}.db"
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS receiver_ab_{name}")
        conn.exec_driver_sql(f"CREATE DATABASE receiver_ab_{name}")
    admin.dispose()
    return str(sa.engine.make_url(ADMIN).set(database=f"receiver_ab_{name}"))


def serve(
    stack: ExitStack, name: str, tree: Path, app: str, url: str, out: Path
) -> tuple[str, Any]:
    port = free_port()
    env = environment(url, RECEIVER_BIND=f"127.0.0.1:{port}", PYTHONPATH=str(tree))
    if app == "wsgi:app":
        migrate = [PYTHON, "-m", "receiver", "migrate"]
        subprocess.run(migrate, env=env, cwd=tree, check=True, capture_output=True)
    conf = "python:receiver.web.gunicorn_conf"
    args = [PYTHON, "-m", "gunicorn", "-c", conf, "--chdir", str(tree), app]
    master = stack.enter_context(process(args, env, out / f"{name}.log"))
    target = f"http://127.0.0.1:{port}/webhooks/gbg"
    wait_http(target)
    return target, master


def main() -> None:
    postgres = "--postgres" in sys.argv
    trees = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    out = Path(tempfile.mkdtemp(prefix="gbg-ab-"))
    with ExitStack() as stack:
        servers = {"bare": serve(stack, "bare", ROOT, "bench.bare:app", "sqlite://", out)}
        for name, tree in trees.items():
            url = database(name, out, postgres)
            servers[name] = serve(stack, name, Path(tree).resolve(), "wsgi:app", url, out)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for n in range(ROUNDS):
            for name, (target, master) in servers.items():
                before = cpu_seconds(master.pid)
                got = wrk(target, seconds=SECONDS, connections=CONNECTIONS, run=f"{name}-{n}")
                got["cpu_ms"] = (cpu_seconds(master.pid) - before) * 1000 / got["requests"]
                runs[name].append(got)
        bare = [r["rps"] for r in runs["bare"]]
        print(f"bare: {median(bare):.0f} req/s, {median(r['cpu_ms'] for r in runs['bare']):.2f} ms")
        for name in trees:
            ratios = [r["rps"] / b for r, b in zip(runs[name], bare, strict=True)]
            cpu = median(r["cpu_ms"] for r in runs[name])
            shown = " ".join(f"{x:.2f}" for x in ratios)
            print(f"{name}: {median(ratios):.2f}x bare (rounds {shown}), {cpu:.2f} ms of CPU")


if __name__ == "__main__":
    main()
