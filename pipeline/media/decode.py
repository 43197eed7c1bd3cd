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
import tempfile
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


def _output(size: tuple[int, int] | None, target: str, stream: str = "0:v:0") -> list[str]:
    """One raw RGB24 output of `stream` (the first video stream), scaled to `size` = (W, H) if given."""
    out = ["-map", stream, "-f", "rawvideo", "-pix_fmt", "rgb24"]
    return out + (["-s", f"{size[0]}x{size[1]}"] if size is not None else []) + [target]


def _decode_command(path: str | os.PathLike, size: tuple[int, int] | None, threads: int) -> list[str]:
    """ffmpeg writing the first video stream of `path` to its stdout as raw RGB24 frames,
    scaled to `size` = (W, H) if given."""
    return _input(str(path), threads) + _output(size, "pipe:")


def _input(source: str, threads: int) -> list[str]:
    """ffmpeg, quiet but for errors, decoding `source` with `threads` threads (0: ffmpeg's choice)."""
    return [ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", str(threads), "-i", source]


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
    path: str | os.PathLike,
    small: tuple[int, int],
    threads: int = 0,
    *,
    feed: list[str] | None = None,
    filters: str | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield every frame of `path` twice from one decode: scaled to `small` = (W, H) and at
    its own size, as ((h, w, 3), (H, W, 3)) uint8 RGB pairs.

    One ffmpeg process decodes the video once and writes two outputs, each with the very
    options `iter_frames` gives a single one, so the small frames are byte for byte those of
    `iter_frames(path, small)` (tested): the frames TransNet V2 needs and the ones the
    backbones need, from one decode. The small frames come on a second pipe, read in step
    with the first; both pipes are widened to hold frames ahead, so ffmpeg never waits on one
    while the other is being read.

    `feed`, when given, is an ffmpeg command line that writes the video to its stdout in a
    container that streams (`normalize_command(..., "pipe:1", container="nut")`): it runs
    beside the decode, which reads its output, so a video is decoded while it is being made
    and never written to a file. `path` then only names the video in errors, and `size` =
    (W, H) is the size of its frames (there is no file to probe). A feed that fails raises
    the T12kError of `normalize` ("cannot normalize video PATH: ..."). Both processes end
    with the generator, whether it finishes, fails or is closed early.

    `filters`, when given, is an ffmpeg filter chain applied to the decoded frames before both
    outputs (`normalize_filters(..., as_encoded=True)`: the pictures `normalize` would encode,
    without encoding them); `size` is then the size of the filtered frames."""
    if feed is None and filters is None:
        native = video_size(path)
    elif size is None:
        raise ValueError("iter_frame_pairs: a feed or filters need the size of their frames")
    else:
        native = size
    read_end, write_end = os.pipe()
    cmd = _pairs_command(str(path) if feed is None else "pipe:0", small, write_end, threads, filters)
    fed = None
    try:
        fed = _start_feed(feed) if feed is not None else None
        proc = subprocess.Popen(
            cmd,
            stdin=None if fed is None else fed[0].stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            pass_fds=(write_end,),
            start_new_session=True,  # as in `iter_frames`
        )
    except BaseException:
        os.close(read_end)
        _end_feed(fed)
        raise
    finally:
        os.close(write_end)
        if fed is not None and fed[0].stdout is not None:
            fed[0].stdout.close()  # the decode's alone: the feed gets a broken pipe if the decode ends
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
        if fed is None:
            _check_end(proc, path)
        else:
            _check_ends(proc, fed, path)
    finally:
        end_process(proc)
        _end_feed(fed)
        side.close()
        if proc.stderr:
            proc.stderr.close()


def _pairs_command(source: str, small: tuple[int, int], side: int, threads: int, filters: str | None) -> list[str]:
    """ffmpeg decoding `source` once to two raw RGB24 outputs: at its own size on stdout, at
    `small` on the file descriptor `side`; with `filters`, filtered once and then split, so
    the small frames are scaled from the filtered ones."""
    cmd = _input(source, threads)
    if filters is None:
        return cmd + _output(None, "pipe:1") + _output(small, f"pipe:{side}")
    cmd += ["-filter_complex", f"[0:v:0]{filters},split=2[big][small]"]
    return cmd + _output(None, "pipe:1", "[big]") + _output(small, f"pipe:{side}", "[small]")


def _start_feed(cmd: list[str]) -> tuple[subprocess.Popen, IO[bytes]]:
    """The feed of `iter_frame_pairs` started, with its stderr going to a temporary file (an
    ffmpeg that logs many errors then never waits on a pipe nobody reads until the end)."""
    err = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True
        )
    except BaseException:
        err.close()
        raise
    return proc, err


def _end_feed(fed: tuple[subprocess.Popen, IO[bytes]] | None) -> None:
    """Kill the feed if it still runs, reap it and close its stderr file."""
    if fed is not None:
        end_process(fed[0])
        fed[1].close()


def _check_ends(proc: subprocess.Popen, fed: tuple[subprocess.Popen, IO[bytes]], path: str | os.PathLike) -> None:
    """Once the frames of a fed decode have ended: T12kError unless both processes exited
    cleanly. The feed's error comes first (a decode whose input was cut off fails for the
    feed's reason), unless the feed only failed because the decode had stopped reading it."""
    feed, err_file = fed
    decoded: T12kError | None = None
    try:
        _check_end(proc, path)
    except T12kError as exc:
        decoded = exc
    code = feed.wait()
    err_file.seek(0)
    line = error_line(err_file.read().decode(errors="replace"), code)
    if code != 0 and not (decoded is not None and "broken pipe" in line.lower()):
        raise T12kError(f"cannot normalize video {path}: {line}; check the file or re-download it")
    if decoded is not None:
        raise decoded


def read_frames(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """All frames of `path` at `size` = (W, H) as one (N, H, W, 3) uint8 array."""
    frames = list(iter_frames(path, size))
    if not frames:
        raise T12kError(f"video {path} has no frames; re-fetch it or remove it")
    return np.stack(frames)
