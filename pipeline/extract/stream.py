"""The worker side of the engine: every trailer's clips as chunks of backbone inputs.

In a DataLoader with workers, each worker takes the next trailer not yet taken, decodes it
once and sends chunks of at most `chunk` clips, so memory is bounded by workers x prefetch x
chunk whatever the length or number of trailers. A trailer that fails is sent as `Failed`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from t12k.backbones import Kind
from t12k.errors import describe
from t12k.pipeline.extract.clip_inputs import ClipInput, apply_geometries, iter_clip_inputs, stack_raw
from t12k.pipeline.extract.ring import FrameRing, SlotRef, mp_context
from t12k.pipeline.extract.transforms import Geometry
from t12k.shots import ClipPlan


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
    total: int  # clips of the trailer; negative: a later chunk of the trailer says (`onepass`)
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


@dataclass
class Failed:
    """A trailer the worker could not decode, with the one-line reason."""

    mid: str
    reason: str


class _ChunkFrames:
    """Where the raw 3D frames of a trailer's current chunk are written as they are decoded:
    a FrameRing slot when one is given and holds a clip, else (shared) ordinary memory. With
    `reuse` (the chunk is resized where it was decoded, and its frames never leave), one
    buffer serves every chunk of its size."""

    def __init__(self, ring: FrameRing | None, chunk: int, total: int, shared: bool, reuse: bool = False):
        self.ring, self.total, self.shared, self.reuse = ring, total, shared, reuse
        self.cap = chunk  # clips per chunk: fewer when a ring slot holds fewer
        self.first = 0  # first clip of the current chunk
        self.filled = 0  # its clips written so far
        self.buf: tuple[SlotRef | None, torch.Tensor] | None = None
        self.spare: torch.Tensor | None = None  # the last chunk's buffer, with `reuse`

    def dest(self, shape: tuple[int, ...]) -> np.ndarray:
        """The array the next clip's frames (of `shape`) go into: one copy, straight to memory
        the main process reads."""
        if self.buf is None:
            fit = self.ring.fits(shape) if self.ring is not None else 0
            if fit:
                self.cap = min(self.cap, fit)
            n = min(self.cap, self.total - self.first)
            if fit:
                assert self.ring is not None  # a slot fits only with a ring
                slot = self.ring.acquire()
                self.buf = (SlotRef(slot, (n, *shape)), self.ring.view(slot, (n, *shape)))
            elif self.reuse and self.spare is not None and self.spare.shape == (n, *shape):
                self.buf = (None, self.spare)
            else:
                t = torch.empty((n, *shape), dtype=torch.uint8)
                self.buf = (None, t.share_memory_() if self.shared else t)
        self.filled += 1
        return self.buf[1][self.filled - 1].numpy()

    def take(self, next_first: int) -> SlotRef | torch.Tensor:
        """The chunk's frames (a slot reference or a tensor); the next chunk starts at `next_first`."""
        assert self.buf is not None  # `frame` was called for this chunk
        ref, tensor = self.buf
        self.buf, self.filled, self.first = None, 0, next_first
        if self.reuse:
            self.spare = tensor
        return ref if ref is not None else tensor

    def release(self) -> None:
        """Give back a slot taken for a chunk that never went out."""
        if self.buf is not None and self.buf[0] is not None:
            assert self.ring is not None  # a slot reference comes from the ring
            self.ring.release(self.buf[0].slot)
        self.buf = None


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
        self.need_2d = any(g.kind == Kind.IMAGE for g in geometries) and not (raw and reps_on_device)
        self.need_3d = any(g.kind == Kind.VIDEO for g in geometries)
        self._next = mp_context().Value("i", 0)

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
                yield Failed(job.mid, describe(exc))

    def _trailer(self, job: Job) -> Iterator[Chunk]:
        total = len(job.plan)
        shipped = self.raw  # raw frames leave this producer: shared memory in a worker, never reused
        frames = _ChunkFrames(
            self.ring, self.chunk, total, shared=shipped and get_worker_info() is not None, reuse=not shipped
        )
        pending: list[ClipInput] = []
        t0 = time.perf_counter()
        try:
            clips = iter_clip_inputs(
                job.video,
                job.plan,
                self.need_2d,
                self.need_3d,
                self.decode_threads,
                frames.dest if self.need_3d else None,
            )
            for clip in clips:
                pending.append(clip)
                if len(pending) == frames.cap or clip.index == total - 1:
                    reps = torch.tensor([c.representative if self.need_2d else -1 for c in pending], dtype=torch.int32)
                    inputs = self._inputs(pending, frames, clip.index + 1)
                    yield Chunk(job.mid, pending[0].index, total, reps, inputs, time.perf_counter() - t0)
                    pending = []
                    t0 = time.perf_counter()
        finally:
            frames.release()

    def _inputs(self, clips: list[ClipInput], frames: _ChunkFrames, next_first: int) -> list:
        """A chunk's inputs: every geometry applied here, or the raw frames per kind."""
        if not self.raw:  # the 3D frames were decoded into the chunk's buffer: resized from there
            return apply_geometries(self.geometries, clips, frames.take(next_first) if self.need_3d else None)
        inputs: list = [stack_raw(Kind.IMAGE, clips)] if self.need_2d else []
        if self.need_3d:
            inputs.append(frames.take(next_first))
        return inputs
