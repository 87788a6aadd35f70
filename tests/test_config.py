"""Rig files: the simulated lab loads; bad files get errors that name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from acquisition.config import SIM_RIG, RigError, TakeInfo, load_rig
from acquisition.lslconfig import lsl_config_text

SIM_TEXT = SIM_RIG.read_text()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rig.toml"
    p.write_text(text)
    return p


def test_simulated_lab_loads():
    rig = load_rig()
    assert rig.name == "simlab"
    assert [d.id for d in rig.devices] == ["trigger", "emg1", "emg2", "emg3", "emg4", "chest", "cam1", "cam2", "cam3",
                                           "cam4", "phone"]
    emg = rig.context("emg1")
    assert emg.settings.protocol == "shimmer3-exg" and emg.settings.rate == 2048
    assert emg.settings.labels[0] == "vastus_lateralis_l" and rig.device("emg1").connection == "emulator"
    assert rig.context("phone").settings.fps == 30 and rig.context("cam1").settings.fps == 60
    assert rig.lsl.scope == "machine" and rig.lsl.session_id == "flexcap-sim"


def test_wrong_value_names_file_key_and_value(tmp_path):
    path = write(tmp_path, SIM_TEXT.replace("rate = 2048", 'rate = "fast"', 1))
    with pytest.raises(RigError) as err:
        load_rig(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: devices[1] (id 'emg1').settings.rate: ")
    assert "valid number" in msg and "(got 'fast')" in msg


def test_out_of_range_setting(tmp_path):
    path = write(tmp_path, SIM_TEXT.replace("fps = 30", "fps = -5"))
    with pytest.raises(RigError, match=r"devices\[10\] \(id 'phone'\)\.settings\.fps: Input should be greater than 0"):
        load_rig(path)


def test_unknown_kind_lists_known_kinds(tmp_path):
    path = write(tmp_path, SIM_TEXT.replace('kind = "chest"', 'kind = "polar-h11"'))
    with pytest.raises(RigError) as err:
        load_rig(path)
    assert f"{path}: devices[5] (id 'chest').kind: unknown device kind 'polar-h11'" in str(err.value)
    assert "camera, chest, emg, trigger" in str(err.value)


def test_missing_key_and_unknown_key(tmp_path):
    path = write(tmp_path, SIM_TEXT.replace('name = "simlab"\n', ""))
    with pytest.raises(RigError, match=rf"^{path}: name: Field required$"):
        load_rig(path)
    path = write(tmp_path, SIM_TEXT.replace("[recorder]\n", "[recorder]\npoll_hz = 3\n"))
    with pytest.raises(RigError, match=r"recorder\.poll_hz: Extra inputs are not permitted"):
        load_rig(path)


def test_duplicate_ids_and_bad_toml(tmp_path):
    path = write(tmp_path, SIM_TEXT.replace('id = "cam2"', 'id = "cam1"'))
    with pytest.raises(RigError, match="device id 'cam1' is used twice"):
        load_rig(path)
    path = write(tmp_path, SIM_TEXT.replace("[sim]", "[sim"))
    with pytest.raises(RigError, match=rf"^{path}: not valid TOML: .*line \d+"):
        load_rig(path)
    with pytest.raises(RigError, match="rig file not found"):
        load_rig(tmp_path / "nope.toml")


def test_sync_settings_must_name_real_devices(tmp_path):
    path = write(tmp_path, SIM_TEXT.replace('[sync]\ntrigger = "trigger"', '[sync]\ntrigger = "emg1"'))
    with pytest.raises(RigError, match=rf"^{path}: sync.trigger: 'emg1' is not a device of kind 'trigger' \(the "
                                       r"trigger box the sync controller fires\)$"):
        load_rig(path)
    path = write(tmp_path, SIM_TEXT.replace("[sync.cameras.phone]", "[sync.cameras.cam9]"))
    with pytest.raises(RigError, match=rf"^{path}: sync.cameras: no device 'cam9' in the rig$"):
        load_rig(path)
    emulated = 'kind = "trigger"\nid = "trigger"\nconnection = "emulator"'
    path = write(tmp_path, SIM_TEXT.replace(emulated, 'kind = "trigger"\nid = "trigger"\nconnection = "/dev/ttyACM0"'))
    with pytest.raises(RigError, match=rf"^{path}: sim.trigger: 'trigger' must have connection = 'emulator'$"):
        load_rig(path)
    path = write(tmp_path, SIM_TEXT.replace("every_s = 5.0", "every_s = -1"))
    with pytest.raises(RigError, match=r"sync.every_s: Input should be greater than 0 \(got -1\)"):
        load_rig(path)


def test_wrong_label_count_and_impossible_rate(tmp_path):
    first_labels = next(line for line in SIM_TEXT.splitlines() if line.startswith("labels = "))
    text = SIM_TEXT.replace(first_labels, 'labels = ["a", "b"]')
    with pytest.raises(RigError, match=r"devices\[1\] \(id 'emg1'\)\.settings: Value error, labels has 2 names; "
                                       r"shimmer3-exg has 4 channels"):
        load_rig(write(tmp_path, text))
    with pytest.raises(RigError, match=r"the cyton-daisy sends 125 Hz over the USB dongle; got rate 2048"):
        load_rig(write(tmp_path, SIM_TEXT.replace('protocol = "shimmer3-exg"', 'protocol = "cyton-daisy"', 1)))


def test_take_info_rejects_unsafe_names():
    assert TakeInfo(subject="S01", action="deadlift", repetition=3).repetition == 3
    with pytest.raises(ValidationError, match="subject"):
        TakeInfo(subject="../etc", action="x", repetition=1)
    with pytest.raises(ValidationError, match="repetition"):
        TakeInfo(subject="S01", action="x", repetition=0)


def test_shipped_lsl_config_is_loopback_only():
    root_cfg = (Path(__file__).resolve().parents[1] / "lsl_api.cfg").read_text()
    assert "ResolveScope = machine" in root_cfg and "IPv6 = disable" in root_cfg
    text = lsl_config_text(load_rig().lsl)
    assert "ResolveScope = machine" in text and "IPv6 = disable" in text and "SessionID = flexcap-sim" in text
    assert "PortRange = 128" in text and "PortRange = 128" in root_cfg  # more outlets than the default 32
