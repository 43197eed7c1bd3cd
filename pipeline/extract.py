"""The extract stage: clips from shots, one decode per trailer, frozen backbones, stores.

Per trailer: plan the clips (Shot-f or Seq-f at the chosen frame rate), stream the video's
frames once, and hand every backbone its input: 2D backbones the clip's histogram-
representative frame, 3D backbones the clip's (sub-sampled) frames with black padding.
Inputs are preprocessed by the weight set's own transforms and run in batches; the
trailer's features are written to each backbone's store whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from t12k import __version__
from t12k.backbones import BackboneSpec, load_backbone, parse_backbones
from t12k.errors import T12kError
from t12k.pipeline.decode import iter_frames
from t12k.pipeline.runner import StageSummary, run_items
from t12k.pipeline.videos import find_videos
from t12k.shots import ClipPlan, plan_clips, representative_frame
from t12k.shots.clips import color_histogram
from t12k.storage import FeatureStore, Manifest, ShotStore


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise T12kError(f"device {device} asked for but no CUDA GPU is visible; use --device cpu")
    return device


@dataclass
class ClipInput:
    index: int
    representative: int  # frame index of the 2D representative frame
    frame: np.ndarray | None  # (H, W, 3) uint8, for 2D backbones
    frames: np.ndarray | None  # (T, H, W, 3) uint8, black-padded, for 3D backbones


def iter_clip_inputs(video: str | os.PathLike, plan: ClipPlan, need_2d: bool = True,
                     need_3d: bool = False) -> Iterator[ClipInput]:
    """Stream `video` once and yield each clip's backbone inputs in clip order.

    Only the current clip's frames are held in memory. Clips must be sorted and
    non-overlapping (as Shot-f and Seq-f plans are)."""
    n = len(plan)
    if n == 0:
        return
    spans = plan.spans
    c = 0
    kept: list[np.ndarray] = []  # real frames of clip c (2D: representative among these)
    hists: list[np.ndarray] = []
    wanted = set(int(i) for i in plan.frames[0] if i >= 0)
    sub: dict[int, np.ndarray] = {}
    last_frame = -1
    for i, frame in enumerate(iter_frames(video)):
        last_frame = i
        while c < n and i > spans[c, 1]:  # should not happen with decoded counts == plan
            c += 1
        if c >= n:
            break
        if i < spans[c, 0]:
            continue
        if need_2d:
            kept.append(frame)
            hists.append(color_histogram(frame))
        if need_3d and i in wanted:
            sub[i] = frame
        if i == spans[c, 1]:
            yield _finish_clip(c, plan, kept, hists, sub, need_2d, need_3d, frame.shape)
            kept, hists, sub = [], [], {}
            c += 1
            if c < n:
                wanted = set(int(j) for j in plan.frames[c] if j >= 0)
    if c < n:
        raise T12kError(f"video {video} has {last_frame + 1} frames but its shots reach frame "
                        f"{int(spans[-1, 1])}; the shots store does not match this video: re-run `t12k shots` on it")


def _finish_clip(c, plan, kept, hists, sub, need_2d, need_3d, shape) -> ClipInput:
    rep, frame, frames = int(plan.spans[c, 0]), None, None
    if need_2d:
        k = representative_frame(np.stack(hists))
        rep, frame = int(plan.spans[c, 0]) + k, kept[k]
    if need_3d:
        black = np.zeros(shape, np.uint8)
        frames = np.stack([sub[int(j)] if j >= 0 else black for j in plan.frames[c]])
    return ClipInput(c, rep, frame, frames)


class BackboneRunner:
    """One frozen backbone with its transforms, fed clip inputs in batches."""

    def __init__(self, spec: BackboneSpec, weights: str, device: str, batch_size: int):
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.model, self.weights_used = load_backbone(spec.key, weights, device)
        self.transform = spec.transforms()

    @torch.inference_mode()
    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Features float32 (len(inputs), num_features) of 2D frames or 3D clips."""
        out = []
        for b in range(0, len(inputs), self.batch_size):
            x = torch.from_numpy(np.stack(inputs[b:b + self.batch_size]))
            # (B, H, W, 3) -> (B, 3, H, W); (B, T, H, W, 3) -> (B, T, 3, H, W)
            x = x.movedim(-1, -3)
            x = self.transform(x).to(self.device, non_blocking=True)
            out.append(self.model(x).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.spec.num_features), np.float32)


