"""The visit plan panel (the protocol's takes, what is done, what is next, the pre-flight result) and
the session form (pseudonymous subject id, skill level, operator, notes, protocol file)."""

from __future__ import annotations

import re
from typing import Any

from PyQt6.QtCore import QRegularExpression, pyqtSignal
from PyQt6.QtGui import QColor, QRegularExpressionValidator
from PyQt6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from acquisition.config import ID_PATTERN
from acquisition.plan import FLEX_PROTOCOL
from acquisition.session import SessionInfo

SKILL_LEVELS = list(SessionInfo.model_fields["skill_level"].annotation.__args__)
SYNC_COLORS = {"green": "#2e7d32", "amber": "#ef6c00", "red": "#c62828"}


def step_text(step: dict[str, Any]) -> str:
    mark = "✓" if step["done"] else ("✗" if step["takes"] else " ")
    takes = ", ".join(t["take"] + (" (bad)" if t["bad"] else f" ({t['sync']})" if t["sync"] else "")
                      for t in step["takes"])
    return f"{mark} {step['action']}  rep {step['repetition']}" + (f"   {takes}" if takes else "")


class PlanPanel(QWidget):
    """Shows the plan; the selected step is what Record records (the next one unless the operator picks)."""

    session_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = QLabel("No session: enter the subject (Session...)")
        self.header.setWordWrap(True)
        self.steps = QListWidget()
        self.preflight = QLabel("Pre-flight: not run")
        self.preflight.setWordWrap(True)
        self.session_button = QPushButton("Session...")
        self.session_button.clicked.connect(self.session_requested)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.header, 1)
        row.addWidget(self.session_button)
        layout.addLayout(row)
        layout.addWidget(self.steps, 1)
        layout.addWidget(self.preflight)
        self.state: dict[str, Any] | None = None

    def show_state(self, state: dict[str, Any]) -> None:
        keep = self.selected_index()
        followed = keep is None or (self.state is not None and keep == self.state.get("next"))
        self.state = state
        info = state["info"]
        done, total = state["progress"]
        operator = f"operator {info['operator']}" if info["operator"] else ""
        who = ", ".join(x for x in (info["skill_level"], operator) if x)
        self.header.setText(f"<b>{state['subject']}</b> {who}<br>session {state['session']}, protocol "
                            f"{state['protocol']}: <b>{done} of {total}</b> takes done")
        self.steps.clear()
        for i, step in enumerate(state["steps"]):
            item = QListWidgetItem(step_text(step))
            if i == state["next"]:
                item.setText("▶" + item.text()[1:])
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            elif step["takes"] and step["takes"][-1]["sync"] in SYNC_COLORS and step["done"]:
                item.setForeground(QColor(SYNC_COLORS[step["takes"][-1]["sync"]]))
            if step["description"]:
                item.setToolTip(step["description"])
            self.steps.addItem(item)
        target = state["next"] if followed or keep is None else keep  # after a take: on to the next step
        if target is not None:
            self.steps.setCurrentRow(target)
            self.steps.scrollToItem(self.steps.item(target))
        pf = state.get("preflight")
        if pf:
            self.show_preflight(pf["ok"], pf.get("failed", []))

    def selected_index(self) -> int | None:
        row = self.steps.currentRow()
        return None if row < 0 else row

    def selected_step(self) -> dict[str, Any] | None:
        if self.state is None:
            return None
        i = self.selected_index()
        i = self.state["next"] if i is None else i
        return None if i is None else self.state["steps"][i]

    def show_preflight(self, ok: bool, failed: list[str]) -> None:
        if ok:
            self.preflight.setText("<span style='color:#2e7d32'><b>Pre-flight: passed</b></span>")
        else:
            items = "".join(f"<li>{t}</li>" for t in failed)
            self.preflight.setText(f"<span style='color:#c62828'><b>Pre-flight: failed</b></span><ul>{items}</ul>")


class SessionDialog(QDialog):
    """The session form. The subject id is pseudonymous (letters, digits, _ and -): never a name."""

    def __init__(self, info: dict[str, str] | None = None, subject: str = "", protocol: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Session")
        info = info or {}
        self.subject = QLineEdit(subject)
        self.subject.setPlaceholderText("pseudonymous id, e.g. S07")
        self.subject.setValidator(QRegularExpressionValidator(QRegularExpression(ID_PATTERN.strip("^$"))))
        self.skill = QComboBox()
        self.skill.addItems(SKILL_LEVELS)
        self.skill.setCurrentText(info.get("skill_level", ""))
        self.operator = QLineEdit(info.get("operator", ""))
        self.notes = QPlainTextEdit(info.get("notes", ""))
        self.notes.setFixedHeight(70)
        self.protocol = QLineEdit(protocol if protocol is not None else str(FLEX_PROTOCOL))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        proto_row = QHBoxLayout()
        proto_row.addWidget(self.protocol, 1)
        proto_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Subject id", self.subject)
        form.addRow("Skill level", self.skill)
        form.addRow("Operator", self.operator)
        form.addRow("Notes", self.notes)
        form.addRow("Protocol", proto_row)
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c62828")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Protocol file", self.protocol.text(), "Protocol (*.toml)")
        if path:
            self.protocol.setText(path)

    def _accept(self) -> None:
        if not re.match(ID_PATTERN, self.subject.text()):
            self.problem.setText("The subject id is missing or not valid: letters, digits, _ and - only")
            return
        self.accept()

    def values(self) -> dict[str, Any]:
        return {"subject": self.subject.text(), "protocol": self.protocol.text().strip() or None,
                "info": {"skill_level": self.skill.currentText(), "operator": self.operator.text().strip(),
                         "notes": self.notes.toPlainText().strip()}}
