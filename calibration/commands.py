"""`flexcap calibrate board | run | wizard`: print a board, calibrate from a recorded take, or open the
wizard. Saving is one function for all three: calibration.h5 and calibration.toml in the session
folder, then the calibration into the session's takes that have none."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from acquisition.session import SESSION_FILE
from acquisition.takefile import TAKE_FILE
from calibration.board import BoardSpec, save_printable
from calibration.result import CALIBRATION_FILE, TOML_FILE, Calibration, copy_into_take, export_toml, save

DEFAULT_BOARD_WARNING = ("the rig names no [calibration.board]: the default board ({}) is assumed; if the printed "
                         "board differs, every millimetre is off by the same factor")


def cmd_board(args: argparse.Namespace) -> int:
    spec = _rig_board(args.rig)
    if spec is None:
        print(f"flexcap: {args.rig} names no [calibration.board]: add one (squares_x, squares_y, square_mm, "
              "marker_mm, dictionary) to print the lab's board", file=sys.stderr)
        return 2
    try:
        out = save_printable(spec, Path(args.out), args.dpi)
    except ValueError as exc:
        print(f"flexcap: {exc}", file=sys.stderr)
        return 2
    w, h = spec.size_mm
    print(f"wrote {out}: {spec.describe()}, {w + spec.square_mm:g} x {h + spec.square_mm:g} mm with its margin; "
          f"print at 100 % (actual size) and check that a square measures {spec.square_mm:g} mm")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from acquisition.takefile import find_take_file
    from calibration.take import TakeError, board_of_rig, calibrate_take

    take_h5 = find_take_file(args.take)
    import h5py

    if args.rig:
        spec = _rig_board(args.rig)
    else:
        with h5py.File(take_h5, "r") as f:
            spec = board_of_rig(f.attrs.get("rig"))
    if spec is None:
        spec = BoardSpec()
        print(f"warning: {DEFAULT_BOARD_WARNING.format(spec.describe())} (or give --rig)", file=sys.stderr)
    cameras = [c.strip() for c in args.cameras.split(",")] if args.cameras else None
    bar = TerminalProgress()
    try:
        cal = calibrate_take(take_h5.parent, spec, cameras, bar)
    except TakeError as exc:
        bar.done()
        print(f"flexcap: {exc}", file=sys.stderr)
        return 2
    bar.done()
    print(f"views: {cal.source.split(': ', 1)[1]}")
    print(cal.report())
    if not cal.ok:
        print("\nnot saved: the calibration has errors (above); fix them and record the take again",
              file=sys.stderr)
        return 1
    if not args.no_save:
        try:
            written = accept(cal, take_h5.parent.parent)
        except ValueError as exc:
            print(f"\nnot saved: {exc}", file=sys.stderr)
            return 1
        print("\n" + written)
    return 0


def cmd_wizard(args: argparse.Namespace) -> int:
    from calibration.wizard.app import run

    return run(args.rig, args.sessions, args.subject)


def accept(cal: Calibration, session_dir: Path) -> str:
    """Save an accepted calibration for the session and give it to the session's finished takes that have
    none. Returns what was written, for people."""
    if not cal.ok:
        raise ValueError("a calibration with errors is never saved: " + "; ".join(a.text for a in cal.errors))
    if not (session_dir / SESSION_FILE).exists():
        raise ValueError(f"{session_dir} is not a session folder (no {SESSION_FILE}): the calibration is saved "
                         "with the session of the take it came from")
    path = save(cal, session_dir / CALIBRATION_FILE)
    export_toml(cal, session_dir / TOML_FILE)
    given, notes = [], []
    for take in sorted(session_dir.glob(f"*/{TAKE_FILE}")):
        try:
            left_out = copy_into_take(path, take)
        except OSError as exc:  # another process has it open (a take being recorded): it stays as it is
            notes.append(f"{take.parent.name} not given the calibration: {exc}")
            continue
        if left_out is not None:
            given.append(take.parent.name)
            notes += [f"{take.parent.name}: {what}" for what in left_out]
    takes = f"; copied into {len(given)} take{'s' if len(given) != 1 else ''}" if given else ""
    return f"saved {path} and {session_dir / TOML_FILE}{takes}" + "".join(f"\n{n}" for n in notes)


def _rig_board(rig: str | None) -> BoardSpec | None:
    """The board a rig file names (None: it names none); no rig: the default board."""
    if rig is None:
        return BoardSpec()
    from acquisition.config import load_rig

    return load_rig(rig).calibration.board


class TerminalProgress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, width: int = 30) -> None:
        self.width = width
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, fraction: float, text: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {text}"
        if self.tty:
            sys.stderr.write("\r" + line[:120].ljust(len(self.last)))
        elif text != self.last:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.last = line if self.tty else text

    def done(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")
