"""Upgrades in two steps: every migration says whether it expands or contracts the
schema; an expand migration keeps everything the release before it reads and writes, and
that release, run from git, serves a journey end to end on the schema this one migrates
to (the rollout's order: migrate, then web processes, then workers)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from receiver import migrations
from tests.appserver import SECRET, App, running
from tests.conftest import PG_URL, empty_tables
from tests.processes import API, Proc, call, post_webhook, start_serve

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = Path(migrations.__file__).with_name("versions")


def revisions() -> list[ModuleType]:
    """Every migration, oldest first."""
    found = []
    for path in sorted(VERSIONS.glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found.append(module)
    return found


def upgrade_to(engine: sa.Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(VERSIONS.parent))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def shape(engine: sa.Engine) -> dict[str, Any]:
    """Every table's columns (type, nullable, default) and index names."""
    inspector = sa.inspect(engine)
    return {
        table: (
            {c["name"]: (str(c["type"]), c["nullable"], c["default"]) for c in columns},
            {i["name"] for i in inspector.get_indexes(table)},
        )
        for table in inspector.get_table_names()
        if (columns := inspector.get_columns(table))
    }


def test_every_migration_says_its_phase_and_each_expand_only_adds(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'steps.db'}")
    before: dict[str, Any] = {}
    for revision in revisions():
        assert revision.phase in ("expand", "contract"), revision.__name__
        upgrade_to(engine, revision.revision)
        after = shape(engine)
        if revision.phase == "expand":
            for table, (columns, indexes) in before.items():
                assert table in after, f"{revision.revision} drops {table}"
                kept, kept_indexes = after[table]
                assert {n: kept.get(n) for n in columns} == columns, f"{revision.revision}: {table}"
                assert indexes <= kept_indexes, f"{revision.revision} drops an index of {table}"
                for name in kept.keys() - columns.keys():  # the release before never writes it
                    _, nullable, default = kept[name]
                    assert nullable or default is not None, f"{revision.revision}: {name}"
        before = after
    engine.dispose()


def previous_release(tmp_path: Path) -> Path:
    """The tree as it was just before the newest migration was added, from git."""
    newest = sorted(VERSIONS.glob("[0-9]*.py"))[-1].relative_to(ROOT)
    git = ["git", "-C", str(ROOT)]
    added = subprocess.run(
        [*git, "log", "--diff-filter=A", "--format=%H", "--", str(newest)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if not added:
        if os.environ.get("CI"):
            pytest.fail("CI must run from a git clone with its history (git log found nothing)")
        pytest.skip("no git history here")
    tree = tmp_path / "previous"
    tree.mkdir()
    archive = tmp_path / "previous.tar"
    subprocess.run(
        [*git, "archive", "--output", str(archive), f"{added[-1]}^", "receiver"], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.mark.live
def test_the_previous_release_serves_on_the_schema_this_one_migrates_to(
    tmp_path: Path, procs: list[Proc], pg_engine: sa.Engine
) -> None:
    tree = previous_release(tmp_path)
    imported = subprocess.run(
        [sys.executable, "-c", "import receiver; print(receiver.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert imported.startswith(str(tree)), imported  # the old code, not this checkout's
    empty_tables(pg_engine)
    assert PG_URL
    with running(App()) as app:
        base, sim, serve = start_serve(  # migrated by this release, served by the previous
            tmp_path,
            procs,
            cwd=tree,
            RECEIVER_DATABASE_URL=PG_URL,
            RECEIVER_FORWARD_URL=app.url,
            RECEIVER_FORWARD_SECRET=SECRET,
            RECEIVER_CONFIRM_DELAY="0",
        )
        ids = [f"up-{n}" for n in range(5)]
        for iid in ids:
            assert call("POST", f"{sim}/_sim/instances/{iid}", {"status": "Completed"})[0] == 200
            assert post_webhook(base, iid)[0] == 202
        deadline = time.monotonic() + 30
        while len({r.body["data"]["instance"]["instanceId"] for r in app.delivered()}) < 5:
            assert time.monotonic() < deadline, serve.log.read_text()[-3000:]
            time.sleep(0.2)
        assert app.unverified == 0
    page = call("GET", f"{base}/api/v1/instances?status=completed&limit=10", headers=API)[1]
    assert sorted(i["instanceId"] for i in page["instances"]) == ids
    assert '"level": "error"' not in serve.log.read_text()
