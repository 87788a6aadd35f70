"""The ChArUco board: its description (what the rig file and calibration.h5 store), the OpenCV board
and detector built from it (OpenCV 5's object API), and a printable image at true scale."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MM_PER_INCH = 25.4


class BoardSpec(BaseModel):
    """A ChArUco board as printed. Object points are in millimetres, so a calibration is in millimetres.
    The default is the simulated lab's board."""

    model_config = ConfigDict(extra="forbid")

    squares_x: int = Field(7, ge=3, le=30, description="squares along the board's long edge")
    squares_y: int = Field(5, ge=3, le=30)
    square_mm: float = Field(100.0, gt=0, le=1000)
    marker_mm: float = Field(75.0, gt=0, le=1000)
    dictionary: str = Field("DICT_4X4_50", description="the ArUco dictionary of its markers")
    legacy_pattern: bool = Field(False, description="boards printed by OpenCV before 4.6 with an even "
                                 "number of rows start with a marker, not a black square")

    @field_validator("dictionary")
    @classmethod
    def _known_dictionary(cls, v: str) -> str:
        if not v.startswith("DICT_") or not isinstance(getattr(cv2.aruco, v, None), int):
            raise ValueError(f"unknown ArUco dictionary {v!r} (e.g. DICT_4X4_50, DICT_5X5_100)")
        return v

    @model_validator(mode="after")
    def _fits(self) -> BoardSpec:
        if self.marker_mm >= self.square_mm:
            raise ValueError(f"marker_mm ({self.marker_mm:g}) must be smaller than square_mm ({self.square_mm:g})")
        size = dictionary_size(self.dictionary)
        if self.marker_count > size:
            raise ValueError(f"{self.dictionary} has {size} markers; a {self.squares_x}x{self.squares_y} board "
                             f"needs {self.marker_count}")
        return self

    @property
    def marker_count(self) -> int:
        return (self.squares_x * self.squares_y) // 2

    @property
    def corner_count(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size_mm(self) -> tuple[float, float]:
        return self.squares_x * self.square_mm, self.squares_y * self.square_mm

    def describe(self) -> str:
        legacy = ", legacy pattern" if self.legacy_pattern else ""
        return (f"{self.squares_x}x{self.squares_y} squares of {self.square_mm:g} mm, markers {self.marker_mm:g} mm, "
                f"{self.dictionary}{legacy}")

    def cv_board(self) -> cv2.aruco.CharucoBoard:
        board = cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_mm, self.marker_mm,
                                       cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)))
        board.setLegacyPattern(self.legacy_pattern)
        return board

    def object_points(self) -> np.ndarray:
        """(corner_count, 3) inner-corner positions in mm, indexed by ChArUco corner id (z = 0)."""
        return np.asarray(self.cv_board().getChessboardCorners(), dtype=np.float64).reshape(-1, 3)

    def centre_mm(self) -> np.ndarray:
        w, h = self.size_mm
        return np.array([w / 2, h / 2, 0.0])


def dictionary_size(name: str) -> int:
    return int(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)).bytesList.shape[0])


def board_image(spec: BoardSpec, dpi: float) -> np.ndarray:
    """The board at `dpi` with a white margin of half a square (grayscale uint8)."""
    px_per_mm = dpi / MM_PER_INCH
    w_mm, h_mm = spec.size_mm
    margin = int(round(spec.square_mm / 2 * px_per_mm))
    size = (int(round(w_mm * px_per_mm)) + 2 * margin, int(round(h_mm * px_per_mm)) + 2 * margin)
    return spec.cv_board().generateImage(size, marginSize=margin, borderBits=1)


def save_printable(spec: BoardSpec, out: Path, dpi: float = 300.0) -> Path:
    """Write the board for printing at true scale: a PNG that carries its DPI (pHYs), or a PDF page
    the size of the board plus its margin. Print at 100 % ("actual size") and measure a square."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".pdf"):
        raise ValueError(f"{out}: the board is written as .png or .pdf, not {out.suffix or 'no extension'}")
    if not 50 <= dpi <= 1200:
        raise ValueError(f"dpi {dpi:g}: choose 50-1200 (a printer's 300 or 600)")
    image = board_image(spec, dpi)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"{out}: PNG encoding failed")
        out.write_bytes(with_png_dpi(data.tobytes(), dpi))
    else:
        _save_pdf(image, dpi, out, spec)
    return out


def with_png_dpi(png: bytes, dpi: float) -> bytes:
    """The PNG with a pHYs chunk (pixels per metre) after IHDR, so that viewers print it at true scale."""
    ppm = int(round(dpi / MM_PER_INCH * 1000))
    body = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, length, type, IHDR data, crc
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def _save_pdf(image: np.ndarray, dpi: float, out: Path, spec: BoardSpec) -> None:
    # matplotlib's PDF backend sizes the page in inches: a figure exactly the image's size at its dpi
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    h, w = image.shape
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    fig.text(0.5, 0.005, f"flexcap ChArUco: {spec.describe()} - print at 100 %", ha="center", va="bottom",
             fontsize=7, color="0.4")
    fig.savefig(out, format="pdf", dpi=dpi)
