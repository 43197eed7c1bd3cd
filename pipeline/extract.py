"""The extract stage: clips from shots, one decode per trailer, frozen backbones, stores.

The engine has two sides.

Worker processes (a `torch.utils.data.DataLoader` over an iterable dataset of trailers, so
PyTorch handles process start-up, shared-memory tensors, pinned memory and shutdown) each
take the next unfinished trailer, stream its frames once through ffmpeg, pick every clip's
inputs (2D: the histogram-representative frame; 3D: the clip's sub-sampled frames with
black padding) and apply the geometric part of each weight set's transforms (resize and
centre crop, on uint8, exactly the calls `Weights.transforms()` makes). Backbones that share
a geometry share the tensor. They send chunks of at most `chunk` clips, so memory is bounded
by workers x prefetch x chunk whatever the length or number of trailers.

The main process moves the chunks to the device (non-blocking copies from pinned memory),
makes model batches of `batch_size` clips across chunk and trailer boundaries, finishes the
transforms there (to float, mean/std, layout), runs every backbone under inference mode
(optionally bf16/fp16 autocast and channels-last), scatters the features back to their
trailers and writes each trailer to every store whole, as soon as its last clip is done.
A trailer that fails (unreadable video, shots that do not match it) is recorded in the
manifest with its reason and the others go on.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from t12k import __version__
from t12k.backbones import BackboneSpec, load_backbone, parse_backbones
from t12k.errors import T12kError
from t12k.pipeline.media import iter_frames
from t12k.pipeline.runner import RunSummary
from t12k.pipeline.videos import find_videos
from t12k.shots import ClipPlan, plan_clips
from t12k.shots.clips import HIST_BINS, color_counts, representative_from_counts
from t12k.storage import FeatureStore, Manifest, ShotStore

# precision -> autocast dtype. "fp32" is strict IEEE float32 on a GPU as well (cuDNN's and
# cuBLAS's TF32 off: PyTorch lets cuDNN convolutions use TF32 by default, which moves features
# by about 1e-3); "tf32" allows TF32 tensor cores for float32 convolutions and matmuls.
PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def device_math(device: str, precision: str):
    """cuDNN autotuning (fixed batch shapes) and the float32 math mode of `precision` on a
    CUDA device, restored on exit; nothing changes on a CPU."""
    if not device.startswith("cuda"):
        yield
        return
    mode = "tf32" if precision == "tf32" else "ieee"
    knobs = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
    if all(hasattr(k, "fp32_precision") for k in knobs):  # torch >= 2.9
        old = [k.fp32_precision for k in knobs]
        for k in knobs:
            k.fp32_precision = mode
        restore = lambda: [setattr(k, "fp32_precision", o) for k, o in zip(knobs, old)]  # noqa: E731
    else:  # older torch: the legacy switches
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
        restore = lambda: (  # noqa: E731
            setattr(torch.backends.cuda.matmul, "allow_tf32", old[0]),
            setattr(torch.backends.cudnn, "allow_tf32", old[1]),
        )
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        restore()


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise T12kError(f"device {device} asked for but no CUDA GPU is visible; use --device cpu")
    return device


def resolve_workers(workers: int | str, device: str) -> int:
    """`auto`: one decode worker on a CPU run (the model needs the cores), otherwise one per
    core but one, at most 16."""
    if workers == "auto" or workers is None:
        cores = os.cpu_count() or 1
        return 1 if device == "cpu" else max(1, min(cores - 1, 16))
    try:
        n = int(workers)
    except ValueError:
        n = -1
    if n < 0:
        raise T12kError(f"--workers must be 0 (decode in this process), a positive number or auto; got {workers}")
    return n


# ---- transforms split in two: geometry in the workers, the rest on the device ----------------


@dataclass(frozen=True)
class Geometry:
    """Resize and centre crop of uint8 frames, as the weight set's transforms do them."""

    kind: str  # "2d" or "3d"
    resize_size: tuple[int, ...]
    crop_size: tuple[int, ...]
    interpolation: str
    antialias: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> uint8 (N, 3, h, w); 3D clips come as (N * T, 3, H, W)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        x = F.resize(
            x, list(self.resize_size), interpolation=InterpolationMode(self.interpolation), antialias=self.antialias
        )
        return F.center_crop(x, list(self.crop_size))


