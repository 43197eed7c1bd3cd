"""One trailer to its genres: normalize (or fetch), shots, the checkpoint's backbones, head.

Every step is the code a collection run uses (fetch/normalize, TransNet V2, clip planning,
backbone runners, the DIViTA head), with the settings read from the checkpoint: the stores
it was trained on record how their features were made, and a feature made any other way
would not be the feature the head learned from.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t12k import GENRES
from t12k.backbones import REGISTRY, BackboneSpec, get_spec
from t12k.divita.train import load_model, predict_features
from t12k.errors import T12kError
from t12k.pipeline.extract import BackboneRunner, clip_features, resolve_device
from t12k.pipeline.media import read_frames
from t12k.shots import INPUT_SIZE, ShotDetector, plan_clips


@dataclass
class StoreRecipe:
    """How a store's features were made, as predict must remake them."""

    spec: BackboneSpec
    weights: str  # the weights string recorded in the store ("none (...)", "torchvision:...", "file:...")
    strategy: str
    fpc: int
    fps: int
    threshold: float


def recipe_from_store(path: str, attrs: dict) -> StoreRecipe:
    """Read a store's recipe from its attrs; published stores (no t12k attrs) are
    recognised by name and get the paper's settings (Shot-24, pretrained weights)."""
    t = attrs.get("t12k") or {}
    if t.get("backbone"):
        shots = t.get("shots") or {}
        return StoreRecipe(
            get_spec(t["backbone"]),
            str(t.get("weights", "default")),
            t.get("strategy", "shot"),
            int(t.get("fpc", 24)),
            int(t.get("fps", 24)),
            float(shots.get("threshold", 0.5)),
        )
    name = Path(path).name
    for spec in REGISTRY.values():
        m = re.fullmatch(rf"trailers_{spec.store_prefix}_{spec.store_stem}(?:_fps(\d+))?_fpc(\d+)\.zarr", name)
        if m and (m.group(1) is not None) == (spec.kind == "3d"):
            return StoreRecipe(spec, "torchvision:published", "shot", int(m.group(2)), int(m.group(1) or 24), 0.5)
    raise T12kError(
        f"cannot tell how the store {name} the checkpoint was trained on was made "
        "(no t12k attrs and not a published store name); retrain on a t12k store"
    )


def _weights_arg(recorded: str, override: str | None) -> str:
    if override:
        return override
    if recorded.startswith("none"):
        return "none"
    if recorded.startswith("torchvision:"):
        return "default"
    raise T12kError(f"the checkpoint's features were made with weights {recorded}; pass that file with --weights PATH")


def is_normalized(path: Path, fps: int = 24, max_short_side: int = 360) -> bool:
    """True for a video `t12k fetch` could have written: H.264 at a constant `fps` with a
    short side within the limit. Such a file is used as is, so a trailer of a collection
    gives exactly the features stored for it; anything else is normalized first."""
    from t12k.pipeline.media import probe

    info = probe(path)
    return (
        info.codec == "h264"
        and abs(info.fps - fps) < 1e-6
        and min(info.width, info.height) <= max_short_side
        and info.num_frames == round(info.duration * fps)
    )


def _is_url(source: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://", source) is not None


def predict_trailer(
    source: str,
    checkpoint: str | os.PathLike,
    *,
    weights: str | None = None,
    device: str = "auto",
    work_dir: str | os.PathLike | None = None,
    log=print,
) -> dict:
    """Genre probabilities of one trailer (a video file or a URL)."""
    from t12k.pipeline.fetch import FetchItem, fetch_collection
    from t12k.pipeline.media import normalize

    model, info = load_model(checkpoint, "cpu")
    recipes = {
        role: recipe_from_store(s["path"], s.get("attrs") or {}) for role, s in (info.get("stores") or {}).items()
    }
    if not recipes:
        raise T12kError(f"checkpoint {checkpoint} records no feature stores; retrain it with this t12k")
    device = resolve_device(device)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="t12k-predict-") as tmp:
        tmp = Path(tmp)
        if _is_url(source):
            summary = fetch_collection([FetchItem("trailer", source)], tmp, workers=1, progress=False)
            if summary.failed:
                raise T12kError(f"cannot fetch {source}: {next(iter(summary.failed.values()))}")
            video = tmp / "trailer.mp4"
        else:
            src = Path(source)
            if not src.is_file():
                raise T12kError(f"video {src} not found; give an existing video file or a URL")
            video = src
            if not is_normalized(src):
                video = tmp / "trailer.mp4"
                normalize(src, video)
        frames = read_frames(video, INPUT_SIZE)
        thresholds = {r.threshold for r in recipes.values()}
        detector = ShotDetector(device=device, threshold=thresholds.pop())
        shots, _ = detector.detect(frames)
        feats: dict[str, np.ndarray] = {}
        for role, r in recipes.items():
            runner = BackboneRunner(r.spec, _weights_arg(r.weights, weights), device, 32)
            if not r.weights.endswith(":published") and runner.weights_used != r.weights:
                raise T12kError(
                    f"the checkpoint's {role} features were made with weights {r.weights}, "
                    f"this run would use {runner.weights_used}; pass the matching --weights"
                )
            plan = plan_clips(shots, len(frames), r.strategy, r.fpc, r.fps)
            feats[role] = clip_features(video, plan, [runner])[0][r.spec.key]
            log(f"{role}: {r.spec.key} ({runner.weights_used}), {r.strategy}-{r.fpc} at {r.fps} fps, {len(plan)} clips")
    probs = predict_features(model, feats.get("image"), feats.get("video"), int(info.get("snippet", 30)))
    return {
        "source": source,
        "shots": int(len(shots)),
        "frames": int(len(frames)),
        "clips": int(len(next(iter(feats.values())))),
        "probabilities": {g: float(p) for g, p in zip(GENRES, probs)},
    }
