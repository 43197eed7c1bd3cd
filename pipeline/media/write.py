"""Writing a video from frames with PyAV (test corpora, the demo)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from t12k.pipeline.media.ffmpeg import CRF, PRESET


def _rate(fps: float | Fraction) -> Fraction:
    """An exact frame rate: 29.97 and 23.976 become the NTSC rates 30000/1001 and 24000/1001."""
    if isinstance(fps, Fraction):
        return fps
    if float(fps).is_integer():
        return Fraction(int(fps))
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 5e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float | Fraction = 24) -> Path:
    """Encode RGB uint8 frames (H, W, 3; even H and W) to an H.264 mp4 with PyAV."""
    p = Path(path)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    first = np.asarray(first)
    if first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {first.shape} {first.dtype}")
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {w}x{h}")
    p.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(p), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(CRF), "preset": PRESET}
        frame: np.ndarray | None = first
        while frame is not None:
            frame = np.ascontiguousarray(frame)
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise ValueError(f"all frames must be {first.shape} uint8, got {frame.shape} {frame.dtype}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
            frame = next(it, None)
        for packet in stream.encode():
            out.mux(packet)
    return p
