"""Session folders (one subject's visit) and take folders, with session.json. Nothing is ever
overwritten: every take gets a new number and its folder is created exclusively."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from acquisition.config import TAKE_DIR_RE, Rig, TakeInfo, take_dir_name
from drivers.runtime.paths import write_atomically

SESSION_FILE = "session.json"


class SessionInfo(BaseModel):
    """What the operator enters about a visit (the subject id is pseudonymous: never a name)."""

    model_config = ConfigDict(extra="forbid")

    skill_level: Literal["", "novice", "intermediate", "advanced"] = ""
    operator: str = ""
    notes: str = ""


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Session:
    def __init__(self, root: Path, subject: str, rig: Rig, operator: str = "", date: str | None = None) -> None:
        self.date = date or dt.date.today().isoformat()
        self.name = f"{self.date}_{subject}"
        self.path = Path(root) / self.name
        self.path.mkdir(parents=True, exist_ok=True)
        self.file = self.path / SESSION_FILE
        if self.file.exists():
            self.data = json.loads(self.file.read_text())
        else:
            self.data = {"session": self.name, "subject": subject, "operator": operator,
                         "created_at": utc_now_iso(), "rig": rig.snapshot(), "takes": []}
            self.save()

    def next_take_dir(self, take: TakeInfo) -> Path:
        """Create the next take folder, numbered after every take already in the session."""
        numbers = [int(m.group(1)) for p in self.path.iterdir() if (m := TAKE_DIR_RE.match(p.name))]
        number = max(numbers, default=0) + 1
        while True:
            path = self.path / take_dir_name(number, take.action, take.repetition)
            try:
                path.mkdir()
                return path
            except FileExistsError:  # another recorder took this number meanwhile
                number += 1

    def update_info(self, info: SessionInfo) -> None:
        self.data.update(info.model_dump())
        self.save()

    def info(self) -> SessionInfo:
        return SessionInfo.model_validate({k: self.data.get(k, "") for k in SessionInfo.model_fields})

    def reload(self) -> None:
        """Read session.json again: another Session object (the rig's, per take) may have written it."""
        self.data = json.loads(self.file.read_text())

    def record_take(self, entry: dict[str, Any]) -> None:
        self.reload()  # another Session object (the console's plan) may have written since this one read
        self.data["takes"].append(entry)
        self.save()

    def save(self) -> None:
        write_atomically(self.file, json.dumps(self.data, indent=2))
