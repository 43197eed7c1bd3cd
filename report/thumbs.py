"""Small JPEG thumbnails of chosen frames of a video, from one ffmpeg pass.

ffmpeg's `select` filter keeps the wanted frames (by index, one balanced sum of `eq(n,k)`) and only those
are scaled and encoded, so a trailer costs one decode and memory stays flat; the frames are written as
`f{index}.jpg` in the trailer's folder. A folder already holding the frames asked for is reused.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from t12k.errors import T12kError
from t12k.pipeline.media.ffmpeg import TMP_MARK, error_line, ffmpeg_exe

WIDTH = 160  # pixels; the height keeps the video's aspect
QUALITY = 5  # ffmpeg's -q:v for MJPEG (2 best .. 31 worst)
_LIST = ".frames"  # the frames a folder holds, as asked


def thumb_name(frame: int) -> str:
    return f"f{int(frame)}.jpg"


def _any_of(terms: list[str]) -> str:
    """The terms summed as a balanced tree: ffmpeg's expression parser refuses a flat sum of more
    than 100 terms (its nesting limit), and a trailer has hundreds of clips."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_any_of(terms[:half])}+{_any_of(terms[half:])})"


def make_thumbs(video: Path, frames: Sequence[int], folder: Path, width: int = WIDTH) -> list[int]:
    """Write a thumbnail of each of `frames` of `video` into `folder`; the frames that have one.
    T12kError (with ffmpeg's line) when the video cannot be decoded."""
    wanted = sorted({int(f) for f in frames if f >= 0})
    listing = folder / _LIST
    key = ",".join(map(str, wanted)) + f";{width};{os.stat(video).st_mtime_ns}"
    if listing.is_file() and listing.read_text() == key:
        return [f for f in wanted if (folder / thumb_name(f)).is_file()]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()
    if not wanted:
        return []
    tmp = folder / f"{TMP_MARK}-%06d.jpg"
    pick = _any_of([f"eq(n\\,{f})" for f in wanted])
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", "1", "-i", str(video), "-map", "0:v:0"]
    cmd += ["-vf", f"select='{pick}',scale={width}:-2", "-fps_mode", "passthrough", "-q:v", str(QUALITY)]
    cmd += ["-f", "image2", "-start_number", "0", str(tmp)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True)
    written = sorted(folder.glob(f"{TMP_MARK}-*.jpg"))
    if proc.returncode != 0:
        for p in written:
            p.unlink()
        err = proc.stderr.decode(errors="replace")
        raise T12kError(f"cannot decode video {video}: {error_line(err, proc.returncode)}; re-fetch it")
    done = []
    for frame, p in zip(wanted, written):  # select keeps the order; only the last frames can be missing
        p.rename(folder / thumb_name(frame))
        done.append(frame)
    listing.write_text(key)
    return done


DARK = 16  # mean luma (0-255) under which a frame, or a band of it, is black


def looks(path: Path) -> str:
    """What a thumbnail shows at a glance: 'black', 'letterboxed' (black bands above and below),
    'pillarboxed' (left and right), 'windowboxed' (both) or '' (a full picture)."""
    from PIL import Image

    with Image.open(path) as im:
        y = np.asarray(im.convert("L"), dtype=np.float32)
    if y.mean() < DARK:
        return "black"
    h, w = y.shape
    bh, bw = max(1, h // 10), max(1, w // 10)
    rows = y[:bh].mean() < DARK and y[-bh:].mean() < DARK
    cols = y[:, :bw].mean() < DARK and y[:, -bw:].mean() < DARK
    return {(True, True): "windowboxed", (True, False): "letterboxed", (False, True): "pillarboxed"}.get(
        (bool(rows), bool(cols)), ""
    )
