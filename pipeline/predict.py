"""One trailer to its genres: normalize (or fetch), shots, the checkpoint's backbones, head.

Every step is the code a collection run uses (fetch/normalize, TransNet V2, clip planning,
backbone runners, the DIViTA head), with the settings read from the checkpoint: the stores
it was trained on record how their features were made, and a feature made any other way
would not be the feature the head learned from.

A video that needs normalizing is decoded while it is normalized (`Piped`), so no file is
written and the decode that finds the shots and feeds the backbones starts at once. By default
that one decode reads the source and applies the normalizer's own filters (fps, scale, yuv420p):
the pictures `t12k fetch` would encode, without x264's cost (a third of the command's CPU time)
or its small loss. `reencode=True` (`--reencode`) runs the normalizer's H.264 encode into a pipe
that the decode reads, so the frames are those of the normalized file byte for byte and the
features are those a collection run stores for the same video. The seconds reported under
"normalize" are those before the decode (the probe), the normalizing itself being within
"shots and features, one decode".
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from t12k import GENRES
from t12k.backbones import get_spec
from t12k.device import resolve_device
from t12k.divita.train import load_model, predict_features
from t12k.errors import T12kError
from t12k.pipeline.extract import BackboneRunner, Engine, ExtractConfig, clip_features
from t12k.pipeline.extract.onepass import OnePass, planning_of
from t12k.pipeline.shots_command import ShotsConfig
from t12k.shots import ShotDetector, plan_clips
from t12k.storage.features import nonfinite_problem

if TYPE_CHECKING:
    import torch

    from t12k.pipeline.extract import ClipInput
    from t12k.pipeline.media import VideoInfo
    from t12k.shots import ClipPlan


def _store_configs(stores: dict, weights: str | None) -> dict[str, ExtractConfig]:
    """Per role (image, video), the settings that remake the features of the store the
    checkpoint was trained on, read from the store's attrs (or, for a published store, its name)."""
    return {
        role: ExtractConfig.from_store(s.get("attrs") or {}, Path(s["path"]).name, weights)
        for role, s in stores.items()
    }


def _recorded(stores: dict, role: str) -> tuple[str | None, ShotsConfig]:
    """The weights a store records (None for a published store: nothing to compare) and the
    settings of the shots its clips came from (the defaults, the paper's, when not recorded)."""
    t = (stores[role].get("attrs") or {}).get("t12k") or {}
    if not t.get("backbone"):
        return None, ShotsConfig()
    return str(t.get("weights", "default")), ShotsConfig.from_store(t.get("shots"))


def _shots_config(stores: dict, roles: Iterable[str]) -> ShotsConfig:
    """The one shots setting every store of the checkpoint was made with."""
    found = {_recorded(stores, role)[1] for role in roles}
    if len(found) > 1:
        raise T12kError(
            "the checkpoint's stores were made from shots with different settings "
            f"({', '.join(str(c.threshold) for c in found)}); retrain it on stores made from one shots store"
        )
    return found.pop()


