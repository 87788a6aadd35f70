"""The `flexcap` command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from drivers.runtime.process import die_with_parent

EMG_PROTOCOLS = ["shimmer3-exg", "cyton", "cyton-daisy"]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`. Not directly: a handler runs between two bytecodes of the main
    thread, which may be inside stop.set() or stop.wait() holding the event's lock, and a second signal
    (the kernel's parent-death SIGTERM, then the supervisor's) would deadlock on it. A helper thread
    sets the event instead, once."""
    requested = [False]  # a plain flag: no lock to be re-entered

    def handler(signum: int, _frame: object) -> None:
        if not requested[0]:
            requested[0] = True
            threading.Thread(target=stop.set, name="stop-signal", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_record(args: argparse.Namespace) -> int:
    from acquisition.config import TakeInfo, load_rig
    from acquisition.inspect import format_inspection, inspect_take
    from acquisition.rig import RigController
    from acquisition.validate import validate_take

    rig = load_rig(args.rig)
    take = TakeInfo(subject=args.subject, action=args.action, repetition=args.rep, operator=args.operator)
    print(f"flexcap: rig {rig.name!r} ({len(rig.enabled_devices())} devices) from {rig.source}")
    with RigController(rig, args.sessions) as ctl:
        missing = ctl.start()
        if missing:
            print(f"flexcap: streams not found after {rig.recorder.stream_wait_s:g} s: {', '.join(missing)}; "
                  "recording the others", file=sys.stderr)
        for problem in ctl.camera_problems():
            print(f"flexcap: before the take: {problem}", file=sys.stderr)
        if args.settle > 0:  # 17 processes have just started: device clock fits settle on late first arrivals
            print(f"flexcap: letting the rig settle for {args.settle:g} s")
            time.sleep(args.settle)

        def progress(elapsed: float, status: dict) -> None:
            counts = status["streams"]
            emg = [v["recorded"] for k, v in counts.items() if not k.endswith("_status")]
            print(f"\r  recording {elapsed:6.1f} / {args.duration:g} s   {len(emg)} streams, "
                  f"{sum(emg):,} samples", end="", flush=True)

        result = ctl.record(take, args.duration, progress)
        print()
    for problem in result.problems:
        print(f"flexcap: {problem}", file=sys.stderr)
    print(format_inspection(inspect_take(result.path)))
    if result.sync is not None:
        print(f"\nsync: {result.sync['level'].upper()}: {result.sync['text']} "
              f"(sync_report.txt and .png in the take folder)")
    problems = validate_take(result.path)
    print(f"\nvalidate: {'OK' if not problems else 'INVALID'}")
    for p in problems:
        print(f"  {p}")
    return 0 if not problems else 1


def cmd_console(args: argparse.Namespace) -> int:
    from acquisition.console.app import run

    return run(args.rig, args.sessions, args.subject, args.protocol, args.operator)


def cmd_sync(args: argparse.Namespace) -> int:
    from acquisition.sync import sync_take
    from acquisition.sync.report import REPORT_JSON, REPORT_PNG, REPORT_TXT
    from acquisition.takefile import find_take_file

    take_dir = find_take_file(args.take).parent
    _ts, verdict = sync_take(take_dir, plot=not args.no_plot)
    if args.json:
        print((take_dir / REPORT_JSON).read_text())
    else:
        print((take_dir / REPORT_TXT).read_text(), end="")
        written = [REPORT_TXT, REPORT_JSON] + ([] if args.no_plot else [REPORT_PNG])
        print(f"\nwrote /sync in take.h5 and {', '.join(written)} in {take_dir}")
    return {"green": 0, "amber": 0, "red": 3}[verdict.level]


def cmd_xdf(args: argparse.Namespace) -> int:
    from acquisition.takefile import find_take_file
    from acquisition.xdf import write_xdf

    take_dir = find_take_file(args.take).parent
    out = Path(args.out) if args.out else take_dir / f"{take_dir.name}.xdf"
    streams = [s for s in args.streams.split(",") if s] if args.streams else None
    try:
        summary = write_xdf(take_dir, out, streams)
    except (FileExistsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    n = sum(s["samples"] for s in summary["streams"].values())
    print(f"wrote {out}: {len(summary['streams'])} streams, {n:,} samples (raw stamps and clock offsets, as "
          "LabRecorder writes them)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from acquisition.inspect import format_inspection, inspect_take, inspection_json

    info = inspect_take(args.take)
    print(inspection_json(info) if args.json else format_inspection(info))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from acquisition.validate import validate_take

    problems = validate_take(args.take)
    if problems:
        print(f"{args.take}: INVALID ({len(problems)} problems)")
        for p in problems:
            print(f"  {p}")
        return 1
    print(f"{args.take}: valid flexcap take (format version 1)")
    return 0


def cmd_streams(args: argparse.Namespace) -> int:
    from acquisition.config import load_rig
    from acquisition.lslconfig import apply_default_lsl_settings, apply_lsl_settings

    if args.rig:
        apply_lsl_settings(load_rig(args.rig).lsl)
    else:
        apply_default_lsl_settings()
    import pylsl

    resolver = pylsl.ContinuousResolver()
    threading.Event().wait(args.wait)
    infos = sorted(resolver.results(), key=lambda i: (i.source_id(), i.name()))
    if not infos:
        print(f"no LSL streams found within {args.wait:g} s")
        return 0
    from drivers.runtime.streams import FORMAT_NAMES

    print(f"{'name':<20}{'type':<18}{'ch':>4}{'rate':>8}  {'format':<9}{'host':<16}source_id")
    for i in infos:
        rate = f"{i.nominal_srate():g}" if i.nominal_srate() > 0 else "irreg"
        print(f"{i.name()[:19]:<20}{i.type()[:17]:<18}{i.channel_count():>4}{rate:>8}  "
              f"{FORMAT_NAMES.get(i.channel_format(), '?'):<9}{i.hostname()[:15]:<16}{i.source_id()}")
    return 0


def _standalone_settings(cls, args: argparse.Namespace):  # noqa: ANN202 - the driver's pydantic settings
    """Settings for a driver run without a rig file, from its command-line options."""
    if args.kind == "emg":
        if not args.protocol or not args.port:
            raise UsageError("flexcap driver emg needs --protocol and --port (or --rig and --id)")
        return cls.Settings(protocol=args.protocol, port=args.port, rate=args.rate, name=args.name)
    if args.kind == "chest":
        if not (args.emulate or args.replay or args.address or args.strap):
            raise UsageError("flexcap driver chest needs --address, --strap NAME, --emulate or --replay FILE")
        return cls.Settings(address=args.address, name=args.strap, replay=args.replay, log=args.log,
                            stream_prefix=args.name)
    if args.kind == "camera":
        if not args.source or not args.out:
            raise UsageError("flexcap driver camera needs --source and --out (or --rig and --id)")
        if not args.id:
            raise UsageError("flexcap driver camera needs --id (the camera's name: DIR/ID.h5, stream ID)")
        target = Path(args.out) / f"{args.id}.h5"
        if target.exists():
            raise UsageError(f"{target} exists: flexcap never overwrites a recording (choose another --out or --id)")
        fields = {k: v for k, v in (("fps", args.fps), ("width", args.width), ("height", args.height),
                                    ("role", args.role)) if v is not None}
        return cls.Settings(source=args.source, out_dir=args.out, control=args.control if "://" in args.control else "",
                            **fields)
    if args.kind == "trigger":
        if not args.port:
            raise UsageError("flexcap driver trigger needs --port (or --rig and --id)")
        return cls.Settings(port=args.port, protocol=args.box)
    return cls.Settings()


class UsageError(ValueError):
    pass


def cmd_driver(args: argparse.Namespace) -> int:
    die_with_parent()
    from acquisition.config import load_rig
    from acquisition.lslconfig import apply_default_lsl_settings, apply_lsl_settings
    from drivers.registry import driver_class
    from drivers.runtime.control import ControlServer
    from drivers.runtime.driver import DriverContext, run_driver
    from drivers.sim.lab import SimLabSettings

    cls = driver_class(args.kind)
    if args.rig:
        rig = load_rig(args.rig)
        device_id = args.id or next((d.id for d in rig.devices if d.kind == args.kind), None)
        if device_id is None:
            raise UsageError(f"{rig.source}: no device of kind {args.kind!r}")
        apply_lsl_settings(rig.lsl)
        ctx = rig.context(device_id)
        if ctx.kind != args.kind:
            raise UsageError(f"{rig.source}: device {device_id!r} is of kind {ctx.kind!r}, not {args.kind!r}")
    else:
        apply_default_lsl_settings()
        device_id = args.id or args.name or args.kind.removeprefix("sim-")
        connection = "emulator" if args.emulate else ""
        ctx = DriverContext(device_id, args.kind, connection=connection, settings=_standalone_settings(cls, args),
                            sim=SimLabSettings() if args.kind.startswith("sim-") or args.emulate else None)
    driver = cls(ctx)
    if args.every is not None:
        if args.kind != "trigger":
            raise UsageError("--every is for the trigger box")
        driver.periodic(args.every)
    stop = threading.Event()
    _stop_on_signals(stop)
    if args.control == "stdio":
        handlers = {"ping": lambda: {"device": device_id, "kind": args.kind}, **driver.commands()}
        ControlServer(handlers, on_eof=stop.set).start()
    else:
        print(f"flexcap driver {args.kind} {device_id!r}: publishing "
              + ", ".join(s.stream_id for s in cls.stream_specs(ctx)) + " (Ctrl-C stops)", file=sys.stderr)
    run_driver(driver, stop)
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    """An emulated device: a serial amplifier on a pseudo-terminal, or a camera's HTTP side."""
    die_with_parent()
    if args.kind == "camera":
        return _emulate_camera(args)
    if args.kind == "trigger":
        return _emulate_trigger(args)
    from acquisition.config import load_rig
    from drivers.runtime.control import ControlServer
    from drivers.runtime.paths import emulator_link
    from drivers.sim.emg_emulator import EmgEmulator, EmgEmulatorSettings, EmgFaults
    from drivers.sim.emg_signal import device_seed
    from drivers.sim.triggerline import pulse_line

    if args.rig:
        rig = load_rig(args.rig)
        ctx = rig.context(args.id)
        s = ctx.settings
        emulator = EmgEmulator(s.protocol, s.rate, s.emulator, rig.sim, device_seed(args.id),
                               emulator_link(rig.name, args.id), pulse_line(rig.sim, rig.name))
        device_id = args.id
    else:
        if not args.protocol:
            raise UsageError("flexcap emulate emg needs --protocol (or --rig and --id)")
        faults = EmgFaults(garbage_every_s=args.garbage_every, drop_every=args.drop_every,
                           corrupt_at_s=args.corrupt_at, disconnect_at_s=args.disconnect_at)
        link = Path(args.link) if args.link else None
        emulator = EmgEmulator(args.protocol, args.rate, EmgEmulatorSettings(faults=faults), seed=args.seed, link=link)
        device_id = args.protocol
    path = emulator.open()
    _stop_on_signals(emulator.stop_event)
    if args.control == "stdio":
        ControlServer({"path": lambda: str(emulator.port.link or emulator.path),
                       "truth": lambda: {device_id: emulator.truth()} if emulator.truth() else {},
                       "faults": lambda: emulator.fault_log}, on_eof=emulator.stop_event.set).start()
    else:
        print(path + (f" (linked from {args.link})" if args.link else ""), flush=True)
        print(f"flexcap: emulating {args.protocol} on {path}; Ctrl-C stops", file=sys.stderr)
    emulator.run()
    return 0


def _emulate_camera(args: argparse.Namespace) -> int:
    from acquisition.config import load_rig
    from drivers.runtime.control import ControlServer
    from drivers.runtime.paths import emulator_address_file, write_atomically
    from drivers.sim.camera import CameraEmulator
    from drivers.sim.emg_signal import device_seed
    from drivers.sim.triggerline import pulse_line

    if not (args.rig and args.id):
        raise UsageError("flexcap emulate camera needs --rig and --id")
    rig = load_rig(args.rig)
    ctx = rig.context(args.id)
    emulator = CameraEmulator(args.id, ctx.settings, rig.sim, device_seed(args.id), pulse_line(rig.sim, rig.name))
    address = emulator_address_file(rig.name, args.id)
    write_atomically(address, emulator.address_json())
    _stop_on_signals(emulator.stop_event)
    if args.control == "stdio":
        ControlServer({"path": emulator.address_json, "truth": emulator.truth},
                      on_eof=emulator.stop_event.set).start()
    else:
        print(emulator.address_json(), flush=True)
    try:
        emulator.stop_event.wait()
    finally:
        emulator.stop()
        address.unlink(missing_ok=True)
    return 0


def _emulate_trigger(args: argparse.Namespace) -> int:
    from acquisition.config import load_rig
    from drivers.runtime.control import ControlServer
    from drivers.runtime.paths import emulator_link
    from drivers.sim.trigger_box import TriggerBoxEmulator
    from drivers.sim.triggerline import line_file

    if args.rig:
        if not args.id:
            raise UsageError("flexcap emulate trigger --rig needs --id")
        rig = load_rig(args.rig)
        ctx = rig.context(args.id)
        wired = rig.sim is not None and rig.sim.trigger == args.id  # its output drives the simulated devices
        emulator = TriggerBoxEmulator(ctx.settings.emulator, emulator_link(rig.name, args.id),
                                      line_file(rig.name, args.id) if wired else None)
        device_id = args.id
    else:
        emulator = TriggerBoxEmulator(link=Path(args.link) if args.link else None)
        device_id = "trigger"
    path = emulator.open()
    _stop_on_signals(emulator.stop_event)
    if args.control == "stdio":
        ControlServer({"path": lambda: str(emulator.port.link or emulator.path),
                       "truth": lambda: {device_id: emulator.truth()}}, on_eof=emulator.stop_event.set).start()
    else:
        print(path + (f" (linked from {args.link})" if args.link else ""), flush=True)
        print(f"flexcap: emulating a flexcap trigger box on {path}; Ctrl-C stops", file=sys.stderr)
    emulator.run()
    return 0


def cmd_recorder_service(args: argparse.Namespace) -> int:
    """Internal: the recorder process, controlled over stdin/stdout by a RigController."""
    die_with_parent()
    from acquisition.config import RecorderSettings
    from acquisition.recorder import Recorder
    from drivers.runtime.control import ControlServer

    stop = threading.Event()
    _stop_on_signals(stop)
    server: ControlServer | None = None
    recorder = Recorder(RecorderSettings.model_validate_json(args.settings),
                        emit=lambda name, **kw: server.event(name, **kw) if server else None, rig_name=args.rig_name)
    server = ControlServer({
        "connect": recorder.connect,
        "wait_connected": lambda wait_s: recorder.wait_connected(wait_s),
        "start": recorder.start,
        "stop": recorder.stop,
        "status": recorder.status,
        "set_latencies": recorder.set_latencies,
        "mark": recorder.mark,
    }, on_eof=stop.set)
    server.start()
    stop.wait()
    recorder.shutdown()
    return 0


def _calibrate_parser(sub: argparse._SubParsersAction) -> None:
    # the commands live in calibration.commands, imported only when one runs (cv2, scipy: slow to load)
    cal = sub.add_parser("calibrate", help="multiview camera calibration: print a board, calibrate, wizard")
    which = cal.add_subparsers(dest="calibrate_command", required=True, metavar="{board,run,wizard}")

    b = which.add_parser("board", help="write the ChArUco board for printing at true scale (PNG or PDF)")
    b.add_argument("--out", required=True, help="board.png (with its DPI) or board.pdf (a page the board's size)")
    b.add_argument("--dpi", type=float, default=300.0)
    b.add_argument("--rig", help="the rig whose [calibration.board] to print (default: the simulated lab's)")
    b.set_defaults(func=_calibration_command("cmd_board"))

    r = which.add_parser("run", help="calibrate from a recorded calibration take")
    r.add_argument("take", help="take folder or take.h5 of a calibration take")
    r.add_argument("--cameras", help="comma-separated camera ids (default: all of the take's)")
    r.add_argument("--no-save", action="store_true", help="report only; do not write calibration.h5")
    r.add_argument("--rig", help="take the board from this rig file (default: the rig the take was recorded with)")
    r.set_defaults(func=_calibration_command("cmd_run"))

    w = which.add_parser("wizard", help="the calibration wizard (Qt): live cameras, capture, calibrate, accept")
    w.add_argument("--rig", default="simlab-calibration",
                   help="rig file (TOML) or a bundled rig's name (default: simlab-calibration)")
    w.add_argument("--sessions", help="where sessions are stored (default: the rig's sessions_dir)")
    w.add_argument("--subject", default="calibration", help="the session the calibration is for")
    w.set_defaults(func=_calibration_command("cmd_wizard"))


def _calibration_command(name: str):
    def run(args: argparse.Namespace) -> int:
        from calibration import commands

        return getattr(commands, name)(args)
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flexcap", description="Acquisition for a multimodal fitness-capture lab.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{record,console,calibrate,sync,xdf,inspect,validate,streams,driver,emulate}")

    r = sub.add_parser("record", help="record one take headless")
    r.add_argument("--rig", help="rig file (TOML); default: the simulated lab")
    r.add_argument("--duration", type=float, required=True, help="seconds")
    r.add_argument("--subject", required=True, help="pseudonymous subject id")
    r.add_argument("--action", required=True)
    r.add_argument("--rep", type=int, required=True, help="repetition number (1, 2, ...)")
    r.add_argument("--operator", default="")
    r.add_argument("--sessions", help="where sessions are stored (default: the rig's sessions_dir)")
    r.add_argument("--settle", type=float, default=5.0, metavar="S",
                   help="seconds between the rig's start and the take (default 5: the devices' clock fits settle)")
    r.set_defaults(func=cmd_record)

    c = sub.add_parser("console", help="the operator console (Qt): rig health, previews, signals, visit plan")
    c.add_argument("--rig", help="rig file (TOML); default: the simulated lab")
    c.add_argument("--subject", help="open this subject's session at once (pseudonymous id)")
    c.add_argument("--protocol", help="protocol file of the visit plan (default: the FLEX example)")
    c.add_argument("--operator", default="")
    c.add_argument("--sessions", help="where sessions are stored (default: the rig's sessions_dir)")
    c.set_defaults(func=cmd_console)

    _calibrate_parser(sub)

    y = sub.add_parser("sync", help="align a take's streams to its sync pulses (writes /sync and a report)")
    y.add_argument("take", help="take folder or take.h5")
    y.add_argument("--json", action="store_true", help="print the report as JSON")
    y.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    y.set_defaults(func=cmd_sync)

    x = sub.add_parser("xdf", help="export a take's streams as XDF 1.0 (pyxdf, MATLAB load_xdf, MNE read it)")
    x.add_argument("take", help="take folder or take.h5")
    x.add_argument("--out", help="the .xdf file (default: TAKE/<take>.xdf); never overwritten")
    x.add_argument("--streams", help="comma-separated stream ids (default: all)")
    x.set_defaults(func=cmd_xdf)

    i = sub.add_parser("inspect", help="what a take holds")
    i.add_argument("take", help="take folder or take.h5")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)

    v = sub.add_parser("validate", help="check a take against the file format; non-zero exit if invalid")
    v.add_argument("take")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("streams", help="list the LSL streams visible from here")
    s.add_argument("--wait", type=float, default=2.0)
    s.add_argument("--rig", help="use this rig's LSL scope and session id")
    s.set_defaults(func=cmd_streams)

    d = sub.add_parser("driver", help="run one driver standalone")
    d.add_argument("kind", help="emg, chest, camera or trigger")
    d.add_argument("--rig", help="rig file with the device's settings")
    d.add_argument("--id", help="device id (in the rig file)")
    d.add_argument("--protocol", choices=EMG_PROTOCOLS, help="emg: the amplifier's protocol")
    d.add_argument("--port", help="emg, trigger: serial port, e.g. /dev/ttyUSB0 or an emulator's pty")
    d.add_argument("--rate", type=float, help="emg: sampling rate in Hz")
    d.add_argument("--name", help="LSL stream name (chest: the streams' name prefix)")
    d.add_argument("--address", help="chest: the strap's Bluetooth address")
    d.add_argument("--strap", metavar="NAME", help="chest: connect to the first strap whose name starts so")
    d.add_argument("--emulate", action="store_true", help="chest: a simulated Polar H10 instead of a strap")
    d.add_argument("--replay", metavar="FILE", help="chest: replay a notification log")
    d.add_argument("--log", metavar="FILE", help="chest: save every notification (JSON lines)")
    d.add_argument("--source", help="camera: v4l2:N, /dev/videoN, http://HOST:PORT/video, rtsp://..., file:PATH")
    d.add_argument("--out", metavar="DIR", help="camera: write DIR/ID.h5 until stopped")
    d.add_argument("--role", choices=["cinema", "phone"], help="camera: cinema (default) or phone")
    d.add_argument("--fps", type=float, help="camera: frame rate to ask for (default 60)")
    d.add_argument("--width", type=int, help="camera: frame width to ask for (default 1920)")
    d.add_argument("--height", type=int, help="camera: frame height to ask for (default 1080)")
    d.add_argument("--box", choices=["flexcap", "byte"], default="flexcap",
                   help="trigger: a flexcap box (own clock) or a box whose lines follow the last byte written")
    d.add_argument("--every", type=float, metavar="S", help="trigger: fire a coded train every S seconds")
    d.add_argument("--control", metavar="URL", default="none",
                   help="camera: record control, blackmagic://HOST:PORT or ipwebcam://HOST:PORT")
    d.set_defaults(func=cmd_driver)

    e = sub.add_parser("emulate", help="run a device emulator (prints the pseudo-terminal or URLs it serves)")
    e.add_argument("kind", choices=["emg", "camera", "trigger"])
    e.add_argument("--protocol", choices=EMG_PROTOCOLS)
    e.add_argument("--rate", type=float, help="Hz (Shimmer: 32768 / divider)")
    e.add_argument("--link", help="also make this path a symlink to the pty")
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--garbage-every", type=float, metavar="S", help="fault: garbage bytes every S seconds")
    e.add_argument("--drop-every", type=int, metavar="N", help="fault: drop every Nth packet")
    e.add_argument("--corrupt-at", type=float, metavar="S", help="fault: a burst of corrupt packets at S seconds")
    e.add_argument("--disconnect-at", type=float, metavar="S", help="fault: unplug at S seconds, replug 1 s later")
    e.add_argument("--rig", help="emulate this rig's device (with --id)")
    e.add_argument("--id")
    e.add_argument("--control", choices=["none", "stdio"], default="none", help=argparse.SUPPRESS)
    e.set_defaults(func=cmd_emulate)

    rs = sub.add_parser("_recorder")  # internal: the recorder process of a RigController
    rs.add_argument("--settings", required=True)
    rs.add_argument("--rig-name", help="publish the recorder's status stream under this rig's name")
    rs.set_defaults(func=cmd_recorder_service)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from pydantic import ValidationError

    from acquisition.config import RigError, describe_validation_error
    from drivers.registry import UnknownDriverKind

    try:
        return args.func(args)
    except (RigError, UnknownDriverKind, UsageError) as exc:
        print(f"flexcap: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"flexcap: {describe_validation_error('command line', exc)}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"flexcap: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
