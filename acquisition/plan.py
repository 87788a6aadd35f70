"""The visit plan: a protocol file lists the actions and their repetitions; the plan walks through them
take by take over a session (session.json), names each take from subject, action and repetition, lets a
take be marked bad (its repetition is then due again), and resumes where the visit stopped.

A protocol file (TOML):

    name = "flex"
    [defaults]
    repetitions = 10
    duration_s = 12.0
    [[actions]]
    action = "back_squat"
    repetitions = 5          # overrides the default
    description = "bar on the upper back"

The plan itself lives in session.json ("plan": the protocol as loaded), so a restarted console (or
another machine) continues the same plan even if the protocol file has changed since.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from acquisition.config import ID_PATTERN, describe_validation_error
from acquisition.session import Session, utc_now_iso

PROTOCOLS_DIR = Path(__file__).with_name("protocols")
FLEX_PROTOCOL = PROTOCOLS_DIR / "flex.toml"


class ProtocolError(ValueError):
    """A protocol file that cannot be used; the message names the file, the key and the problem."""


class ActionDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repetitions: int = Field(1, ge=1, le=1000)
    duration_s: float | None = Field(None, gt=0, description="a take of this action stops by itself after this")


class PlanAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern=ID_PATTERN)
    repetitions: int | None = Field(None, ge=1, le=1000)
    duration_s: float | None = Field(None, gt=0)
    description: str = ""


class Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ID_PATTERN)
    description: str = ""
    defaults: ActionDefaults = ActionDefaults()
    actions: list[PlanAction] = Field(min_length=1)

    @field_validator("actions")
    @classmethod
    def _unique(cls, actions: list[PlanAction]) -> list[PlanAction]:
        seen: set[str] = set()
        for a in actions:
            if a.action in seen:
                raise ValueError(f"action {a.action!r} is listed twice; list it once with its repetitions")
            seen.add(a.action)
        return actions

    def steps(self) -> list[Step]:
        out = []
        for a in self.actions:
            for rep in range(1, (a.repetitions or self.defaults.repetitions) + 1):
                out.append(Step(a.action, rep, a.duration_s or self.defaults.duration_s, a.description))
        return out


@dataclass(frozen=True)
class Step:
    action: str
    repetition: int
    duration_s: float | None
    description: str = ""


def load_protocol(path: str | Path) -> Protocol:
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"{path}: protocol file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{path}: not a text file: {exc}") from None
    return parse_protocol(data, str(path))


def parse_protocol(data: dict[str, Any], source: str = "<protocol>") -> Protocol:
    try:
        return Protocol.model_validate(data)
    except ValidationError as err:
        raise ProtocolError(describe_validation_error(source, err)) from None


class VisitPlan:
    """A protocol's steps over one session's takes (session.json is the only state)."""

    def __init__(self, session: Session, protocol: Protocol | None = None) -> None:
        self.session = session
        stored = session.data.get("plan")
        if stored is None:
            if protocol is None:
                raise ProtocolError(f"{session.file}: the session has no visit plan yet; give a protocol")
            session.data["plan"] = {"protocol": protocol.model_dump(mode="json"), "started_at": utc_now_iso()}
            session.save()
            self.protocol = protocol
        else:
            self.protocol = parse_protocol(stored["protocol"], f"{session.file}: plan.protocol")
            if protocol is not None and protocol.name != self.protocol.name:
                raise ProtocolError(f"{session.file}: this visit follows protocol {self.protocol.name!r}, "
                                    f"not {protocol.name!r}; start a new session for another protocol")
        self.steps = self.protocol.steps()

    def takes_of(self, step: Step) -> list[dict[str, Any]]:
        return [t for t in self.session.data["takes"]
                if t.get("action") == step.action and t.get("repetition") == step.repetition]

    def done(self, step: Step) -> bool:
        """A step is done when one of its takes is not marked bad."""
        return any(not t.get("bad") for t in self.takes_of(step))

    def next_step(self) -> Step | None:
        """The first step not done: after a crash or restart, where the visit goes on."""
        return next((s for s in self.steps if not self.done(s)), None)

    def progress(self) -> tuple[int, int]:
        return sum(self.done(s) for s in self.steps), len(self.steps)

    def mark_bad(self, take: str, reason: str = "") -> Step:
        """Mark a recorded take bad (it stays on disk); its repetition is due again. Returns its step."""
        for entry in self.session.data["takes"]:
            if entry.get("take") == take:
                entry["bad"] = True
                entry["bad_reason"] = reason
                entry["marked_bad_at"] = utc_now_iso()
                self.session.save()
                return Step(entry["action"], entry["repetition"], None)
        raise ProtocolError(f"{self.session.file}: no take {take!r} in this session")