@dataclass(frozen=True)
class Normalize:
    """The transforms' remaining steps: to float in [0, 1], mean/std, (N, C, T, H, W) for 3D."""

    kind: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 2D (N, 3, h, w) or 3D (N, T, 3, h, w) -> float (N, 3, h, w) or (N, 3, T, h, w)."""
        from torchvision.transforms import functional as F

        if self.kind == "2d":
            return F.normalize(F.convert_image_dtype(x, torch.float), mean=list(self.mean), std=list(self.std))
        n, t, c, h, w = x.shape
        x = F.normalize(
            F.convert_image_dtype(x.reshape(n * t, c, h, w), torch.float), mean=list(self.mean), std=list(self.std)
        )
        return x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)


def split_transforms(spec: BackboneSpec) -> tuple[Geometry, Normalize]:
    """The spec's `transforms()` (torchvision's ImageClassification or VideoClassification
    presets) as a uint8 geometry part and a normalization part whose composition gives the
    same tensor, bit for bit (tests check this for every registered backbone)."""
    from torchvision.transforms._presets import ImageClassification, VideoClassification

    t = spec.transforms()
    if isinstance(t, ImageClassification):
        antialias = bool(t.antialias) if t.antialias is not None else True
    elif isinstance(t, VideoClassification):
        antialias = bool(getattr(t, "antialias", False))  # torchvision's video preset: False
    else:
        raise T12kError(
            f"backbone {spec.key}: transforms of type {type(t).__name__} are not supported; "
            "give the spec torchvision ImageClassification or VideoClassification transforms"
        )
    geometry = Geometry(spec.kind, tuple(t.resize_size), tuple(t.crop_size), t.interpolation.value, antialias)
    return geometry, Normalize(spec.kind, tuple(t.mean), tuple(t.std))


# ---- the worker side ----------------------------------------------------------------------


@dataclass
class ClipInput:
    index: int
    representative: int  # frame index of the 2D representative frame
    frame: np.ndarray | None  # (H, W, 3) uint8, for 2D backbones
    frames: np.ndarray | None  # (T, H, W, 3) uint8, black-padded, for 3D backbones


def iter_clip_inputs(
    video: str | os.PathLike, plan: ClipPlan, need_2d: bool = True, need_3d: bool = False, threads: int = 0, dest=None
) -> Iterator[ClipInput]:
    """Stream `video` once and yield each clip's backbone inputs in clip order.

    Only the current clip's frames are held in memory. Clips must be sorted and
    non-overlapping (as Shot-f and Seq-f plans are). `dest(shape)`, if given, returns the
    array a clip's 3D frames are written into (a slot of a shared-memory chunk, say)."""
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
    for i, frame in enumerate(iter_frames(video, threads=threads)):
        last_frame = i
        while c < n and i > spans[c, 1]:  # should not happen with decoded counts == plan
            c += 1
        if c >= n:
            break
        if i < spans[c, 0]:
            continue
        if need_2d:
            kept.append(frame)
            hists.append(color_counts(frame))
        if need_3d and i in wanted:
            sub[i] = frame
        if i == spans[c, 1]:
            yield _finish_clip(c, plan, kept, hists, sub, need_2d, need_3d, frame.shape, dest)
            kept, hists, sub = [], [], {}
            c += 1
            if c < n:
                wanted = set(int(j) for j in plan.frames[c] if j >= 0)
    if c < n:
        raise T12kError(
            f"video {video} has {last_frame + 1} frames but its shots reach frame "
            f"{int(spans[-1, 1])}; the shots store does not match this video: re-run `t12k shots` on it"
        )


def _finish_clip(c, plan, kept, hists, sub, need_2d, need_3d, shape, dest=None) -> ClipInput:
    rep, frame, frames = int(plan.spans[c, 0]), None, None
    if need_2d:
        k = representative_from_counts(np.stack(hists))
        rep, frame = int(plan.spans[c, 0]) + k, kept[k]
    if need_3d:
        black = np.zeros(shape, np.uint8)
        out = dest((len(plan.frames[c]), *shape)) if dest is not None else None
        frames = np.stack([sub[int(j)] if j >= 0 else black for j in plan.frames[c]], out=out)
    return ClipInput(c, rep, frame, frames)


@dataclass
class Job:
    """One trailer to extract: its id, video and clip plan."""

    mid: str
    video: str
    plan: ClipPlan


@dataclass
class Chunk:
    """Consecutive clips [first, first + n) of one trailer, every geometry applied."""

    mid: str
    first: int
    total: int  # clips of the trailer
    reps: torch.Tensor  # int32 (n,), -1 without 2D backbones
    inputs: list  # per geometry: uint8 (n, 3, h, w) or (n, T, 3, h, w); raw 3D frames may be a SlotRef
    decode_s: float = 0.0  # worker seconds spent producing this chunk

    def __len__(self) -> int:
        return len(self.reps)

    def pin_memory(self) -> Chunk:
        """Called by the DataLoader's pinning thread on CUDA runs: page-locked inputs make the
        host-to-device copies asynchronous (ring slots are registered as pinned already)."""
        self.inputs = [x.pin_memory() if isinstance(x, torch.Tensor) else x for x in self.inputs]
        return self


@dataclass(frozen=True)
class SlotRef:
    """Raw frames a worker wrote into slot `slot` of the FrameRing, as a tensor of `shape`."""

    slot: int
    shape: tuple[int, ...]


