"""The trigger LED in a camera's frames: where it is, and how much of each frame's exposure it lit.

The LED is the spot whose green rises above its red and blue by the most between frames (a lit green
LED against anything else). A few such spots are tried and the one whose flashes line up with the
fired pulses wins, so a moving green object does not fool it. Levels are turned back into light
through the camera's gamma before the lit fraction is computed: a frame half lit by a flash collects
half the light, not half the level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

CANDIDATES = 8
CORE = 0.85  # pixels changing at least this fraction of the spot's largest change
MAX_CORE_PIXELS = 400


@dataclass
class LedSpot:
    ys: np.ndarray  # pixel rows and columns (in decoded-frame pixels)
    xs: np.ndarray
    box: tuple[int, int, int, int]  # x, y, w, h of the whole spot (decoded-frame pixels)
    contrast: float  # green-over-red/blue change at the spot's centre (levels)


def decode(jpeg: bytes, reduce: int) -> np.ndarray | None:
    flag = cv2.IMREAD_REDUCED_COLOR_2 if reduce == 2 else cv2.IMREAD_REDUCED_COLOR_4 if reduce == 4 else \
        cv2.IMREAD_COLOR
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)


def reduction_for(width: int) -> int:
    """Decode big frames at reduced size: the LED stays several pixels wide, decoding gets 2-4x cheaper."""
    return 4 if width >= 2560 else 2 if width > 1000 else 1


def find_spots(frames: Iterable[np.ndarray]) -> list[LedSpot]:
    """Candidate LED spots from the frames around the pulses, best first."""
    qmax = qmin = None
    shape = None
    for img in frames:
        q = img[:, :, 1].astype(np.int16) - np.maximum(img[:, :, 0], img[:, :, 2]).astype(np.int16)
        qmax = q if qmax is None else np.maximum(qmax, q)
        qmin = q if qmin is None else np.minimum(qmin, q)
        shape = q.shape
    if qmax is None or shape is None:
        return []
    change = (qmax - qmin).astype(np.float32)
    spots = []
    for _ in range(CANDIDATES):
        y, x = np.unravel_index(int(np.argmax(change)), change.shape)
        peak = float(change[y, x])
        if peak < 20:  # less than 20 levels of change: nothing flashed here
            break
        # the whole region around this peak that changed at least half as much: a moving subject is one
        # candidate, however large, and is then set aside entirely
        _n, labels = cv2.connectedComponents((change >= 0.5 * peak).astype(np.uint8))
        blob = labels == labels[y, x]
        bys, bxs = np.nonzero(blob)
        # measure on the spot's core: its rim mixes the LED with the background (blur, JPEG, the edge of the
        # disc), and a mixture of levels is not a mixture of light
        core = blob & (change >= CORE * peak)
        ys, xs = np.nonzero(core)
        if len(ys) > MAX_CORE_PIXELS:
            keep = np.argsort(-change[ys, xs])[:MAX_CORE_PIXELS]
            ys, xs = ys[keep], xs[keep]
        box = (int(bxs.min()), int(bys.min()), int(np.ptp(bxs)) + 1, int(np.ptp(bys)) + 1)
        spots.append(LedSpot(ys, xs, box, peak))
        change[cv2.dilate(blob.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = 0
    return spots


def spot_from_box(box: list[int], reduce: int) -> LedSpot:
    """A region the rig names (x, y, w, h in stored-frame pixels)."""
    x, y, w, h = (int(v) for v in box)
    ys, xs = np.mgrid[y // reduce:(y + h + reduce - 1) // reduce, x // reduce:(x + w + reduce - 1) // reduce]
    return LedSpot(ys.ravel(), xs.ravel(), (x // reduce, y // reduce, -(-w // reduce), -(-h // reduce)), 0.0)


def light_levels(frames: Iterable[np.ndarray], spots: list[LedSpot], gamma: float) -> np.ndarray:
    """(frames, spots): mean light (green level undone through the gamma curve) over each spot."""
    lut = (np.arange(256, dtype=np.float64) / 255.0) ** gamma
    rows = []
    for img in frames:
        green = img[:, :, 1]
        rows.append([float(np.mean(lut[green[s.ys, s.xs]])) for s in spots])
    return np.array(rows, dtype=np.float64).reshape(-1, len(spots))


def scale_box(spot: LedSpot, reduce: int) -> tuple[int, int, int, int]:
    x, y, w, h = spot.box
    return x * reduce, y * reduce, w * reduce, h * reduce

