"""The flexcap trigger box's serial protocol, version 1 (firmware: drivers/trigger/firmware).

A small microcontroller drives a TTL output (the EMG amplifier's trigger input) and an LED (seen by
every camera) together, and reports its own microsecond clock for every edge, so pulse times do not
depend on USB or host scheduling. ASCII lines ending in "\\n", 115200 baud, 8N1.

    host -> box                              box -> host
    I                                        I flexcap-trigger 1 <firmware version>
    T                                        T <micros>
    F <seq> <on> <off> <on> ... <on>         A <seq> <pulses>          (accepted; the train starts)
                                             E <seq> <i> <rise> <fall> (after each pulse's fall)
                                             D <seq>                   (the train is over)
    X                                        X <micros>                (abort: outputs low now)
    anything wrong                           ! <seq or -> <reason>

- <micros>, <rise>, <fall>: the box's micros() (unsigned 32-bit, wraps every 71.6 minutes) read right
  after the output pins changed.
- F: durations in microseconds, alternately on and off, starting and ending with on (1 to
  MAX_PULSES pulses), each MIN_DURATION_US to MAX_DURATION_US. The box times the train itself; the
  first rise follows the command at once. <seq> is the host's train number (0 to 2^31 - 1), echoed
  so replies can be matched.
- While a train runs the box still answers T and I (the host keeps measuring its clock) and refuses
  another F with "! <seq> busy".
- The box also sends its I line once at power-up, unasked: boards that reset when the port opens (Uno,
  Nano) would otherwise lose the host's first I to the bootloader. Hosts ignore an I they did not ask for.

"Byte" boxes (a USB-serial TTL box whose output lines follow the last byte written) have no clock
of their own; for them the host's write time is the pulse time (see drivers.trigger.driver).
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1
BAUDRATE = 115200
MAX_PULSES = 16
MIN_DURATION_US = 100
MAX_DURATION_US = 10_000_000
MICROS_WRAP = 1 << 32


class ProtocolError(ValueError):
    """A line from the box that does not follow the protocol."""


@dataclass(frozen=True)
class Hello:
    firmware: str
    version: int


@dataclass(frozen=True)
class ClockReply:
    micros: int


@dataclass(frozen=True)
class Accepted:
    seq: int
    pulses: int


@dataclass(frozen=True)
class Edge:
    seq: int
    index: int
    rise_us: int
    fall_us: int


@dataclass(frozen=True)
class Done:
    seq: int


@dataclass(frozen=True)
class Aborted:
    micros: int


@dataclass(frozen=True)
class Refused:
    seq: int | None
    reason: str


Reply = Hello | ClockReply | Accepted | Edge | Done | Aborted | Refused


def fire_command(seq: int, durations_us: list[int]) -> bytes:
    check_durations(durations_us)
    if not 0 <= seq < (1 << 31):
        raise ValueError(f"train number {seq} is outside 0..2^31-1")
    return ("F " + " ".join(str(int(x)) for x in [seq, *durations_us]) + "\n").encode()


def check_durations(durations_us: list[int]) -> None:
    n = len(durations_us)
    if n % 2 == 0 or not 1 <= (n + 1) // 2 <= MAX_PULSES:
        raise ValueError(f"a train is on, off, on, ..., on: 1 to {MAX_PULSES} pulses (got {n} durations)")
    bad = [d for d in durations_us if not MIN_DURATION_US <= d <= MAX_DURATION_US]
    if bad:
        raise ValueError(f"durations must be {MIN_DURATION_US}..{MAX_DURATION_US} us (got {bad[0]})")


def parse_reply(line: bytes | str) -> Reply:
    """One line from the box (without or with its newline)."""
    text = line.decode("ascii", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    parts = text.split()
    if not parts:
        raise ProtocolError("an empty line")
    tag, args = parts[0], parts[1:]
    try:
        if tag == "I" and len(args) >= 3 and args[0] == "flexcap-trigger":
            return Hello(firmware=" ".join(args[2:]), version=int(args[1]))
        if tag == "T" and len(args) == 1:
            return ClockReply(_u32(args[0]))
        if tag == "A" and len(args) == 2:
            return Accepted(int(args[0]), int(args[1]))
        if tag == "E" and len(args) == 4:
            return Edge(int(args[0]), int(args[1]), _u32(args[2]), _u32(args[3]))
        if tag == "D" and len(args) == 1:
            return Done(int(args[0]))
        if tag == "X" and len(args) == 1:
            return Aborted(_u32(args[0]))
        if tag == "!" and args:
            seq = None if args[0] == "-" else int(args[0])
            return Refused(seq, " ".join(args[1:]) or "no reason given")
    except ValueError:
        pass
    raise ProtocolError(f"not a trigger-box reply: {text[:80]!r}")


def _u32(text: str) -> int:
    value = int(text)
    if not 0 <= value < MICROS_WRAP:
        raise ValueError(text)
    return value


class MicrosUnwrapper:
    """The box's micros() as an ever-increasing count (it wraps every 71.6 minutes)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.wraps = 0

    def __call__(self, micros: int) -> int:
        if self.last is not None and micros < self.last and self.last - micros > MICROS_WRAP // 2:
            self.wraps += 1
        self.last = micros
        return self.wraps * MICROS_WRAP + micros

    def near(self, micros: int, reference: int) -> int:
        """Unwrap a value known to lie within half a wrap of an unwrapped reference (an echoed edge)."""
        base = reference - (reference % MICROS_WRAP)
        candidates = [base - MICROS_WRAP + micros, base + micros, base + MICROS_WRAP + micros]
        return min(candidates, key=lambda c: abs(c - reference))