class FrameRing:
    """Shared-memory slots for the raw 3D frames of chunks (`--resize-on device`), made once
    before the workers start and reused for the whole run.

    Writing 360p frames into fresh shared memory costs a worker about 0.65 ms per frame in
    page faults, about as much as decoding the frame; into a reused slot 0.07 ms
    (`bench/bench_extract.py --only workers`). The main process hands a slot back once its
    frames are copied out, and on a GPU it registers the slots as pinned memory, so frames go
    from a worker's slot to the GPU by DMA without the pinning thread's extra copy. A worker
    waits for a free slot, which also bounds the memory in flight."""

    def __init__(self, slots: int, slot_bytes: int, ctx=None):
        ctx = ctx or multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        self.slot_bytes = int(slot_bytes)
        self.buffers = [torch.empty(self.slot_bytes, dtype=torch.uint8).share_memory_() for _ in range(slots)]
        self.free = ctx.Queue()
        self.free.cancel_join_thread()  # never block the main process's exit on this queue
        for i in range(slots):
            self.free.put(i)
        self.owner = os.getpid()
        self.registered: list[int] = []

    def __len__(self) -> int:
        return len(self.buffers)

    def fits(self, shape: tuple[int, ...]) -> int:
        """How many items of `shape` a slot holds (0: none, use ordinary memory)."""
        return self.slot_bytes // max(1, int(np.prod(shape)))

    def acquire(self) -> int:
        """A free slot; waits for one. Gives up if the main process is gone."""
        import queue

        while True:
            try:
                return self.free.get(timeout=1.0)
            except queue.Empty:
                if os.getpid() != self.owner and os.getppid() != self.owner:
                    raise RuntimeError("the main process of the extraction is gone") from None

    def release(self, slot: int) -> None:
        self.free.put(slot)

    def view(self, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        n = int(np.prod(shape))
        return self.buffers[slot][:n].view(shape)

    def register(self) -> bool:
        """Page-lock the slots for the CUDA driver (main process); False if it refuses."""
        cudart = torch.cuda.cudart()
        for i, b in enumerate(self.buffers):
            if int(cudart.cudaHostRegister(b.data_ptr(), b.numel(), 0)) != 0:
                self.unregister()
                return False
            self.registered.append(i)
        return True

    def unregister(self) -> None:
        cudart = torch.cuda.cudart()
        for i in self.registered:
            cudart.cudaHostUnregister(self.buffers[i].data_ptr())
        self.registered = []


@dataclass
class Failed:
    mid: str
    reason: str


def _reason(exc: BaseException) -> str:
    if isinstance(exc, T12kError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _raw(kind: str, clips: list[ClipInput]) -> torch.Tensor:
    """Decoded inputs of a chunk as one uint8 tensor: 2D (n, H, W, 3), 3D (n, T, H, W, 3)."""
    return torch.from_numpy(np.stack([c.frame if kind == "2d" else c.frames for c in clips]))


def apply_geometry(g: Geometry, raw: torch.Tensor) -> torch.Tensor:
    """Geometry of raw inputs (see `_raw`), on whatever device they are: 2D -> (n, 3, h, w),
    3D -> (n, T, 3, h, w), uint8."""
    if g.kind == "2d":
        return g(raw.permute(0, 3, 1, 2)).contiguous()
    n, t = raw.shape[:2]
    y = g(raw.reshape(n * t, *raw.shape[2:]).permute(0, 3, 1, 2))
    return y.reshape(n, t, *y.shape[1:]).contiguous()


def _apply(geometries: list[Geometry], clips: list[ClipInput]) -> list[torch.Tensor]:
    return [apply_geometry(g, _raw(g.kind, clips)) for g in geometries]


class ClipStream(IterableDataset):
    """Chunks of every job's clips. In a DataLoader with workers, each worker takes the next
    job not yet taken (a shared counter), so long and short trailers balance out."""

    def __init__(
        self,
        jobs: list[Job],
        geometries: list[Geometry],
        chunk: int = 32,
        decode_threads: int = 0,
        raw: bool = False,
        ring: FrameRing | None = None,
        reps_on_device: bool = False,
    ):
        self.jobs = jobs
        self.ring = ring if raw else None  # raw 3D frames go into its slots (the consumer releases them)
        self.geometries = geometries
        self.raw = raw  # ship decoded inputs per kind; the geometry runs on the device
        self.chunk = max(1, int(chunk))
        self.decode_threads = decode_threads
        # reps_on_device: the main process picks the 2D frames from the shipped 3D frames
        self.need_2d = any(g.kind == "2d" for g in geometries) and not (raw and reps_on_device)
        self.need_3d = any(g.kind == "3d" for g in geometries)
        self._next = multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Value("i", 0)

    def _take(self) -> int:
        with self._next.get_lock():
            i = self._next.value
            self._next.value += 1
        return i

    def __iter__(self) -> Iterator[Chunk | Failed]:
        if get_worker_info() is None:  # in this process: every job, in order
            indices: Iterator[int] = iter(range(len(self.jobs)))
        else:
            indices = iter(self._take, None)
        for i in indices:
            if i >= len(self.jobs):
                return
            job = self.jobs[i]
            try:
                yield from self._trailer(job)
            except Exception as exc:  # a bad trailer is reported, the worker goes on
                yield Failed(job.mid, _reason(exc))

    def _trailer(self, job: Job) -> Iterator[Chunk]:
        total = len(job.plan)
        pending: list[ClipInput] = []
        buf: list = []  # raw 3D: the chunk's frames (a tensor, or a SlotRef and its view), written in place
        shared = get_worker_info() is not None
        cap = [self.chunk]  # clips per chunk: fewer when a ring slot holds fewer
        first = [0]

        def dest(shape):  # a raw chunk's 3D frames go straight into (shared) memory: one copy
            if not buf:
                fit = self.ring.fits(shape) if self.ring is not None else 0
                if fit:
                    cap[0] = min(self.chunk, fit)
                n = min(cap[0], total - first[0])
                if fit:
                    slot = self.ring.acquire()
                    buf.append((SlotRef(slot, (n, *shape)), self.ring.view(slot, (n, *shape))))
                else:
                    t = torch.empty((n, *shape), dtype=torch.uint8)
                    buf.append((None, t.share_memory_() if shared else t))
            return buf[0][1][len(pending)].numpy()

        t0 = time.perf_counter()
        try:
            clips = iter_clip_inputs(
                job.video, job.plan, self.need_2d, self.need_3d, self.decode_threads, dest if self.raw else None
            )
            for clip in clips:
                pending.append(clip)
                if len(pending) == cap[0] or clip.index == total - 1:
                    reps = torch.tensor([c.representative if self.need_2d else -1 for c in pending], dtype=torch.int32)
                    if self.raw:
                        inputs = [_raw("2d", pending)] if self.need_2d else []
                        if self.need_3d:
                            ref, tensor = buf.pop()
                            inputs.append(ref if ref is not None else tensor)
                    else:
                        inputs = _apply(self.geometries, pending)
                    yield Chunk(job.mid, pending[0].index, total, reps, inputs, time.perf_counter() - t0)
                    pending = []
                    first[0] = clip.index + 1
                    t0 = time.perf_counter()
        finally:
            for ref, _ in buf:  # a slot taken for a chunk that never went out
                if ref is not None:
                    self.ring.release(ref.slot)


def covers_every_frame(plan: ClipPlan) -> bool:
    """Whether each clip's 3D frames are all its real frames (fps = video fps, e.g. Shot-24 at
    24 fps), so its 2D representative can be picked from the frames shipped for 3D."""
    spans = [np.arange(a, b + 1) for a, b in plan.spans]
    return np.array_equal(plan.frames[plan.frames >= 0], np.concatenate(spans) if spans else [])


def device_representatives(frames: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Index t of each clip's representative frame, computed where `frames` are (a GPU).

    frames uint8 (n, T, H, W, 3), real bool (n, T) (False: black padding). The same
    histograms and the same exact integer argmin as the workers' `color_counts` and
    `representative_from_counts`, so both paths pick the very same frame."""
    n, t = frames.shape[:2]
    bins = HIST_BINS
    shift = 8 - int(np.log2(bins))
    dev = frames.device
    offset = (
        torch.arange(t, device=dev)[:, None, None, None] * (3 * bins) + torch.arange(3, device=dev) * bins
    )  # (T, 1, 1, 3)
    counts = torch.stack(
        [  # one clip at a time bounds the int64 temporaries
            torch.bincount(((frames[i] >> shift).long() + offset).reshape(-1), minlength=t * 3 * bins).view(t, 3 * bins)
            for i in range(n)
        ]
    )
    counts = counts * real[..., None]
    k = real.sum(1).view(n, 1, 1)
    d = k * counts - counts.sum(1, keepdim=True)
    dist = (d * d).sum(2).masked_fill(~real, torch.iinfo(torch.int64).max)
    return dist.argmin(1)


# ---- the main side ------------------------------------------------------------------------


class BackboneRunner:
    """One frozen backbone: its weights, its transforms split in geometry + normalization,
    and the device-side settings (precision, channels-last)."""

    def __init__(
        self,
        spec: BackboneSpec,
        weights: str,
        device: str,
        batch_size: int = 32,
        precision: str = "fp32",
        channels_last: bool | None = None,
    ):
        if precision not in PRECISIONS:
            raise T12kError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.model, self.weights_used = load_backbone(spec.key, weights, device)
        self.geometry, self.normalize = split_transforms(spec)
        if channels_last is None:  # convolutional nets on a GPU
            channels_last = device.startswith("cuda") and not spec.model_name.startswith("swin")
        self.channels_last = channels_last
        if channels_last:
            fmt = torch.channels_last if spec.kind == "2d" else torch.channels_last_3d
            self.model = self.model.to(memory_format=fmt)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features float32 (N, F), left on the device, of geometry-transformed uint8 inputs
        (2D (N, 3, h, w), 3D (N, T, 3, h, w)). On a GPU this only queues the work."""
        x = self.normalize(x.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
        dtype = PRECISIONS[self.precision]
        with torch.autocast(device_type=torch.device(self.device).type, dtype=dtype, enabled=dtype is not None):
            y = self.model(x)
        return y.float()

    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Features float32 (len(inputs), F) of raw 2D frames (H, W, 3) or 3D clips (T, H, W, 3)."""
        out = []
        for b in range(0, len(inputs), self.batch_size):
            x = torch.from_numpy(np.stack(inputs[b : b + self.batch_size]))
            if self.spec.kind == "2d":
                x = self.geometry(x.permute(0, 3, 1, 2))
            else:
                n, t = x.shape[:2]
                y = self.geometry(x.reshape(n * t, *x.shape[2:]).permute(0, 3, 1, 2))
                x = y.reshape(n, t, *y.shape[1:])
            with device_math(self.device, self.precision):
                out.append(self.forward(x).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.spec.num_features), np.float32)


def _groups(runners: list[BackboneRunner]) -> tuple[list[Geometry], list[int]]:
    """Distinct geometries and, per runner, the index of its geometry."""
    geometries: list[Geometry] = []
    which = []
    for r in runners:
        if r.geometry not in geometries:
            geometries.append(r.geometry)
        which.append(geometries.index(r.geometry))
    return geometries, which


@dataclass
class _Trailer:
    total: int
    feats: dict[str, np.ndarray]
    reps: np.ndarray
    done: int = 0
    device_reps: list = field(default_factory=list)  # (first clip, host tensor being filled)


@dataclass
class EngineStats:
    """Where the time went: worker seconds producing inputs (decode, histograms, resize),
    main-process seconds waiting for them, in the models, and writing stores."""

    clips: int = 0
    frames: int = 0
    worker_s: float = 0.0
    wait_s: float = 0.0
    model_s: dict[str, float] = field(default_factory=dict)
    write_s: float = 0.0
    resize_s: float = 0.0  # main-process seconds in resize/crop (resize_on="device")
    copy_s: float = 0.0  # main-process seconds moving chunks to the device (queueing them, on a GPU)
    batch_s: float = 0.0  # main-process seconds joining chunks into model batches
    reps_s: float = 0.0  # main-process seconds picking 2D representative frames (reps on the device)
    wall_s: float = 0.0


class DeviceIO:
    """Copies between host and device for the engine.

    On a CUDA device, inputs go up on a side stream (so a copy overlaps the model still
    running on the compute stream) and features come back into pinned memory without
    waiting: the engine reads a batch's features only after it has queued the next batch, so
    the GPU never idles while Python scatters features and writes stores. On a CPU every step
    is immediate."""

    def __init__(self, device: str):
        self.device = device
        self.cuda = device.startswith("cuda")
        self.copy_stream = torch.cuda.Stream(device) if self.cuda else None

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda:
            return x.to(self.device)
        with torch.cuda.stream(self.copy_stream):
            y = x.to(self.device, non_blocking=True)
        compute = torch.cuda.current_stream(self.device)
        compute.wait_stream(self.copy_stream)  # kernels queued from now on see the copy done
        y.record_stream(compute)  # the allocator must not reuse y's memory before compute is done with it
        return y

    def mark(self):
        """A point in the device's timeline (an event on CUDA, the clock on a CPU)."""
        if not self.cuda:
            return time.perf_counter()
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    @staticmethod
    def seconds(a, b) -> float:
        """Seconds between two marks; on CUDA, both must have completed."""
        return b - a if isinstance(a, float) else a.elapsed_time(b) / 1000.0

    def to_host(self, ys: list[torch.Tensor]):
        """Start copying device tensors to the host; `wait(handle)` gives the host tensors."""
        if not self.cuda:
            return [y.cpu() for y in ys], None
        host = [torch.empty(y.shape, dtype=y.dtype, pin_memory=True) for y in ys]
        for h, y in zip(host, ys):
            h.copy_(y, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    @staticmethod
    def wait(handle) -> list[torch.Tensor]:
        host, done = handle
        if done is not None:
            done.synchronize()
        return host


class Engine:
    """Runs jobs through decode workers and batched backbones; calls `on_done(mid, feats,
    table)` when a trailer's every clip is done and `on_failed(mid, reason)` on failure."""

    # raw 3D frames: the FrameRing's slot size (4 clips of 24 frames at 640x360) and how many
    # slots the main process may hold with copies to the GPU still running
    SLOT_BYTES = 72 << 20
    PENDING_SLOTS = 4
    RING_SLOTS: int | None = None  # None: enough that no worker waits for one

    def __init__(
        self,
        runners: list[BackboneRunner],
        batch_size: int = 32,
        workers: int = 0,
        prefetch: int = 2,
        chunk: int | None = None,
        resize_on: str = "workers",
        reps_on: str = "auto",
    ):
        if resize_on not in ("workers", "device"):
            raise T12kError(f"resize_on must be 'workers' or 'device', got {resize_on!r}")
        if reps_on not in ("workers", "device", "auto"):
            raise T12kError(f"reps_on must be 'workers', 'device' or 'auto', got {reps_on!r}")
        # where 2D representative frames are picked when 2D and 3D backbones run together with
        # the resize on the device and 3D clips hold every frame: on the device, the workers
        # skip the colour histogram of every frame (0.5 of their 0.8 CPU ms per 360p frame)
        self.reps_on = reps_on
        self.runners = runners
        self.batch_size = max(1, int(batch_size))
        self.workers = workers
        self.prefetch = max(1, int(prefetch))
        self.resize_on = resize_on
        # decoded 360p clips are large (24 frames: 16 MB): ship fewer per chunk
        self.chunk = chunk or (self.batch_size if resize_on == "workers" else max(1, self.batch_size // 4))
        self.geometries, self.which = _groups(runners)
        self.kinds = [k for k in ("2d", "3d") if any(g.kind == k for g in self.geometries)]
        self.device = runners[0].device if runners else "cpu"
        self.precision = getattr(runners[0], "precision", "fp32") if runners else "fp32"
        self.stats = EngineStats()
        self.reps_device = False

    def _reps_on_device(self, jobs: list[Job]) -> bool:
        if self.resize_on != "device" or self.kinds != ["2d", "3d"] or self.reps_on == "workers":
            return False
        if self.reps_on == "auto" and not self.device.startswith("cuda"):
            return False  # a CPU counts histograms faster with OpenCV in the workers
        return all(covers_every_frame(j.plan) for j in jobs)

    def _loader(self, jobs: list[Job]) -> DataLoader | ClipStream:
        cores = os.cpu_count() or 1
        threads = max(1, cores // max(1, self.workers)) if self.workers > 1 else 0
        raw = self.resize_on == "device"
        self.ring = None
        if raw and self.workers > 0 and "3d" in self.kinds:
            # enough slots that every worker can fill one while the loader holds its prefetch
            slots = self.RING_SLOTS or min(self.workers, len(jobs)) * (self.prefetch + 1) + 1 + self.PENDING_SLOTS
            self.ring = FrameRing(slots, self.SLOT_BYTES)
        stream = ClipStream(
            jobs, self.geometries, self.chunk, threads, raw=raw, ring=self.ring, reps_on_device=self.reps_device
        )
        if self.workers == 0:
            return stream
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=min(self.workers, len(jobs)),
            prefetch_factor=self.prefetch,
            pin_memory=self.device.startswith("cuda"),
            in_order=False,
            multiprocessing_context="fork" if os.name == "posix" else "spawn",
        )

    def run(self, jobs: list[Job], on_done, on_failed) -> EngineStats:
        st = self.stats
        t_start = time.perf_counter()
        if not jobs:
            return st
        open_: dict[str, _Trailer] = {}
        queue: deque[tuple[str, int, list[torch.Tensor]]] = deque()  # (mid, first clip, inputs)
        queued = 0
        io = DeviceIO(self.device)
        # batches whose features are on their way back: (owners, host handle, marks)
        inflight: deque[tuple[list, object, list]] = deque()

        def launch(limit: int) -> None:
            """Queue one model batch of up to `limit` clips through every backbone."""
            nonlocal queued
            parts, owners, n = [], [], 0
            while queue and n < limit:
                mid, first, inputs = queue.popleft()
                take = min(len(inputs[0]), limit - n)
                if take < len(inputs[0]):  # split: the rest stays at the front
                    queue.appendleft((mid, first + take, [x[take:] for x in inputs]))
                    inputs = [x[:take] for x in inputs]
                parts.append(inputs)
                owners.append((mid, first, take))
                n += take
            queued -= n
            t0 = time.perf_counter()
            batch = [
                torch.cat([p[g] for p in parts]) if len(parts) > 1 else parts[0][g] for g in range(len(self.geometries))
            ]
            st.batch_s += time.perf_counter() - t0
            marks, ys = [io.mark()], []
            for r, g in zip(self.runners, self.which):
                ys.append(r.forward(batch[g]))
                marks.append(io.mark())
            inflight.append((owners, io.to_host(ys), marks))

        def finish() -> None:
            """Scatter the oldest launched batch's features; write the trailers it completes."""
            owners, handle, marks = inflight.popleft()
            ys = io.wait(handle)
            for i, (r, y) in enumerate(zip(self.runners, ys)):
                st.model_s[r.spec.key] = st.model_s.get(r.spec.key, 0.0) + io.seconds(marks[i], marks[i + 1])
                y, off = y.numpy(), 0
                for mid, first, take in owners:
                    if mid in open_:  # else it failed while this batch ran
                        open_[mid].feats[r.spec.key][first : first + take] = y[off : off + take]
                    off += take
            for mid, first, take in owners:
                st.clips += take
                tr = open_.get(mid)
                if tr is None:
                    continue
                tr.done += take
                if tr.done == tr.total:
                    del open_[mid]
                    for first, host in tr.device_reps:  # copies queued before this batch: done
                        tr.reps[first : first + len(host)] = host.numpy()
                    t0 = time.perf_counter()
                    try:
                        on_done(mid, tr.feats, tr.reps)
                    except Exception as exc:
                        on_failed(mid, _reason(exc))
                    st.write_s += time.perf_counter() - t0

        def step(limit: int) -> None:
            launch(limit)
            while len(inflight) > 1:  # the previous batch is read back while this one runs
                finish()

        self.reps_device = self._reps_on_device(jobs)
        plans = {j.mid: j.plan for j in jobs}
        source = self._loader(jobs)
        ring = self.ring
        releases: deque[tuple[object, int]] = deque()  # (copy done event, slot) on CUDA

        def take(x, cpu_slots: list[int]):
            """A chunk input on the device. A ring slot goes back once its frames are copied
            out: on a GPU when the copy is done; on a CPU the caller releases `cpu_slots` after
            the resize, which writes new tensors, so the frames are never copied twice."""
            if not isinstance(x, SlotRef):
                return io.to_device(x)
            host = ring.view(x.slot, x.shape)
            if not io.cuda:
                cpu_slots.append(x.slot)
                return host
            y = io.to_device(host)
            done = torch.cuda.Event()
            done.record(io.copy_stream)
            releases.append((done, x.slot))
            return y

        def hand_back() -> None:
            """Release slots whose copies are done; never hold more than PENDING_SLOTS while
            waiting for the workers (they may be waiting for a slot)."""
            while releases and (releases[0][0].query() or len(releases) > self.PENDING_SLOTS):
                done, slot = releases.popleft()
                done.synchronize()
                ring.release(slot)

        it = iter(source)  # forks the workers: they inherit the ring's mappings
        try:
            # page-lock the ring only now: the driver may mark registered pages not to be inherited
            # by forked children (MADV_DONTFORK), which would leave the workers without the slots
            if ring is not None and io.cuda and not ring.register():
                print(
                    "warning: the CUDA driver refused to page-lock the frame ring; copies to the GPU "
                    "will not overlap the model",
                    file=sys.stderr,
                )
            with device_math(self.device, self.precision):
                while True:
                    hand_back()
                    t0 = time.perf_counter()
                    item = next(it, None)
                    st.wait_s += time.perf_counter() - t0
                    if item is None:
                        break
                    if isinstance(item, Failed):
                        if item.mid in open_:
                            del open_[item.mid]
                            kept = [q for q in queue if q[0] != item.mid]
                            queued = sum(len(q[2][0]) for q in kept)
                            queue.clear()
                            queue.extend(kept)
                        on_failed(item.mid, item.reason)
                        continue
                    st.worker_s += item.decode_s
                    if item.mid not in open_:
                        open_[item.mid] = _Trailer(
                            item.total,
                            {r.spec.key: np.zeros((item.total, r.spec.num_features), np.float32) for r in self.runners},
                            np.full(item.total, -1, np.int32),
                        )
                    open_[item.mid].reps[item.first : item.first + len(item)] = item.reps.numpy()
                    t0 = time.perf_counter()
                    cpu_slots: list[int] = []
                    inputs = [take(x, cpu_slots) for x in item.inputs]
                    st.copy_s += time.perf_counter() - t0
                    if self.reps_device:  # the 2D frames: each clip's representative among its 3D frames
                        t0 = time.perf_counter()
                        (raw3,) = inputs
                        table = torch.from_numpy(plans[item.mid].frames[item.first : item.first + len(item)])
                        table = table.to(raw3.device, non_blocking=True)
                        t_star = device_representatives(raw3, table >= 0)
                        inputs = [raw3[torch.arange(len(item), device=raw3.device), t_star], raw3]
                        host = torch.empty(len(item), dtype=torch.int32, pin_memory=io.cuda)
                        host.copy_(table.gather(1, t_star[:, None])[:, 0], non_blocking=True)
                        open_[item.mid].device_reps.append((item.first, host))
                        st.reps_s += time.perf_counter() - t0
                    if self.resize_on == "device":
                        t0 = time.perf_counter()
                        inputs = [apply_geometry(g, inputs[self.kinds.index(g.kind)]) for g in self.geometries]
                        st.resize_s += time.perf_counter() - t0
                    if cpu_slots:  # the resize made new tensors (never views of a slot): free the slots
                        slot_ptrs = {ring.buffers[i].untyped_storage().data_ptr() for i in cpu_slots}
                        inputs = [x.clone() if x.untyped_storage().data_ptr() in slot_ptrs else x for x in inputs]
                        for slot in cpu_slots:
                            ring.release(slot)
                    queue.append((item.mid, item.first, inputs))
                    queued += len(item)
                    while queued >= self.batch_size:
                        step(self.batch_size)
                while queued:
                    step(self.batch_size)
                while inflight:
                    finish()
        finally:
            del it
            if ring is not None and ring.registered:
                torch.cuda.synchronize(self.device)
                ring.unregister()
        st.wall_s += time.perf_counter() - t_start
        return st


def clip_table(plan: ClipPlan, reps: np.ndarray, kind: str) -> np.ndarray:
    """int32 (num_clips, 3): first frame, last frame, representative frame (-1 for 3D)."""
    rep = reps if kind == "2d" else np.full(len(plan), -1, np.int32)
    return np.concatenate([plan.spans, np.asarray(rep, np.int32)[:, None]], axis=1).astype(np.int32)


def clip_features(
    video: str | os.PathLike, plan: ClipPlan, runners: list[BackboneRunner]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features of every clip of one video for every runner (key -> (num_clips, F)), decoded
    in this process, and the clip table int32 (num_clips, 3): first, last, representative."""
    result: dict = {}

    def done(mid, feats, reps):
        result["feats"], result["reps"] = feats, reps

    def failed(mid, reason):
        raise T12kError(reason)

    engine = Engine(runners, batch_size=max(r.batch_size for r in runners), workers=0)
    engine.run([Job("video", str(video), plan)], done, failed)
    kind = "2d" if any(r.spec.kind == "2d" for r in runners) else "3d"
    return result["feats"], clip_table(plan, result["reps"], kind)


def store_settings(runner: BackboneRunner, strategy: str, fpc: int, fps: int, shot_settings: dict) -> dict:
    settings = {
        "backbone": runner.spec.key,
        "model": runner.spec.model_name,
        "weights": runner.weights_used,
        "strategy": strategy,
        "fpc": int(fpc),
        "fps": int(fps) if runner.spec.kind == "3d" else 24,
        "frame_selection": "histogram" if runner.spec.kind == "2d" else "all",
        "shots": {k: shot_settings.get(k) for k in ("detector", "threshold")} if strategy == "shot" else None,
        "precision": runner.precision,  # older stores carry no key (fp32); then it is not compared
    }
    return settings


def extract_features(
    videos: str | os.PathLike,
    shots_store: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    backbones: str = "shufflenet2d",
    weights: str = "default",
    strategy: str = "shot",
    fpc: int = 24,
    fps: int = 24,
    ids: list[str] | None = None,
    batch_size: int = 32,
    device: str = "auto",
    zarr_format: int = 2,
    workers: int | str = "auto",
    prefetch: int = 2,
    precision: str = "fp32",
    resize_on: str = "auto",
    reps_on: str = "auto",
    progress: bool = True,
    log=print,
) -> RunSummary:
    """Extract features of every trailer in `videos` into one store per backbone in `out_dir`."""
    specs = parse_backbones(backbones)
    found = find_videos(videos, ids)
    shots = ShotStore.open(shots_store)
    device = resolve_device(device)
    workers = resolve_workers(workers, device)
    if resize_on == "auto":  # a GPU resizes faster than 15 cores; on a CPU run the workers do it
        resize_on = "device" if device.startswith("cuda") else "workers"
    if resize_on not in ("workers", "device"):
        raise T12kError(f"--resize-on must be workers, device or auto; got {resize_on!r}")
    runners = [BackboneRunner(s, weights, device, batch_size, precision) for s in specs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stores: dict[str, FeatureStore] = {}
    for r in runners:
        path = out / r.spec.store_name(fpc, fps, strategy)
        stores[r.spec.key] = FeatureStore.create_or_append(
            path,
            store_settings(r, strategy, fpc, fps, shots.settings),
            attrs={"num_features": r.spec.num_features},
            zarr_format=zarr_format,
            info={"t12k_version": __version__, "pretraining": r.spec.pretraining},
        )
        log(f"{r.spec.key}: weights {r.weights_used} -> {path}")
    manifest = Manifest(out / "extract.manifest.csv", ("clips", "frames"))
    summary = RunSummary("extract")
    t_start = time.perf_counter()

    jobs, plans, started = [], {}, {}
    for mid, video in found.items():
        if all(mid in s for s in stores.values()):
            summary.skipped.append(mid)
            continue
        try:
            if mid not in shots:
                raise T12kError(f"{mid} is not in the shots store {shots.path}; run `t12k shots` on it first")
            num_frames = len(shots.predictions(mid))
            plan = plan_clips(shots.shots(mid), num_frames, strategy, fpc, fps)
            if len(plan) == 0:
                raise T12kError(f"{mid} has no clips (empty video?); re-fetch it")
        except T12kError as exc:
            summary.failed[mid] = str(exc)
            manifest.record(mid, "failed", str(exc))
            continue
        plans[mid] = (plan, num_frames)
        jobs.append(Job(mid, str(video), plan))

    bar = tqdm(total=len(jobs), desc="extract", unit="trailer", disable=not progress, leave=False)

    def on_done(mid: str, feats: dict[str, np.ndarray], reps: np.ndarray) -> None:
        plan, num_frames = plans[mid]
        for r in runners:
            if mid not in stores[r.spec.key]:
                stores[r.spec.key].write_features(mid, feats[r.spec.key], clip_table(plan, reps, r.spec.kind))
        summary.done.append(mid)
        elapsed = time.perf_counter() - started.setdefault("t", t_start)
        manifest.record(mid, "ok", seconds=f"{elapsed:.2f}", clips=len(plan), frames=num_frames)
        started["t"] = time.perf_counter()
        bar.update()

    def on_failed(mid: str, reason: str) -> None:
        summary.failed[mid] = reason
        manifest.record(mid, "failed", reason)
        bar.update()

    engine = Engine(
        runners, batch_size=batch_size, workers=workers, prefetch=prefetch, resize_on=resize_on, reps_on=reps_on
    )
    try:
        stats = engine.run(jobs, on_done, on_failed)
    finally:
        bar.close()
        manifest.compact()
    summary.seconds = time.perf_counter() - t_start
    nclips = sum(len(plans[m][0]) for m in summary.done)
    summary.totals = {
        "clips": nclips,
        "stores": ", ".join(f"{s.path.name} ({len(s)} trailers)" for s in stores.values()),
    }
    if summary.done and stats.wall_s > 0:
        summary.totals["clips/s"] = round(nclips / stats.wall_s, 1)
    return summary