def clip_features(video: str | os.PathLike, plan: ClipPlan, runners: list[BackboneRunner]
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features of every clip for every runner (key -> (num_clips, F)) and the clip table
    int32 (num_clips, 3): first frame, last frame, representative frame."""
    need_2d = any(r.spec.kind == "2d" for r in runners)
    need_3d = any(r.spec.kind == "3d" for r in runners)
    feats: dict[str, list[np.ndarray]] = {r.spec.key: [] for r in runners}
    pending: list[ClipInput] = []
    reps = np.full(len(plan), -1, np.int32)
    batch = max(r.batch_size for r in runners)

    def flush():
        for r in runners:
            xs = [p.frame if r.spec.kind == "2d" else p.frames for p in pending]
            feats[r.spec.key].append(r(xs))
        pending.clear()

    for clip in iter_clip_inputs(video, plan, need_2d, need_3d):
        if need_2d:
            reps[clip.index] = clip.representative
        pending.append(clip)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    table = np.concatenate([plan.spans, reps[:, None]], axis=1).astype(np.int32)
    out = {k: (np.concatenate(v) if v else np.zeros((0, r.spec.num_features), np.float32))
           for (k, v), r in zip(feats.items(), runners)}
    return out, table


def store_settings(runner: BackboneRunner, strategy: str, fpc: int, fps: int, shot_settings: dict) -> dict:
    return {
        "backbone": runner.spec.key,
        "model": runner.spec.model_name,
        "weights": runner.weights_used,
        "strategy": strategy,
        "fpc": int(fpc),
        "fps": int(fps) if runner.spec.kind == "3d" else 24,
        "frame_selection": "histogram" if runner.spec.kind == "2d" else "all",
        "shots": {k: shot_settings.get(k) for k in ("detector", "threshold")} if strategy == "shot" else None,
    }


def extract_features(videos: str | os.PathLike, shots_store: str | os.PathLike, out_dir: str | os.PathLike, *,
                     backbones: str = "shufflenet2d", weights: str = "default", strategy: str = "shot",
                     fpc: int = 24, fps: int = 24, ids: list[str] | None = None, batch_size: int = 32,
                     device: str = "auto", zarr_format: int = 2, progress: bool = True,
                     log=print) -> StageSummary:
    """Extract features of every trailer in `videos` into one store per backbone in `out_dir`."""
    specs = parse_backbones(backbones)
    found = find_videos(videos, ids)
    shots = ShotStore.open(shots_store)
    device = resolve_device(device)
    runners = [BackboneRunner(s, weights, device, batch_size) for s in specs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stores = {}
    for r in runners:
        path = out / r.spec.store_name(fpc, fps, strategy)
        stores[r.spec.key] = FeatureStore.create_or_append(
            path, store_settings(r, strategy, fpc, fps, shots.settings),
            attrs={"num_features": r.spec.num_features}, zarr_format=zarr_format,
            info={"t12k_version": __version__, "pretraining": r.spec.pretraining},
        )
        log(f"{r.spec.key}: weights {r.weights_used} -> {path}")
    manifest = Manifest(out / "extract.manifest.csv", ("clips", "frames"))

    def work(mid: str) -> dict:
        if mid not in shots:
            raise T12kError(f"{mid} is not in the shots store {shots.path}; run `t12k shots` on it first")
        num_frames = len(shots.predictions(mid))
        plan = plan_clips(shots.shots(mid), num_frames, strategy, fpc, fps)
        if len(plan) == 0:
            raise T12kError(f"{mid} has no clips (empty video?); re-fetch it")
        todo = [r for r in runners if mid not in stores[r.spec.key]]
        feats, table = clip_features(found[mid], plan, todo)
        for r in todo:
            clips = table if r.spec.kind == "2d" else np.concatenate([table[:, :2], np.full((len(table), 1), -1, np.int32)], 1)
            stores[r.spec.key].write_features(mid, feats[r.spec.key], clips)
        return {"clips": len(plan), "frames": num_frames}

    summary = run_items("extract", found, work, lambda m: all(m in s for s in stores.values()), manifest, progress)
    first = stores[specs[0].key]
    nclips = [len(first.read(m)) for m in summary.done]
    summary.totals = {"clips": int(np.sum(nclips)) if nclips else 0,
                      "stores": ", ".join(f"{s.path.name} ({len(s)} trailers)" for s in stores.values())}
    return summary
