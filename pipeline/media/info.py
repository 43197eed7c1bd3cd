"""Reading a video's facts with PyAV (FFmpeg's libraries): a missing, empty, truncated or
non-video file becomes one clear T12kError."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer

from t12k.errors import T12kError, first_line


@dataclass
class VideoInfo:
    """Facts about the first video stream of a file.

    `width` and `height` are those of the picture as shown: after the rotation of the
    stream's display matrix (`rotation`, degrees counterclockwise: a phone's portrait video
    is stored landscape with 90 or 270), which players and ffmpeg apply (ffmpeg rotates
    while decoding, so its frames have this size). `num_frames` is the number of video
    packets actually present (for the formats t12k handles, one packet per frame), so a
    truncated download cannot pass for a whole one. `sar` is the sample (pixel) aspect ratio
    of the shown picture, 1.0 for square pixels.
    """

    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    codec: str
    sar: float = 1.0
    rotation: int = 0


class _Unreadable(Exception):
    """Why a file is not a readable video (turned into a T12kError by the callers)."""


class UnreadableVideo(T12kError):
    """`probe` found no readable video in a file; `why` is the bare reason (for manifests)."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


@dataclass
class _Stream:
    """What the header of a file's first video stream states."""

    width: int
    height: int
    codec: str
    sar: float
    rate: Fraction | None  # frames per second, None when not stated
    declared: int  # frames the container counts, 0 when it does not count them (webm, mkv)
    time_base: Fraction | None
    duration: float  # seconds, 0.0 when not stated


@dataclass
class _Packets:
    """The video packets really present: how many, and the span of time they cover."""

    count: int
    first: int | None = None  # earliest presentation time, in time_base units
    last: int | None = None  # latest presentation time plus that packet's duration
    rotation: int = 0  # of the display matrix, read from the first decoded frame

    def seconds(self, time_base: Fraction | None) -> float | None:
        """Seconds from the first packet's start to the last one's end; None when unknown."""
        if self.first is None or self.last is None or not time_base:
            return None
        return float((self.last - self.first) * time_base)


@contextlib.contextmanager
def _as_unreadable() -> Iterator[None]:
    """FFmpeg's and the system's errors while reading a file become _Unreadable (first line)."""
    try:
        yield
    except av.FFmpegError as exc:
        raise _Unreadable(first_line(exc.strerror or exc) or type(exc).__name__) from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _Unreadable(first_line(getattr(exc, "strerror", None) or exc) or type(exc).__name__) from exc


def _check_file(path: Path) -> None:
    """The file is there, is a file, and holds something."""
    if not path.exists():
        raise _Unreadable("no such file")
    if path.is_dir():
        raise _Unreadable("it is a folder, not a file")
    if path.stat().st_size == 0:
        raise _Unreadable("the file is empty (0 bytes)")


def _read_stream(container: InputContainer) -> tuple[av.VideoStream, _Stream]:
    """The first video stream of an open container, and what its header states."""
    if not container.streams.video:
        raise _Unreadable("it has no video stream")
    stream = container.streams.video[0]
    cc = stream.codec_context
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0:
        raise _Unreadable("its video stream has no frame size")
    sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    facts = _Stream(
        width=width,
        height=height,
        codec=getattr(cc.codec, "canonical_name", None) or cc.name,
        sar=float(sar) if sar else 1.0,
        rate=stream.average_rate or stream.guessed_rate or stream.base_rate,
        declared=int(stream.frames or 0),
        time_base=stream.time_base,
        duration=duration,
    )
    return stream, facts


def _rotation(frames: list[av.VideoFrame]) -> int | None:
    """The display matrix's rotation of the first of decoded `frames` (degrees counterclockwise,
    0 to 359); None without frames. FFmpeg copies the stream's matrix onto every frame, and
    PyAV reads it there (it has no reader of the stream's own side data)."""
    return int(round(frames[0].rotation)) % 360 if frames else None


