"""The sync controller's offline half: align a take's streams to the trigger box's pulses
(acquisition.sync.align), and report how well (acquisition.sync.report)."""

from __future__ import annotations

from pathlib import Path

from acquisition.sync.align import TakeSync, align_take
from acquisition.sync.report import Verdict, write_sync


def sync_take(take: str | Path, plot: bool = True) -> tuple[TakeSync, Verdict]:
    """Align a take and write /sync, sync_report.txt, sync_report.png and sync.json next to it."""
    ts = align_take(take)
    return ts, write_sync(ts, plot)


__all__ = ["TakeSync", "Verdict", "align_take", "sync_take", "write_sync"]
