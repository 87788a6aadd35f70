"""The visit plan: protocol files (the FLEX-style example, and errors named by file and key), takes named
from subject, action and repetition, a bad take redone, and the plan resumed from session.json alone."""

from __future__ import annotations

import json

import pytest

from acquisition.config import TakeInfo, load_rig
from acquisition.plan import FLEX_PROTOCOL, ProtocolError, Step, VisitPlan, load_protocol, parse_protocol
from acquisition.session import Session, SessionInfo


def test_the_flex_protocol_is_20_actions_of_10_repetitions():
    protocol = load_protocol(FLEX_PROTOCOL)
    steps = protocol.steps()
    assert protocol.name == "flex" and len(protocol.actions) == 20 and len(steps) == 200
    assert steps[0] == Step("back_squat", 1, 12.0) and steps[9] == Step("back_squat", 10, 12.0)
    assert steps[10].action == "front_squat" and steps[-1] == Step("shrug", 10, 12.0)


def test_protocol_errors_name_the_file_and_the_key(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('name = "p"\n[[actions]]\naction = "squat"\n[[actions]]\naction = "squat"\n')
    with pytest.raises(ProtocolError, match=rf"^{bad}: actions: Value error, action 'squat' is listed twice"):
        load_protocol(bad)
    bad.write_text('name = "p"\n[[actions]]\naction = "squat"\nrepetitions = 0\n')
    with pytest.raises(ProtocolError, match=rf"^{bad}: actions\[0\]\.repetitions: Input should be greater than or "
                                            r"equal to 1 \(got 0\)$"):
        load_protocol(bad)
    bad.write_text('name = "p"\nactions = [\n')
    with pytest.raises(ProtocolError, match=rf"^{bad}: not valid TOML"):
        load_protocol(bad)
    with pytest.raises(ProtocolError, match="protocol file not found"):
        load_protocol(tmp_path / "none.toml")
    with pytest.raises(ProtocolError, match=r"actions\[0\]\.action: String should match pattern"):
        parse_protocol({"name": "p", "actions": [{"action": "back squat"}]})


def record(session: Session, step: Step, status: str = "ok") -> str:
    """What the rig does for a take: a numbered folder, then the take's entry in session.json."""
    path = session.next_take_dir(TakeInfo(subject="S07", action=step.action, repetition=step.repetition))
    session.record_take({"take": path.name, "action": step.action, "repetition": step.repetition,
                         "status": status})
    return path.name


def test_the_plan_advances_redoes_a_bad_take_and_resumes(tmp_path):
    rig = load_rig()
    protocol = parse_protocol({"name": "mini", "defaults": {"repetitions": 2},
                               "actions": [{"action": "squat"}, {"action": "curl", "repetitions": 1}]})
    session = Session(tmp_path, "S07", rig, date="2026-11-22")
    session.update_info(SessionInfo(skill_level="novice", operator="op1", notes="left knee taped"))
    plan = VisitPlan(session, protocol)
    assert [(s.action, s.repetition) for s in plan.steps] == [("squat", 1), ("squat", 2), ("curl", 1)]
    assert plan.next_step() == Step("squat", 1, None) and plan.progress() == (0, 3)
    assert record(session, plan.next_step()) == "001_squat_1"
    assert record(session, plan.next_step()) == "002_squat_2"
    assert plan.next_step() == Step("curl", 1, None)
    # the second squat was bad: it stays on disk, and its repetition is due again, under a new number
    assert plan.mark_bad("002_squat_2", "bar slipped") == Step("squat", 2, None)
    assert plan.next_step() == Step("squat", 2, None) and plan.progress() == (1, 3)
    assert record(session, plan.next_step()) == "003_squat_2"
    assert (session.path / "002_squat_2").is_dir()
    # the console crashes here: a new process finds the plan in session.json alone
    again = VisitPlan(Session(tmp_path, "S07", rig, date="2026-11-22"))
    assert again.next_step() == Step("curl", 1, None) and again.progress() == (2, 3)
    saved = json.loads(session.file.read_text())
    assert saved["skill_level"] == "novice" and saved["notes"] == "left knee taped"
    assert [t["take"] for t in saved["takes"] if t.get("bad")] == ["002_squat_2"]
    assert saved["takes"][1]["bad_reason"] == "bar slipped"
    record(again.session, again.next_step())
    assert again.next_step() is None and again.progress() == (3, 3)
    with pytest.raises(ProtocolError, match="this visit follows protocol 'mini', not 'flex'"):
        VisitPlan(again.session, load_protocol(FLEX_PROTOCOL))
    with pytest.raises(ProtocolError, match="no take '009_curl_1' in this session"):
        again.mark_bad("009_curl_1")


def test_a_session_without_a_plan_needs_a_protocol(tmp_path):
    session = Session(tmp_path, "S08", load_rig(), date="2026-11-22")
    with pytest.raises(ProtocolError, match="the session has no visit plan yet; give a protocol"):
        VisitPlan(session)


def test_a_take_recorded_through_another_session_object_keeps_a_bad_mark(tmp_path):
    """The console's plan and the rig's per-take Session both write session.json: neither may drop the
    other's change."""
    rig = load_rig()
    plan = VisitPlan(Session(tmp_path, "S05", rig), load_protocol(FLEX_PROTOCOL))
    plan.session.record_take({"take": "001_back_squat_1", "action": "back_squat", "repetition": 1})
    rigs_view = Session(tmp_path, "S05", rig)  # read before the take is marked bad, as a recording take's is
    plan.mark_bad("001_back_squat_1", "bar slipped")
    rigs_view.record_take({"take": "002_back_squat_2", "action": "back_squat", "repetition": 2})
    takes = json.loads(plan.session.file.read_text())["takes"]
    assert [(t["take"], t.get("bad", False)) for t in takes] == [("001_back_squat_1", True),
                                                                 ("002_back_squat_2", False)]
