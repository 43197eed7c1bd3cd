"""Video files: find ffmpeg, probe a video, normalize it to H.264 at a constant 24 fps, write one.

Every trailer that enters t12k passes through `normalize`: one ffmpeg call turns whatever
yt-dlp (or the user) brought, H.264, VP9 or AV1 at 23.976, 25, 29.97 or a variable frame
rate, into an H.264 mp4 at exactly 24 fps (round(duration x 24) frames) with the short side
at most 360 px (configurable). The ffmpeg is the system's when one is on PATH, else the
binary that imageio-ffmpeg ships. Frame indices downstream (shots,
Shot-24 clips) then mean the same thing for every trailer. `probe` reads a file's facts with
PyAV (FFmpeg's libraries) and turns a missing, empty, truncated or non-video file into one
clear T12kError.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from t12k.errors import T12kError

# x264 settings of the normalized videos: 'veryfast' is ~3x quicker than the default 'medium'
# at a few percent more bytes; crf 18 keeps the re-encode visually transparent at 360p.
_PRESET = "veryfast"
_CRF = 18
_AUDIO_BITRATE = "128k"
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


@dataclass
class VideoInfo:
    """Facts about the first video stream of a file.

    `num_frames` is the number of video packets actually present (for the formats t12k
    handles, one packet per frame), so a truncated download cannot pass for a whole one.
    `sar` is the sample (pixel) aspect ratio, 1.0 for square pixels.
    """

    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    codec: str
    sar: float = 1.0


class _Unreadable(Exception):
    """Why a file is not a readable video (turned into a T12kError by the callers)."""


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _probe(path: Path, verify: bool = True) -> VideoInfo:
    if not path.exists():
        raise _Unreadable("no such file")
    if path.is_dir():
        raise _Unreadable("it is a folder, not a file")
    if path.stat().st_size == 0:
        raise _Unreadable("the file is empty (0 bytes)")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise _Unreadable("it has no video stream")
            stream = container.streams.video[0]
            cc = stream.codec_context
            width, height = int(cc.width or 0), int(cc.height or 0)
            if width <= 0 or height <= 0:
                raise _Unreadable("its video stream has no frame size")
            codec = getattr(cc.codec, "canonical_name", None) or cc.name
            sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
            sar = float(sar) if sar else 1.0
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            declared = int(stream.frames or 0)
            tb = stream.time_base
            if stream.duration and tb:
                duration = float(stream.duration * tb)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            if not verify and declared > 0:
                num_frames = declared
                first, last = None, None
            else:
                # Count the packets that are really there and decode the first frame, so a
                # cut-off file, or one whose codec FFmpeg cannot decode, fails here.
                num_frames, decoded = 0, False
                first, last = None, None
                stream.thread_type = "AUTO"
                for packet in container.demux(stream):
                    if packet.size == 0:  # the flush packet at the end
                        continue
                    num_frames += 1
                    if packet.pts is not None:
                        end = packet.pts + (packet.duration or 0)
                        first = packet.pts if first is None else min(first, packet.pts)
                        last = end if last is None else max(last, end)
                    if not decoded:
                        decoded = bool(cc.decode(packet))
                if num_frames and not decoded:
                    decoded = bool(cc.decode(None))
                if num_frames == 0:
                    raise _Unreadable("it has no video frames")
                if not decoded:
                    raise _Unreadable(f"no frame of its {codec} video could be decoded")
                if declared and num_frames < declared:
                    raise _Unreadable(f"it is truncated ({num_frames} of {declared} frames present)")
                if first is not None and last is not None and tb and duration > 0:
                    # Containers that do not count frames (webm/mkv) still state a duration:
                    # frames covering much less of it mean the end of the file is missing.
                    covered = float((last - first) * tb) + (1 / float(rate) if rate else 0.0)
                    if covered < duration - max(1.0, 0.05 * duration):
                        raise _Unreadable(f"it is truncated (its frames cover {covered:.1f} s of {duration:.1f} s)")
    except _Unreadable:
        raise
    except av.FFmpegError as exc:
        raise _Unreadable(_first_line(exc.strerror or exc) or type(exc).__name__) from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _Unreadable(_first_line(getattr(exc, "strerror", None) or exc) or type(exc).__name__) from exc
    fps = float(rate) if rate else 0.0
    if duration <= 0 and first is not None and last is not None and tb:
        duration = float((last - first) * tb)
        if fps > 0 and duration < num_frames / fps:
            duration = num_frames / fps  # the last packet often carries no duration
    if fps <= 0 and duration > 0:
        fps = num_frames / duration
    if duration <= 0 and fps > 0:
        duration = num_frames / fps
    return VideoInfo(width, height, fps, num_frames, duration, codec, sar)


def probe(path: str | os.PathLike, *, verify: bool = True) -> VideoInfo:
    """Width, height, fps, frame count, duration and codec of the first video stream.

    A missing, empty, non-video, truncated or undecodable file raises T12kError. With
    `verify=False` a container that states its frame count (mp4) is trusted, so only the
    header is read (quick check of files t12k wrote itself).
    """
    p = Path(path)
    try:
        return _probe(p, verify)
    except _Unreadable as exc:
        raise T12kError(f"cannot read video {p}: {exc}; re-download it or remove it") from exc


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


def _tmp_name(dst: Path) -> Path:
    return dst.with_name(f".{dst.stem}{TMP_MARK}-{uuid.uuid4().hex[:8]}{dst.suffix or '.mp4'}")


class Cancelled(Exception):
    """`normalize` stopped because its `cancel` callback said so (the run is being interrupted);
    nothing was written. Not a T12kError: the trailer did not fail, the run stopped."""


_POLL = 0.1  # seconds between checks of `cancel` while ffmpeg runs


def _run_ffmpeg(cmd: list[str], cancel: Callable[[], bool] | None) -> tuple[int, str]:
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
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode(errors="replace")


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

    One ffmpeg call: `fps` filter (the result has round(duration * fps) frames, for constant
    and variable frame rate sources alike), scale to square pixels with the short side at
    most `max_short_side` (never up, even sizes), libx264 yuv420p, `+faststart`, audio
    dropped unless `keep_audio` (then AAC). The file is written under a temporary name in
    dst's folder, checked with `probe`, and renamed, so `dst` appears whole or not at all.
    Returns the probe of the result.

    `src_info` (the probe of `src`, when the caller has it) saves probing it again; `ffmpeg`
    is the binary (default `ffmpeg_exe()`); `metadata` are container tags to write (read them
    back with `read_tags`); `cancel`, polled while ffmpeg runs, stops it and raises
    `Cancelled` when it returns True.
    """
    src, dst = Path(src), Path(dst)
    if fps <= 0:
        raise T12kError(f"fps must be positive, not {fps}")
    info = src_info if src_info is not None else probe(src)
    width, height = target_size(info.width, info.height, max_short_side, info.sar)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dst)
    cmd = [ffmpeg or ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if threads:
        cmd += ["-threads", str(int(threads))]
    cmd += ["-i", str(src), "-map", "0:v:0"]
    if keep_audio:
        cmd += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", _AUDIO_BITRATE]
    else:
        cmd += ["-an"]
    cmd += ["-sn", "-dn", "-map_metadata", "-1"]
    for key, value in (metadata or {}).items():
        cmd += ["-metadata", f"{key}={value}"]
    cmd += [
        "-vf",
        f"fps={fps},scale={width}:{height},setsar=1",
        "-c:v",
        "libx264",
        "-preset",
        _PRESET,
        "-crf",
        str(_CRF),
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
    ]
    if threads:
        cmd += ["-threads", str(int(threads))]
    cmd += ["-f", "mp4", str(tmp)]
    try:
        code, err = _run_ffmpeg(cmd, cancel)
        if code != 0:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            last = lines[-1].strip() if lines else f"ffmpeg exited with code {code}"
            raise T12kError(f"cannot normalize video {src}: {last}; check the file or re-download it")
        try:
            out = _probe(tmp)
        except _Unreadable as exc:
            raise T12kError(
                f"normalizing {src} gave an unreadable video ({exc}); check the file or re-download it"
            ) from exc
        if out.codec != "h264":
            raise T12kError(f"normalizing {src} gave {out.codec}, not H.264; use an ffmpeg with libx264")
        expected = round(info.duration * fps)
        if out.num_frames < 0.5 * expected - 2:  # an encode that ended early yet "succeeded"
            raise T12kError(
                f"normalizing {src} gave {out.num_frames} frames where its {info.duration:.2f} s "
                f"call for {expected}; check the file or re-download it"
            )
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """The container tags of a video (what `normalize(metadata=...)` wrote); {} if unreadable."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return dict(container.metadata)
    except (av.FFmpegError, OSError, ValueError):
        return {}


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
        stream.options = {"crf": str(_CRF), "preset": _PRESET}
        frame = first
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