def _is_url(source: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://", source) is not None


def _normalized(info: VideoInfo, fps: int = 24, max_short_side: int = 360) -> bool:
    """`is_normalized` of a file probed already."""
    return (
        info.codec == "h264"
        and abs(info.fps - fps) < 1e-6
        and min(info.width, info.height) <= max_short_side
        and info.num_frames == round(info.duration * fps)
    )


def is_normalized(path: Path, fps: int = 24, max_short_side: int = 360) -> bool:
    """True for a video `t12k fetch` could have written: H.264 at a constant `fps` with a
    short side within the limit. Such a file is used as is, so a trailer of a collection
    gives exactly the features stored for it; anything else is normalized first."""
    from t12k.pipeline.media import probe

    return _normalized(probe(path), fps, max_short_side)


@dataclass
class Piped:
    """A video decoded while it is normalized, without a file and without waiting for it.
    With `encode`, `normalize`'s own ffmpeg command writes its H.264 to a pipe that the one
    decode reads (`iter_frame_pairs` with a feed), so the frames are those of the file
    `normalize` would write, byte for byte (tested). Without, the one decode reads `src` and
    applies `normalize`'s filters itself (`iter_frame_pairs` with filters): the pictures the
    encoder would take, yuv420p, without x264's cost or its loss. `info` is the probe of
    `src`; the frames' size comes from it (`target_size`)."""

    src: Path
    info: VideoInfo
    tmp: Path  # where the normalized file goes should a second decode need it
    fps: int = 24
    max_short_side: int = 360
    encode: bool = True

    @property
    def size(self) -> tuple[int, int]:
        from t12k.pipeline.media import target_size

        return target_size(self.info.width, self.info.height, self.max_short_side, self.info.sar)

    def pairs(self, video: str, small: tuple[int, int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """`OnePass`'s frame pairs of the video: decoded from the normalizer's pipe (`encode`),
        else from the source through the normalizer's filters, in one ffmpeg."""
        from t12k.pipeline.media import ffmpeg_exe, normalize_command, normalize_filters
        from t12k.pipeline.media.decode import iter_frame_pairs

        if not self.encode:
            filters = normalize_filters(self.size, self.fps, as_encoded=True)
            return iter_frame_pairs(self.src, small, filters=filters, size=self.size)
        feed = normalize_command(ffmpeg_exe(), self.src, "pipe:1", self.size, self.fps, container="nut")
        return iter_frame_pairs(video, small, feed=feed, size=self.size)

    def again(self, video: str, plan: ClipPlan, need_2d: bool, need_3d: bool) -> Iterator[ClipInput]:
        """`OnePass`'s second decode (a video that is one transition throughout): the frames
        of the first once more (`pairs`), else (`encode`) from the normalized file, written for it."""
        from t12k.pipeline.extract import iter_clip_inputs
        from t12k.shots.windows import INPUT_SIZE

        if self.encode:
            return iter_clip_inputs(self.file(), plan, need_2d, need_3d)
        frames = (big for _, big in self.pairs(video, INPUT_SIZE))
        return iter_clip_inputs(video, plan, need_2d, need_3d, frames=frames)

    def file(self) -> Path:
        """The normalized file, written on first use (for what cannot read the pipe)."""
        from t12k.pipeline.media import normalize

        path = self.tmp / "trailer.mp4"
        if not path.is_file():
            normalize(self.src, path, self.fps, self.max_short_side, src_info=self.info)
        return path

    def check(self, frames: int) -> None:
        """`normalize`'s check of its output's length, on the frames decoded from the pipe."""
        from t12k.pipeline.media.transcode import check_frame_count

        check_frame_count(self.src, frames, self.info.duration, self.fps)


def _local_video(source: str, tmp: Path) -> Path:
    """The trailer as a normalized video file: fetched for a URL, normalized into `tmp` unless
    it is normalized already."""
    video = _local_source(source, tmp, reencode=True)  # written to a file either way
    return video.file() if isinstance(video, Piped) else video


def _local_source(source: str, tmp: Path, reencode: bool) -> Path | Piped:
    """The trailer as a normalized video file (fetched for a URL, or the file itself when it
    is normalized already), else the video to decode while it is normalized (`Piped`),
    its frames H.264-encoded on the way if `reencode`."""
    from t12k.pipeline.fetch import FetchItem, fetch_collection
    from t12k.pipeline.media import probe

    if _is_url(source):
        summary = fetch_collection([FetchItem("trailer", source)], tmp, workers=1, progress=False)
        if summary.failed:
            raise T12kError(f"cannot fetch {source}: {next(iter(summary.failed.values()))}")
        return tmp / "trailer.mp4"
    src = Path(source)
    if not src.is_file():
        raise T12kError(f"video {src} not found; give an existing video file or a URL")
    info = probe(src)
    return src if _normalized(info) else Piped(src, info, tmp, encode=reencode)


def _runners(stores: dict, configs: dict[str, ExtractConfig], device: str | torch.device) -> dict[str, BackboneRunner]:
    """Per role, the backbone that remakes its store's features, its weights checked against the store's."""
    runners = {}
    for role, cfg in configs.items():
        # fp32 whatever the store's precision: the reference's math (and a CPU's only fast one)
        runner = BackboneRunner(get_spec(cfg.backbones), cfg.weights, device, cfg.batch_size)
        recorded, _ = _recorded(stores, role)
        if recorded is not None and runner.weights_used != recorded:
            raise T12kError(
                f"the checkpoint's {role} features were made with weights {recorded}, "
                f"this run would use {runner.weights_used}; pass the matching --weights"
            )
        runners[role] = runner
    return runners


def _plan_key(cfg: ExtractConfig) -> tuple:
    return cfg.strategy, int(cfg.fpc), int(cfg.fps)


def _features(
    video: Path | Piped, configs: dict, runners: dict, detector: ShotDetector, timing: dict
) -> tuple[np.ndarray, int, dict]:
    """(shots, frames, features per role) of the video. The roles whose clips are planned alike
    as the first role's come from one decode that finds the shots too (`OnePass`), a `Piped`
    video's while it is normalized; any other role decodes the normalized file once more with
    the clips of those shots."""
    first = next(iter(configs.values()))
    together = [r for r, c in configs.items() if _plan_key(c) == _plan_key(first)]
    piped = video if isinstance(video, Piped) else None
    if piped is not None and len(together) < len(configs):  # that second decode needs the file
        t0 = time.perf_counter()
        video, piped = piped.file(), None
        timing["normalize"] += time.perf_counter() - t0
    group = [runners[r] for r in together]
    engine = Engine(group, batch_size=max(r.batch_size for r in group), workers=0)
    one = OnePass(
        detector,
        lambda shot: None,
        lambda mid: None,
        engine.geometries,
        planning_of(first, detector.threshold),
        chunk=engine.chunk,
        threads=1,
        pairs=piped.pairs if piped is not None else None,
        again=piped.again if piped is not None else None,
    )
    result: dict = {}
    failures: dict[str, str] = {}
    t0 = time.perf_counter()
    source = one.items([("video", str(piped.src if piped is not None else video))])
    stats = engine.consume(source, lambda m, f, r: result.update(f), failures.__setitem__, ready=True)
    if failures:
        raise T12kError(failures["video"])
    shot = one.shots["video"]
    if piped is not None:
        piped.check(len(shot.preds))
    timing["shots and features, one decode"] = time.perf_counter() - t0
    timing["of which the backbones"] = sum(stats.model_s.values())
    feats = {role: result[runners[role].spec.key] for role in together}
    for role, cfg in configs.items():
        if role not in feats:
            t0 = time.perf_counter()
            plan = plan_clips(shot.shots, len(shot.preds), cfg.strategy, cfg.fpc, cfg.fps)
            feats[role] = clip_features(cast(Path, video), plan, [runners[role]])[0][cfg.backbones]
            timing[f"{role} features, another decode"] = time.perf_counter() - t0
    return shot.shots, len(shot.preds), feats


def predict_trailer(
    source: str,
    checkpoint: str | os.PathLike,
    *,
    weights: str | None = None,
    device: str = "auto",
    work_dir: str | os.PathLike | None = None,
    reencode: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Genre probabilities of one trailer (a video file or a URL), with the seconds each step took.

    A file that needs normalizing is decoded while it is normalized, its frames uncompressed
    on the way; `reencode` encodes them to H.264 as `t12k fetch` does (slower), so the
    features are bit for bit those a collection run stores for the same video (see the module)."""
    t_start = time.perf_counter()
    device = resolve_device(device)  # a wrong --device fails before anything is loaded
    model, info = load_model(checkpoint, "cpu")
    stores = info.get("stores") or {}
    configs = _store_configs(stores, weights)
    if not configs:
        raise T12kError(f"checkpoint {checkpoint} records no feature stores; retrain it with this t12k")
    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="t12k-predict-") as tmp:
        t0 = time.perf_counter()
        runners = _runners(stores, configs, device)
        detector = ShotDetector(device=str(device), threshold=_shots_config(stores, configs).threshold)
        timing["load models"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        video = _local_source(source, Path(tmp), reencode)
        timing["normalize"] = time.perf_counter() - t0
        shots, frames, feats = _features(video, configs, runners, detector, timing)
    for role, cfg in configs.items():  # the head is never given what a store would refuse
        problem = nonfinite_problem(feats[role])
        if problem:
            raise T12kError(
                f"the {cfg.backbones} features of {source} hold {problem}: the backbone returned non-finite "
                "values for this video; check the video (and, if it ran in fp16, use fp32)"
            )
    for role, cfg in configs.items():
        log(f"{role}: {cfg.backbones} ({runners[role].weights_used}), {cfg.strategy}-{cfg.fpc} at {cfg.fps} fps")
    t0 = time.perf_counter()
    probs = predict_features(model, feats.get("image"), feats.get("video"), int(info.get("snippet", 30)))
    timing["head"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start
    log("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))
    return {
        "source": source,
        "shots": int(len(shots)),
        "frames": int(frames),
        "clips": int(len(next(iter(feats.values())))),
        "probabilities": {g: float(p) for g, p in zip(GENRES, probs)},
        "seconds": {k: round(v, 3) for k, v in timing.items()},
    }
