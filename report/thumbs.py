"""The thumbnails of a trailer's clips: one JPEG strip per trailer, from one ffmpeg pass.

ffmpeg's `select` filter keeps the wanted frames (by index, one balanced sum of `eq(n,k)`),
and only those are scaled (into a CELL, the picture's aspect kept and padded) and tiled, COLS
to a row, into one image: a trailer costs one decode, memory stays flat, and a report of
12,000 trailers holds 12,000 pictures rather than millions of small files. A page shows each
cell with `object-position`. The strip is reused when it was made from the same frames of
the same video. Each cell is also told apart as black, letterboxed, pillarboxed or whole.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t12k.errors import T12kError
from t12k.pipeline.media.ffmpeg import TMP_MARK, error_line, ffmpeg_exe

CELL = (96, 54)  # pixels of one thumbnail (16:9; other aspects are padded); html.CSS shows it at this size
COLS = 16  # thumbnails per row of a strip
QUALITY = 5  # ffmpeg's -q:v for MJPEG (2 best .. 31 worst)
UNUSED = (255, 0, 255)  # the colour of the cells no frame filled (frames past the video's end)
DARK = 16  # mean luma (0-255) under which a frame, or a band of it, is black


@dataclass
class Strip:
    """A trailer's strip: its image, and per frame its cell (index) and what it looks like."""

    path: Path
    cells: dict[int, int]
    looks: dict[int, str]

    def offset(self, frame: int) -> tuple[int, int]:
        """The (x, y) pixel offset of `frame`'s cell in the strip."""
        i = self.cells[frame]
        return (i % COLS) * CELL[0], (i // COLS) * CELL[1]


def _any_of(terms: list[str]) -> str:
    """The terms summed as a balanced tree: ffmpeg's expression parser refuses a flat sum of more
    than 100 terms (its nesting limit), and a trailer has hundreds of clips."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_any_of(terms[:half])}+{_any_of(terms[half:])})"


def _command(video: Path, wanted: list[int], out: Path) -> list[str]:
    w, h = CELL
    rows = -(-len(wanted) // COLS)
    colour = "0x{:02X}{:02X}{:02X}".format(*UNUSED)
    pick = _any_of(["eq(n\\," + str(f) + ")" for f in wanted])  # eq(n\,k): the comma escaped for the filtergraph
    chain = [
        f"select='{pick}'",
        f"scale={w}:{h}:force_original_aspect_ratio=decrease",
        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2",
        f"tile={COLS}x{rows}:color={colour}",
    ]
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", "1", "-i", str(video), "-map", "0:v:0"]
    return cmd + [
        "-vf",
        ",".join(chain),
        "-fps_mode",
        "passthrough",
        "-frames:v",
        "1",
        "-q:v",
        str(QUALITY),
        "-y",
        str(out),
    ]


def looks(cell: np.ndarray) -> str:
    """What a thumbnail (H, W, 3) shows at a glance: 'black', 'letterboxed' (black bands above and
    below), 'pillarboxed' (left and right), 'windowboxed' (both) or '' (a full picture)."""
    y = cell.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if y.mean() < DARK:
        return "black"
    h, w = y.shape
    bh, bw = max(1, h // 10), max(1, w // 10)
    rows = y[:bh].mean() < DARK and y[-bh:].mean() < DARK
    cols = y[:, :bw].mean() < DARK and y[:, -bw:].mean() < DARK
    kinds = {(True, True): "windowboxed", (True, False): "letterboxed", (False, True): "pillarboxed"}
    return kinds.get((bool(rows), bool(cols)), "")


def _content(size: tuple[int, int]) -> tuple[slice, slice]:
    """The part of a cell the picture fills (not the padding), one pixel in from its edges."""
    width, height = size
    w, h = CELL
    if width * h >= height * w:
        ph = max(2, int(w * height / width))
        top = (h - ph) // 2
        return slice(top + 1, top + ph - 1), slice(1, w - 1)
    pw = max(2, int(h * width / height))
    left = (w - pw) // 2
    return slice(1, h - 1), slice(left + 1, left + pw - 1)


def _read_cells(out: Path, n: int, size: tuple[int, int]) -> tuple[list[int], list[str]]:
    """The cells a frame filled (not UNUSED) and what each looks like."""
    from PIL import Image

    with Image.open(out) as im:
        img = np.asarray(im.convert("RGB"))
    w, h = CELL
    rows, cols = _content(size)
    filled, seen = [], []
    for i in range(n):
        x, y = (i % COLS) * w, (i // COLS) * h
        cell = img[y : y + h, x : x + w]
        if np.abs(cell.reshape(-1, 3).mean(0) - UNUSED).max() < 40:
            continue
        filled.append(i)
        seen.append(looks(cell[rows, cols]))
    return filled, seen


def make_strip(video: Path, frames: Sequence[int], out: Path) -> Strip:
    """The strip of `frames` of `video` at `out` (a .jpg), made or reused; T12kError (with
    ffmpeg's line) when the video cannot be decoded."""
    from t12k.pipeline.media.info import video_size

    wanted = sorted({int(f) for f in frames if f >= 0})
    key_file = out.with_name(f".{out.name}.json")
    key = f"{','.join(map(str, wanted))};{CELL};{os.stat(video).st_mtime_ns};{os.stat(video).st_size}"
    try:
        saved = json.loads(key_file.read_text())
        if saved["key"] == key and out.is_file():
            return Strip(out, {int(f): i for f, i in saved["cells"]}, {int(f): s for f, s in saved["looks"]})
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if not wanted:
        return Strip(out, {}, {})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}{TMP_MARK}.jpg")
    proc = subprocess.run(
        _command(video, wanted, tmp), stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True
    )
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        err = proc.stderr.decode(errors="replace")
        raise T12kError(f"cannot decode video {video}: {error_line(err, proc.returncode)}; re-fetch it")
    filled, seen = _read_cells(tmp, len(wanted), video_size(video))
    os.replace(tmp, out)
    # select keeps the frames in order; only the last ones (past the video's end) can be missing
    strip = Strip(out, {wanted[i]: i for i in filled}, {wanted[i]: s for i, s in zip(filled, seen)})
    key_file.write_text(
        json.dumps({"key": key, "cells": list(strip.cells.items()), "looks": list(strip.looks.items())})
    )
    return strip
