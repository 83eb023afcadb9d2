"""The simulator's answers, field for field as GBG documents them (v1 and v2 state fetch).

A test holds every answer's keys against GBG's documented examples
(tests/fixtures/gbg), so the simulator cannot drift from what GBG sends: pending v2
answers have no steps, an empty subject and no end; completed ones the end, the
terminating interaction, each step's note, advice and outcome, and the person. Both
spellings of a status appear (``InProgress`` in JSON, ``IN_PROGRESS`` as GBG's tables
write it), by instance.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FINAL_STATUSES = ("Completed", "Failed")
_ENUM = {"InProgress": "IN_PROGRESS", "Completed": "COMPLETED", "Failed": "FAILED"}
_ADVICE_KINDS = (
    "trust_usa_risk",
    "age_restricted",
    "subject_risk",
    "address_risk",
    "ssn_risk",
    "alert_list",
    "match_result",
    "trust_usa_result",
    "name_risk",
    "dob_risk",
    "acceptance_result",
    "age_result",
)


@dataclass
class SimInstance:
    instance_id: str
    resource_id: str
    created: float
    status: str = "InProgress"
    outcome: str | None = None
    completed: float | None = None
    subject: dict[str, Any] = field(default_factory=dict)
    # What a document step notes down (GBG's own example holds an ID number).
    note: dict[str, Any] = field(default_factory=dict)

    @property
    def spelled(self) -> str:
        """The status as this instance's answers spell it: half use GBG's enum form."""
        if zlib.crc32(self.instance_id.encode()) % 2:
            return _ENUM.get(self.status, self.status)
        return self.status


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def demo_subject() -> dict[str, Any]:
    # Made-up identity data, recognisable so tests can prove it never reaches logs.
    return {
        "identity": {
            "firstName": "Simona",
            "lastNames": ["Testperson-7f3a"],
            "dateOfBirth": "1990-02-03",
            "currentAddress": {
                "lines": ["1 Simulated Street"],
                "locality": "Testville",
                "postalCode": "TE5 7AA",
                "country": "GB",
            },
        }
    }


def demo_note() -> dict[str, Any]:
    return {"expectid_age": {"id_number": "SIM-ID-4417"}}


def state_v1(inst: SimInstance) -> dict[str, Any]:
    return {
        # v1 says "" for no completion time yet, as GBG's example does.
        "metaData": {"createdTime": iso(inst.created), "completedTime": iso(inst.completed) or ""},
        "status": inst.spelled,
        "data": {},
        "instanceId": inst.instance_id,
    }


def state_v2(inst: SimInstance) -> dict[str, Any]:
    journey_id, _, version = inst.resource_id.partition("@")
    journey: dict[str, Any] = {
        "name": "Simulated journey",
        "startedAt": iso(inst.created),
        "id": journey_id,
        "version": version or "latest",
    }
    finished = inst.completed is not None
    if finished:
        journey |= {
            "endedAt": iso(inst.completed),
            "durationMilliSec": int(((inst.completed or 0.0) - inst.created) * 1000),
            "terminateInteraction": _terminate_interaction(),
        }
    return {
        "instanceId": inst.instance_id,
        "status": inst.spelled,
        "context": {
            "process": {
                "journey": journey,
                "instance": {"id": inst.instance_id, "instanceId": inst.instance_id},
                "steps": [_step(inst)] if finished and inst.outcome else [],
            },
            "subject": inst.subject if finished else {},
            "result": {
                "status": {"Completed": "complete", "Failed": "failed"}.get(inst.status, "pending"),
                "advice": {},
            },
        },
    }


def _step(inst: SimInstance) -> dict[str, Any]:
    advice: dict[str, list[str]] = {f"{kind}_capabilities": [] for kind in _ADVICE_KINDS}
    advice["age_result_capabilities"] = ["resultcode.confirm.age"]
    return {
        "nodeId": "age-check",
        "result": {
            "status": "complete",
            "note": inst.note,
            "advice": advice,
            "outcome": inst.outcome,
        },
        "process": {},
    }


def _terminate_interaction() -> dict[str, Any]:
    return {
        "grId": "grn:::gbg:design:interaction:end@latest",
        "resource": {
            "type": "interaction",
            "data": {"pages": [{"cards": [{"id": "AllDoneCard"}], "id": "pagesForEnd"}]},
            "id": "end",
            "name": "interactionEnd",
            "version": "latest",
        },
        "collects": [],
        "consumes": [],
    }
