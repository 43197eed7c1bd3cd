"""ffmpeg location (placeholder until the media module lands)."""

from __future__ import annotations

import shutil

from t12k.errors import T12kError


def ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:
        raise T12kError("no ffmpeg found; install ffmpeg or `pip install imageio-ffmpeg`") from exc
