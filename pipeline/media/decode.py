"""Decoding: every frame of a video as RGB uint8, streamed through an ffmpeg pipe.

The ffmpeg command line (`-f rawvideo -pix_fmt rgb24 -s WxH`) is what TransNet V2's
reference `predict_video` uses, so shot detection sees the very pixels the reference sees;
it is also about 5x faster than scaling frame by frame in Python. Frames stream one at a
time, so memory stays flat whatever the video's length.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from typing import IO, cast

import numpy as np

from t12k.errors import T12kError
from t12k.pipeline.media.ffmpeg import end_process, error_line, ffmpeg_exe
from t12k.pipeline.media.info import video_size


def _widen_pipe(pipe: IO[bytes] | None, frame_bytes: int) -> None:
    """Let the pipe hold a whole frame (Linux; 64 KiB by default, so ffmpeg and the reader
    would switch ten times per 360p frame). Best effort: the limit is /proc/sys/fs/pipe-max-size."""
    if pipe is None:
        return
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(max(frame_bytes, 1 << 16), 1 << 20))
    except (ImportError, AttributeError, OSError):
        pass


def _output(size: tuple[int, int] | None, target: str) -> list[str]:
    """One raw RGB24 output of the first video stream, scaled to `size` = (W, H) if given."""
    out = ["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    return out + (["-s", f"{size[0]}x{size[1]}"] if size is not None else []) + [target]


def _decode_command(path: str | os.PathLike, size: tuple[int, int] | None, threads: int) -> list[str]:
    """ffmpeg writing the first video stream of `path` to its stdout as raw RGB24 frames,
    scaled to `size` = (W, H) if given."""
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", str(threads), "-i", str(path)]
    return cmd + _output(size, "pipe:")


def _read_frame(pipe: io.RawIOBase, width: int, height: int) -> np.ndarray | None:
    """The next (H, W, 3) frame from the pipe, read straight into its own array (one copy out
    of the kernel); None at the end of the stream."""
    frame = np.empty((height, width, 3), np.uint8)
    view, got = frame.data.cast("B"), 0
    while got < len(view):
        n = pipe.readinto(view[got:])
        if not n:
            return None
        got += n
    return frame


def _check_end(proc: subprocess.Popen, path: str | os.PathLike) -> None:
    """Once the frames have ended: T12kError with ffmpeg's own line unless it exited cleanly."""
    assert proc.stdout is not None
    proc.stdout.close()
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise T12kError(f"cannot decode video {path}: {error_line(err, proc.returncode)}; re-fetch it or remove it")


def iter_frames(path: str | os.PathLike, size: tuple[int, int] | None = None, threads: int = 0) -> Iterator[np.ndarray]:
    """Yield every frame of `path` as (H, W, 3) uint8 RGB, scaled to `size` = (W, H) if given.

    A video that cannot be read raises T12kError, also when ffmpeg fails mid-stream.
    """
    native = video_size(path)  # a clear error for missing or unreadable files before ffmpeg starts
    width, height = size if size is not None else native
    proc = subprocess.Popen(
        _decode_command(path, size, threads),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        start_new_session=True,  # a Ctrl-C in the terminal stops t12k, which ends ffmpeg (see `run_ffmpeg`)
    )
    _widen_pipe(proc.stdout, width * height * 3)
    try:
        assert proc.stdout is not None
        while (frame := _read_frame(cast(io.RawIOBase, proc.stdout), width, height)) is not None:
            yield frame
        _check_end(proc, path)
    finally:
        end_process(proc)
        if proc.stderr:
            proc.stderr.close()


def iter_frame_pairs(
    path: str | os.PathLike, small: tuple[int, int], threads: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield every frame of `path` twice from one decode: scaled to `small` = (W, H) and at
    its own size, as ((h, w, 3), (H, W, 3)) uint8 RGB pairs.

    One ffmpeg process decodes the video once and writes two outputs, each with the very
    options `iter_frames` gives a single one, so the small frames are byte for byte those of
    `iter_frames(path, small)` (tested): the frames TransNet V2 needs and the ones the
    backbones need, from one decode. The small frames come on a second pipe, read in step
    with the first; both pipes are widened to hold frames ahead, so ffmpeg never waits on one
    while the other is being read."""
    native = video_size(path)
    read_end, write_end = os.pipe()
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", str(threads), "-i", str(path)]
    cmd += _output(None, "pipe:1") + _output(small, f"pipe:{write_end}")
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            pass_fds=(write_end,),
            start_new_session=True,  # as in `iter_frames`
        )
    finally:
        os.close(write_end)
    side = os.fdopen(read_end, "rb", buffering=0)
    _widen_pipe(proc.stdout, native[0] * native[1] * 3)
    _widen_pipe(side, 1 << 20)
    try:
        assert proc.stdout is not None
        while (big := _read_frame(cast(io.RawIOBase, proc.stdout), *native)) is not None:
            little = _read_frame(side, *small)
            if little is None:
                break
            yield little, big
        _check_end(proc, path)
    finally:
        end_process(proc)
        side.close()
        if proc.stderr:
            proc.stderr.close()


def read_frames(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """All frames of `path` at `size` = (W, H) as one (N, H, W, 3) uint8 array."""
    frames = list(iter_frames(path, size))
    if not frames:
        raise T12kError(f"video {path} has no frames; re-fetch it or remove it")
    return np.stack(frames)
