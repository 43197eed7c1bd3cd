"""Normalizing: one ffmpeg call turns whatever yt-dlp (or the user) brought into an H.264 mp4
at a constant 24 fps.

H.264, VP9 or AV1 at 23.976, 25, 29.97 or a variable frame rate all come out at exactly
24 fps (round(duration x 24) frames) with the short side at most 360 px (configurable), so
frame indices downstream (shots, Shot-24 clips) mean the same thing for every trailer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from t12k.errors import T12kError
from t12k.pipeline.media.ffmpeg import CRF, PRESET, error_line, ffmpeg_exe, run_ffmpeg, tmp_name
from t12k.pipeline.media.info import VideoInfo, _probe, _Unreadable, probe

_AUDIO_BITRATE = "128k"
PIX_FMT = "yuv420p"  # what the normalized H.264 holds (what every player decodes)


def _even_floor(x: float) -> int:
    return max(2, int(x) // 2 * 2)


def target_size(width: int, height: int, max_short_side: int, sar: float = 1.0) -> tuple[int, int]:
    """(W, H) of the normalized video: square pixels, short side at most `max_short_side`
    (never upscaled), both even (what yuv420p H.264 needs)."""
    if max_short_side < 2:
        raise T12kError(f"max_short_side must be at least 2 pixels, not {max_short_side}")
    disp_w = width * (sar if sar and sar > 0 else 1.0)
    scale = min(1.0, max_short_side / min(disp_w, height))
    return _even_floor(disp_w * scale + 1e-6), _even_floor(height * scale + 1e-6)


def normalize(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fps: int = 24,
    max_short_side: int = 360,
    keep_audio: bool = False,
    threads: int | None = None,
    *,
    src_info: VideoInfo | None = None,
    ffmpeg: str | None = None,
    metadata: dict[str, str] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> VideoInfo:
    """Re-encode `src` to an H.264 mp4 at `dst` with constant `fps` and a bounded short side.

    One ffmpeg call (`normalize_command`): `fps` filter (the result has round(duration * fps)
    frames, for constant and variable frame rate sources alike), scale to square pixels with
    the short side at most `max_short_side` (never up, even sizes), libx264 yuv420p,
    `+faststart`, audio dropped unless `keep_audio` (then AAC). The file is written under a
    temporary name in dst's folder, checked with `probe`, and renamed, so `dst` appears whole
    or not at all. Returns the probe of the result.

    `src_info` (the probe of `src`, when the caller has it) saves probing it again; `ffmpeg`
    is the binary (default `ffmpeg_exe()`); `metadata` are container tags to write (read them
    back with `read_tags`); `cancel`, polled while ffmpeg runs, stops it and raises
    `Cancelled` when it returns True.
    """
    src, dst = Path(src), Path(dst)
    if fps <= 0:
        raise T12kError(f"fps must be positive, not {fps}")
    info = src_info if src_info is not None else probe(src)
    size = target_size(info.width, info.height, max_short_side, info.sar)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(dst)
    cmd = normalize_command(
        ffmpeg or ffmpeg_exe(), src, tmp, size, fps, keep_audio=keep_audio, threads=threads, metadata=metadata
    )
    try:
        code, err = run_ffmpeg(cmd, cancel)
        if code != 0:
            raise T12kError(f"cannot normalize video {src}: {error_line(err, code)}; check the file or re-download it")
        out = _check_output(src, tmp, info, fps)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def normalize_command(
    ffmpeg: str,
    src: Path,
    dst: Path | str,
    size: tuple[int, int],
    fps: int = 24,
    *,
    keep_audio: bool = False,
    threads: int | None = None,
    metadata: dict[str, str] | None = None,
    container: str = "mp4",
) -> list[str]:
    """The ffmpeg command line of `normalize`: `src` to an H.264 mp4 `dst` of `size` = (W, H)
    at a constant `fps`.

    `container` other than "mp4" (e.g. "nut", which streams, timestamps and all) writes the
    very same H.264 stream in that container, so `dst` can be a pipe ("pipe:1"): decoding it
    gives the frames that decoding the mp4 gives, byte for byte (tested)."""
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    threading = ["-threads", str(int(threads))] if threads else []
    cmd += [*threading, "-i", str(src), "-map", "0:v:0"]
    cmd += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", _AUDIO_BITRATE] if keep_audio else ["-an"]
    cmd += ["-sn", "-dn", "-map_metadata", "-1"]
    for key, value in (metadata or {}).items():
        cmd += ["-metadata", f"{key}={value}"]
    cmd += ["-vf", normalize_filters(size, fps)]
    cmd += ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", PIX_FMT]
    tail = ["-movflags", "+faststart"] if container == "mp4" else []
    cmd += [*tail, *threading, "-f", container, str(dst)]
    return cmd


def normalize_filters(size: tuple[int, int], fps: int = 24, *, as_encoded: bool = False) -> str:
    """The ffmpeg filters of `normalize`: a constant `fps`, then square pixels of `size` =
    (W, H). ffmpeg turns a rotated source upright (its display matrix) before them, and drops
    the matrix from the output: `size` is the size as shown (`VideoInfo`'s, `target_size`).
    `as_encoded` appends the conversion to PIX_FMT that the encoder asks for: the pictures the
    normalized file encodes, without encoding them."""
    return f"fps={fps},scale={size[0]}:{size[1]},setsar=1" + (f",format={PIX_FMT}" if as_encoded else "")


def _check_output(src: Path, tmp: Path, info: VideoInfo, fps: int) -> VideoInfo:
    """The probe of ffmpeg's output `tmp`: a whole H.264 video, about as long as `src`."""
    try:
        out = _probe(tmp)
    except _Unreadable as exc:
        raise T12kError(
            f"normalizing {src} gave an unreadable video ({exc}); check the file or re-download it"
        ) from exc
    if out.codec != "h264":
        raise T12kError(f"normalizing {src} gave {out.codec}, not H.264; use an ffmpeg with libx264")
    check_frame_count(src, out.num_frames, info.duration, fps)
    return out


def check_frame_count(src: Path, frames: int, duration: float, fps: int) -> None:
    """T12kError when normalizing `src` (`duration` s) gave fewer than about half the frames
    it calls for at `fps`: an encode that ended early yet "succeeded"."""
    expected = round(duration * fps)
    if frames < 0.5 * expected - 2:
        raise T12kError(
            f"normalizing {src} gave {frames} frames where its {duration:.2f} s "
            f"call for {expected}; check the file or re-download it"
        )
