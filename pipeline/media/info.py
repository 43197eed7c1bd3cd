"""Reading a video's facts with PyAV (FFmpeg's libraries): a missing, empty, truncated or
non-video file becomes one clear T12kError."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from t12k.errors import T12kError, first_line


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


class UnreadableVideo(T12kError):
    """`probe` found no readable video in a file; `why` is the bare reason (for manifests)."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


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
        raise _Unreadable(first_line(exc.strerror or exc) or type(exc).__name__) from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _Unreadable(first_line(getattr(exc, "strerror", None) or exc) or type(exc).__name__) from exc
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
        raise UnreadableVideo(f"cannot read video {p}: {exc}; re-download it or remove it", str(exc)) from exc


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """The container tags of a video (what `normalize(metadata=...)` wrote); {} if unreadable."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return dict(container.metadata)
    except (av.FFmpegError, OSError, ValueError):
        return {}
