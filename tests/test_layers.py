"""Imports point one way: web, cli and workers -> usecases -> store, gbg, domain.

Read from the source itself (every import, at any depth of a module), and checked once
more by importing each top layer in a fresh interpreter and looking at what came in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "receiver"

# What each part of the package must never import (prefixes of module names).
FORBIDDEN = {
    "receiver.domain": (
        "receiver.store",
        "receiver.gbg",
        "receiver.web",
        "receiver.workers",
        "receiver.cli",
        "receiver.usecases",
        "receiver.services",
        "receiver.metrics",
        "receiver.log",
        "sqlalchemy",
        "requests",
        "flask",
        "apscheduler",
        "time",
        "socket",
        "os",
    ),
    "receiver.store": (
        "receiver.usecases",
        "receiver.services",
        "receiver.web",
        "receiver.workers",
        "receiver.cli",
        "receiver.gbg",
        "flask",
        "apscheduler",
        "requests",
    ),
    "receiver.gbg": (
        "receiver.store",
        "receiver.usecases",
        "receiver.web",
        "receiver.workers",
        "receiver.cli",
        "flask",
        "apscheduler",
        "sqlalchemy",
    ),
    "receiver.usecases": (
        "receiver.web",
        "receiver.workers",
        "receiver.cli",
        "flask",
        "apscheduler",
    ),
    # The other use-case modules, and the HTTP adapters below them.
    "receiver.fetching": ("receiver.web", "receiver.workers", "receiver.cli", "flask"),
    "receiver.notify": ("receiver.web", "receiver.workers", "receiver.cli", "flask"),
    "receiver.liveness": ("receiver.web", "receiver.workers", "receiver.cli", "flask"),
    "receiver.downstream": ("receiver.store", "receiver.usecases", "receiver.web", "flask"),
    "receiver.httpread": ("receiver.store", "receiver.usecases", "receiver.web", "flask"),
    "receiver.guards": ("receiver.store", "receiver.web", "requests", "flask", "sqlalchemy"),
    "receiver.web": ("receiver.workers", "receiver.cli", "apscheduler", "receiver.testing"),
    "receiver.workers": ("receiver.web", "receiver.cli", "flask", "receiver.testing"),
    "receiver.cli": ("receiver.web",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def package_sources() -> dict[str, str]:
    return {module_name(p): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def violations(sources: dict[str, str]) -> list[str]:
    out = []
    for name, source in sources.items():
        for layer, banned in FORBIDDEN.items():
            if name != layer and not name.startswith(layer + "."):
                continue
            for imported in sorted(imports_of(source)):
                if any(imported == b or imported.startswith(b + ".") for b in banned):
                    out.append(f"{name} imports {imported}")
    return out


def test_no_import_points_the_wrong_way() -> None:
    sources = package_sources()
    assert len(sources) > 30  # the whole package was read
    assert violations(sources) == []


def test_the_rules_see_a_wrong_import_even_inside_a_function() -> None:
    sources = package_sources()
    sources["receiver.domain.model"] += "\ndef f():\n    from receiver.store import Store\n"
    sources["receiver.web.api"] += "\nimport apscheduler\n"
    assert violations(sources) == [
        "receiver.domain.model imports receiver.store",
        "receiver.domain.model imports receiver.store.Store",
        "receiver.web.api imports apscheduler",
    ]


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("receiver.workers.worker", ("flask", "receiver.web")),
        ("receiver.web.wsgi", ("apscheduler", "receiver.workers")),
        ("receiver.cli", ("flask", "receiver.web", "apscheduler")),
        ("receiver.domain.reconcile", ("sqlalchemy", "requests")),
    ],
)
def test_importing_a_layer_brings_in_nothing_it_must_not(
    module: str, absent: tuple[str, ...]
) -> None:
    probe = (
        "import sys, os\n"
        "os.environ.update(RECEIVER_WEBHOOK_AUTH='none', RECEIVER_DATABASE_URL='sqlite://', RECEIVER_GBG_BASE_URL='http://127.0.0.1:9')\n"
        f"import {module}\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {absent!r} or "
        f"any(m.startswith(a + '.') or m == a for a in {absent!r})))\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"  # after any log lines
