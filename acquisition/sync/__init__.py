"""The sync controller. Offline: align a take's streams to the trigger box's pulses
(acquisition.sync.align) and report how well (acquisition.sync.report). Online: clock offsets, round
trips and live latencies in the recorder (acquisition.sync.live). Imports stay lazy: the recorder
process needs only the online half."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acquisition.sync.align import TakeSync
    from acquisition.sync.report import Verdict


def sync_take(take: str | Path, plot: bool = True) -> tuple[TakeSync, Verdict]:
    """Align a take and write /sync, sync_report.txt, sync_report.png and sync.json next to it."""
    from acquisition.sync.align import align_take
    from acquisition.sync.report import write_sync

    ts = align_take(take)
    return ts, write_sync(ts, plot)
