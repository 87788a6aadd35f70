"""Stream declarations: what a driver publishes, with XDF-style metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pylsl

IRREGULAR_RATE = 0.0

# LSL channel formats flexcap uses, with the numpy dtype of one value (strings have none).
CHANNEL_FORMATS: dict[str, type | None] = {
    "float32": np.float32,
    "double64": np.float64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "int64": np.int64,
    "string": None,
}


@dataclass(frozen=True)
class ChannelSpec:
    label: str
    unit: str
    type: str


@dataclass(frozen=True)
class StreamSpec:
    """One LSL stream of a device.

    `key` names the stream within its device; the recorder stores it as /streams/<stream_id>, where
    stream_id is the device id, or "<device id>_<key>" when the key differs from the device id.
    """

    key: str
    name: str
    type: str
    channels: tuple[ChannelSpec, ...]
    nominal_srate: float
    channel_format: str
    source_id: str
    stream_id: str
    extra_desc: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def channel_count(self) -> int:
        return len(self.channels)

    @property
    def dtype(self) -> np.dtype | None:
        t = CHANNEL_FORMATS[self.channel_format]
        return None if t is None else np.dtype(t)

    def labels_json(self) -> str:
        return json.dumps([c.label for c in self.channels])

    def units_json(self) -> str:
        return json.dumps([c.unit for c in self.channels])

    def types_json(self) -> str:
        return json.dumps([c.type for c in self.channels])


# liblsl's channel-format codes, by name
FORMAT_CODES: dict[str, int] = {"float32": pylsl.cf_float32, "double64": pylsl.cf_double64, "string": pylsl.cf_string,
                                "int32": pylsl.cf_int32, "int16": pylsl.cf_int16, "int8": pylsl.cf_int8,
                                "int64": pylsl.cf_int64}
FORMAT_NAMES: dict[int, str] = {code: name for name, code in FORMAT_CODES.items()}


def source_id_for(rig_name: str, device_id: str, key: str) -> str:
    """A stable source_id: the same rig, device and stream give the same id on every run."""
    return f"flexcap:{rig_name}:{device_id}:{key}"


def stream_id_for(device_id: str, key: str) -> str:
    return device_id if key == device_id else f"{device_id}_{key}"


def channels(labels: list[str] | tuple[str, ...], unit: str, ctype: str) -> tuple[ChannelSpec, ...]:
    return tuple(ChannelSpec(label, unit, ctype) for label in labels)


def make_stream_info(spec: StreamSpec) -> pylsl.StreamInfo:
    """Build the LSL StreamInfo with desc/channels/channel/{label,unit,type} and any extra desc groups."""
    info = pylsl.StreamInfo(
        spec.name,
        spec.type,
        spec.channel_count,
        spec.nominal_srate,
        spec.channel_format,
        spec.source_id,
    )
    desc = info.desc()
    chans = desc.append_child("channels")
    for ch in spec.channels:
        node = chans.append_child("channel")
        node.append_child_value("label", ch.label)
        node.append_child_value("unit", ch.unit)
        node.append_child_value("type", ch.type)
    acq = desc.append_child("acquisition")
    acq.append_child_value("manufacturer", "flexcap")
    acq.append_child_value("stream_key", spec.key)
    acq.append_child_value("stream_id", spec.stream_id)
    for group, values in spec.extra_desc.items():
        node = desc.append_child(group)
        for k, v in values.items():
            node.append_child_value(k, v)
    return info
