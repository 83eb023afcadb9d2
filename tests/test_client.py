"""The API as an integrator meets it: a client generated from the served /openapi.json
by openapi-python-client, driven through register -> list with cursors -> start ->
feed -> state -> erase against a live `serve --simulator`, every answer validated
against the document. Also: the document passes openapi-spec-validator."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_document
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import API_TOKEN
from tests.processes import Proc, call, start_serve

pytestmark = pytest.mark.live

VENV_BIN = Path(sys.executable).parent


class Answers:
    """Checks each answer the generated client receives against the document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry = Registry().with_resource(
            "urn:doc", Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self.routes = [
            (re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$"), path)
            for path in document["paths"]
        ]
        self.checked: list[tuple[str, str, int]] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        [path] = [p for pattern, p in self.routes if pattern.match(request.url.path)]
        method, status = request.method.lower(), str(response.status_code)
        documented = self.document["paths"][path][method]["responses"].get(status)
        assert documented, f"{request.method} {path}: {status} is not documented"
        media = response.headers["content-type"].split(";")[0]
        assert media in documented["content"], f"{request.method} {path} {status}: {media}"
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1")
            for part in ("paths", path, method, "responses", status, "content", media, "schema")
        )
        validator = Draft202012Validator(
            {"$ref": f"urn:doc#/{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        validator.validate(response.json())
        assert response.headers.get("X-Request-ID")
        self.checked.append((request.method, path, response.status_code))


def generate(document: Path, into: Path) -> Any:
    """openapi-python-client's package for ``document``, imported."""
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    done = subprocess.run(
        [
            *(str(VENV_BIN / "openapi-python-client"), "generate", "--path", str(document)),
            *("--meta", "none", "--output-path", str(into / "gbg_client")),
        ],
        cwd=into,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # every operation and model generated
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module("gbg_client")
    finally:
        sys.path.remove(str(into))


def test_a_generated_client_drives_the_api_end_to_end(tmp_path: Path, procs: list[Proc]) -> None:
    base, sim, _ = start_serve(tmp_path, procs)
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as served:
        document = json.loads(served.read())
    validate_document(document)
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    package = generate(tmp_path / "openapi.json", tmp_path)
    api = importlib.import_module("gbg_client.api")
    models = importlib.import_module("gbg_client.models")
    answers = Answers(document)
    client = package.AuthenticatedClient(
        base_url=base,
        token=API_TOKEN,
        raise_on_unexpected_status=True,
        httpx_args={"event_hooks": {"response": [answers]}},
    )
    ops = {
        name: importlib.import_module(f"gbg_client.api.{tag}.{name}")
        for tag in ("instances", "journeys", "events", "problems")
        for name in _modules(api, tag)
    }
    with client as c:
        for n in range(5):
            created = ops["register_instance"].sync(
                client=c, body=models.Registration(instance_id=f"gen-{n}", reference=f"ref-{n}")
            )
            assert isinstance(created, models.Instance)
            assert created.status == models.Status.IN_PROGRESS
        seen, cursor = [], None
        while True:
            kwargs = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = ops["list_instances"].sync(client=c, **kwargs)
            seen += [i.instance_id for i in page.instances]
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert sorted(seen) == [f"gen-{n}" for n in range(5)]
        started = ops["start_journey"].sync(
            client=c,
            body=models.StartJourneyBody(resource_id="age-check@latest", reference="ref-j"),
            idempotency_key="gen-start-1",
        )
        assert isinstance(started, models.Instance)
        assert started.instance_url
        again = ops["start_journey"].sync(
            client=c,
            body=models.StartJourneyBody(resource_id="age-check@latest", reference="ref-j"),
            idempotency_key="gen-start-1",
        )
        assert again.instance_id == started.instance_id  # a retry starts no second journey
        # GBG (the simulator) ends gen-1; an operator's poll learns it at once.
        assert call("POST", f"{sim}/_sim/instances/gen-1", {"status": "Completed"})[0] == 200
        polled = ops["poll_instance"].sync(instance_id="gen-1", client=c)
        assert polled.status == models.Status.COMPLETED
        feed = ops["list_events"].sync(client=c, after=0)
        assert [(e.instance_id, e.status) for e in feed.events] == [
            ("gen-1", models.Status.COMPLETED)
        ]
        state = ops["instance_state"].sync(instance_id=started.instance_id, client=c)
        assert state is not None
        erased = ops["erase_instance"].sync(instance_id="gen-0", client=c)
        assert isinstance(erased, models.Instance)
        assert erased.reference is None
        missing = ops["get_instance"].sync(instance_id="nobody", client=c)
        assert isinstance(missing, models.Problem)
        assert missing.type_ == "/problems/unknown-instance"
        kinds = ops["list_problem_types"].sync(client=c)
        assert missing.type_ in {k.type_ for k in kinds.problems}
    operations = {(m, p) for m, p, _ in answers.checked}
    assert len(operations) >= 8
    assert all(s < 500 for _, _, s in answers.checked)


def _modules(api: Any, tag: str) -> list[str]:
    folder = Path(api.__file__).parent / tag
    return [p.stem for p in folder.glob("*.py") if p.stem != "__init__"]


SPECTRAL = "@stoplight/spectral-cli@6.16.3"


def test_spectral_finds_nothing_in_the_document() -> None:
    """Spectral's OpenAPI rules (.spectral.yaml), every severity down to hints."""
    npx = shutil.which("npx")
    if npx is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide npx (Debian's npm) for Spectral")
        pytest.skip("npx is not installed")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [npx, "--yes", SPECTRAL, "lint", "--fail-severity=hint", "receiver/web/openapi.json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No results" in done.stdout