def _count_packets(container: InputContainer, stream: av.VideoStream, codec: str) -> _Packets:
    """Count the packets that are really there and decode the first frame, so that a cut-off
    file, or one whose codec FFmpeg cannot decode, fails here."""
    cc = stream.codec_context
    packets, rotation = _Packets(0), None
    stream.thread_type = "AUTO"
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        packets.count += 1
        if packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            packets.first = packet.pts if packets.first is None else min(packets.first, packet.pts)
            packets.last = end if packets.last is None else max(packets.last, end)
        if rotation is None:
            rotation = _rotation(cc.decode(packet))
    if packets.count and rotation is None:
        rotation = _rotation(cc.decode(None))
    if packets.count == 0:
        raise _Unreadable("it has no video frames")
    if rotation is None:
        raise _Unreadable(f"no frame of its {codec} video could be decoded")
    packets.rotation = rotation
    return packets


def _first_rotation(container: InputContainer, stream: av.VideoStream) -> int:
    """The display rotation, from the first frame (decoded for it alone); 0 if none decodes."""
    cc = stream.codec_context
    for packet in container.demux(stream):
        rotation = _rotation(cc.decode(packet) if packet.size else cc.decode(None))
        if rotation is not None:
            return rotation
    return 0


def _shown(facts: _Stream, rotation: int) -> tuple[int, int, float]:
    """(width, height, sar) of the picture as shown: a quarter turn swaps the sides, and a
    pixel sar wide and 1 tall turns into one 1 wide and sar tall."""
    if rotation % 180 == 90:
        return facts.height, facts.width, 1.0 / facts.sar
    return facts.width, facts.height, facts.sar


def _check_whole(facts: _Stream, packets: _Packets) -> None:
    """The packets present are all that the header promises."""
    if facts.declared and packets.count < facts.declared:
        raise _Unreadable(f"it is truncated ({packets.count} of {facts.declared} frames present)")
    span = packets.seconds(facts.time_base)
    if span is not None and facts.duration > 0:
        # Containers that do not count frames (webm/mkv) still state a duration: frames
        # covering much less of it mean the end of the file is missing.
        covered = span + (1 / float(facts.rate) if facts.rate else 0.0)
        if covered < facts.duration - max(1.0, 0.05 * facts.duration):
            raise _Unreadable(f"it is truncated (its frames cover {covered:.1f} s of {facts.duration:.1f} s)")


def _timing(facts: _Stream, packets: _Packets) -> tuple[float, float]:
    """(fps, duration): as stated, else derived from the packets' span and count."""
    fps = float(facts.rate) if facts.rate else 0.0
    duration = facts.duration
    span = packets.seconds(facts.time_base)
    if duration <= 0 and span is not None:
        duration = span
        if fps > 0 and duration < packets.count / fps:
            duration = packets.count / fps  # the last packet often carries no duration
    if fps <= 0 and duration > 0:
        fps = packets.count / duration
    if duration <= 0 and fps > 0:
        duration = packets.count / fps
    return fps, duration


def _probe(path: Path, verify: bool = True) -> VideoInfo:
    _check_file(path)
    with _as_unreadable(), av.open(str(path), metadata_errors="ignore") as container:
        stream, facts = _read_stream(container)
        if not verify and facts.declared > 0:
            packets = _Packets(facts.declared, rotation=_first_rotation(container, stream))
        else:
            packets = _count_packets(container, stream, facts.codec)
            _check_whole(facts, packets)
    fps, duration = _timing(facts, packets)
    width, height, sar = _shown(facts, packets.rotation)
    return VideoInfo(width, height, fps, packets.count, duration, facts.codec, sar, packets.rotation)


def _header(path: Path) -> tuple[int, int]:
    """(width, height) as shown, from the header and the first frame's display matrix."""
    _check_file(path)
    with _as_unreadable(), av.open(str(path), metadata_errors="ignore") as container:
        stream, facts = _read_stream(container)
        width, height, _ = _shown(facts, _first_rotation(container, stream))
        return width, height


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
        raise _unreadable_video(p, exc) from exc


def video_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the first video stream as shown (after its display rotation, as
    ffmpeg decodes it), read from the header and the first frame.

    A missing, empty or non-video file raises UnreadableVideo (a T12kError), as `probe` does.
    """
    p = Path(path)
    try:
        return _header(p)
    except _Unreadable as exc:
        raise _unreadable_video(p, exc) from exc


def _unreadable_video(path: Path, why: _Unreadable) -> UnreadableVideo:
    return UnreadableVideo(f"cannot read video {path}: {why}; re-download it or remove it", str(why))


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """The container tags of a video (what `normalize(metadata=...)` wrote); {} if unreadable."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return dict(container.metadata)
    except (av.FFmpegError, OSError, ValueError):
        return {}
