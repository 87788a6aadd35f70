"""Point liblsl at a configuration that matches the rig's [lsl] table. Must run before the first LSL
outlet or inlet of the process; child processes inherit it through LSLAPICFG."""

from __future__ import annotations

import os
from pathlib import Path

from acquisition.config import LslSettings
from drivers.runtime.paths import runtime_dir, write_atomically


def lsl_config_text(settings: LslSettings) -> str:
    lines = [
        "; written by flexcap from the rig file's [lsl] table",
        "[ports]",
        f"IPv6 = {'allow' if settings.ipv6 else 'disable'}",
        f"PortRange = {settings.port_range}",
        "",
        "[multicast]",
        f"ResolveScope = {settings.scope}",
    ]
    if settings.known_peers:
        lines.append("KnownPeers = {" + ", ".join(settings.known_peers) + "}")
    lines += ["", "[lab]", f"SessionID = {settings.session_id}", "", "[log]", "level = -2", ""]
    return "\n".join(lines)


def apply_lsl_settings(settings: LslSettings) -> Path:
    """Write the configuration file and export LSLAPICFG for this process and its children."""
    path = runtime_dir() / f"lsl_api_{settings.session_id}_{settings.scope}{'_v6' if settings.ipv6 else ''}.cfg"
    text = lsl_config_text(settings)
    if not path.exists() or path.read_text() != text:
        write_atomically(path, text)
    os.environ["LSLAPICFG"] = str(path)
    return path


def apply_default_lsl_settings() -> None:
    """Without a rig: keep an explicit LSLAPICFG; otherwise stay on this machine (the default scope)."""
    if not os.environ.get("LSLAPICFG"):
        apply_lsl_settings(LslSettings())
