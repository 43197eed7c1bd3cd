"""The ffmpeg binary and how t12k runs it: the system's on PATH, else the one imageio-ffmpeg ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from t12k.errors import Cancelled, T12kError

# x264 settings of the normalized videos: 'veryfast' is ~3x quicker than the default 'medium'
# at a few percent more bytes; crf 18 keeps the re-encode visually transparent at 360p.
PRESET = "veryfast"
CRF = 18
# Name marker of every temporary file or folder t12k writes next to its results; a run that
# was killed leaves them behind and the next run in that folder removes them.
TMP_MARK = ".t12k-tmp"


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: the system's if on PATH, else the one imageio-ffmpeg ships."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # not installed, or no binary for this platform
        raise T12kError("no ffmpeg found; install ffmpeg (on PATH) or `pip install imageio-ffmpeg`") from exc
    if not exe or not os.path.isfile(exe):
        raise T12kError("no ffmpeg found; install ffmpeg (on PATH) or `pip install imageio-ffmpeg`")
    return exe


def tmp_name(dst: Path) -> Path:
    """A hidden temporary name beside `dst`, marked with TMP_MARK."""
    return dst.with_name(f".{dst.stem}{TMP_MARK}-{uuid.uuid4().hex[:8]}{dst.suffix or '.mp4'}")


_POLL = 0.1  # seconds between checks of `cancel` while ffmpeg runs


def run_ffmpeg(cmd: list[str], cancel: Callable[[], bool] | None) -> tuple[int, str]:
    """Run ffmpeg; (exit code, stderr). It gets its own session, so a Ctrl-C in the terminal
    reaches t12k (which stops it through `cancel`) rather than ffmpeg, which would otherwise
    end early and leave a short file behind an ordinary-looking exit."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        if cancel is None:
            _, err = proc.communicate()
        else:
            while True:
                try:
                    _, err = proc.communicate(timeout=_POLL)
                    break
                except subprocess.TimeoutExpired:
                    if cancel():
                        raise Cancelled("normalization cancelled") from None
    finally:
        end_process(proc)
    return proc.returncode, err.decode(errors="replace")


def end_process(proc: subprocess.Popen) -> None:
    """Kill `proc` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def error_line(stderr: str, code: int) -> str:
    """The last non-empty line ffmpeg wrote to stderr (its error), else its exit code."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else f"ffmpeg exited with code {code}"
