"""The extraction engine: decode workers feed batched backbones, trailer by trailer.

Worker processes (a `torch.utils.data.DataLoader` over an iterable dataset of trailers, so
PyTorch handles process start-up, shared-memory tensors, pinned memory and shutdown) each
take the next unfinished trailer, stream its frames once through ffmpeg, pick every clip's
inputs and apply the geometric part of each weight set's transforms (`stream.py`).

The main process moves the chunks to the device (`inputs.py`), makes model batches of
`batch_size` clips across chunk and trailer boundaries, runs every backbone under inference
mode and scatters the features back to their trailers (`batches.py`); each trailer goes to
`on_done` as soon as its last clip is done, or to `on_failed` with its reason.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader

from t12k.backbones import Kind
from t12k.device import device_math
from t12k.errors import T12kError
from t12k.heap import fixed_mmap_threshold
from t12k.pipeline.extract.backbone import micro_batch
from t12k.pipeline.extract.background import in_thread, until
from t12k.pipeline.extract.batches import Batcher, ModelQueue, Trailers, join
from t12k.pipeline.extract.config import ExtractConfig
from t12k.pipeline.extract.device_io import DeviceIO, is_cuda
from t12k.pipeline.extract.inputs import ChunkInputs
from t12k.pipeline.extract.reps import covers_every_frame
from t12k.pipeline.extract.ring import FrameRing
from t12k.pipeline.extract.stats import EngineStats
from t12k.pipeline.extract.stream import Chunk, ClipStream, Failed, Job
from t12k.pipeline.extract.transforms import clip_shape, group_geometries

WHERE = ("workers", "device")


class Engine:
    """Runs jobs through decode workers and batched backbones; calls `on_done(mid, feats,
    table)` when a trailer's every clip is done and `on_failed(mid, reason)` on failure."""

    # raw 3D frames: the FrameRing's slot size (4 clips of 24 frames at 640x360) and how many
    # slots the main process may hold with copies to the GPU still running
    SLOT_BYTES = 72 << 20
    PENDING_SLOTS = 4
    RING_SLOTS: int | None = None  # None: enough that no worker waits for one
    # With the resize in the workers, a worker holds a chunk's decoded frames until the chunk
    # is complete: chunks of 3D clips are cut to about CHUNK_BYTES of frames at 360p (4 clips
    # of 24 frames), not a whole batch (32 clips: 530 MB), which the main process assembles
    # from several chunks anyway.
    CHUNK_BYTES = 64 << 20
    FRAME_BYTES = 640 * 360 * 3  # a frame of a video as `t12k fetch` leaves it (short side 360)

    def __init__(
        self,
        runners: list,
        batch_size: int = 32,
        workers: int = 0,
        prefetch: int = 2,
        chunk: int | None = None,
        resize_on: str = "workers",
        reps_on: str = "auto",
    ):
        if resize_on not in WHERE:
            raise T12kError(f"resize_on must be 'workers' or 'device', got {resize_on!r}")
        if reps_on not in (*WHERE, "auto"):
            raise T12kError(f"reps_on must be 'workers', 'device' or 'auto', got {reps_on!r}")
        # where 2D representative frames are picked when 2D and 3D backbones run together with
        # the resize on the device and 3D clips hold every frame: on the device, the workers
        # skip the colour histogram of every frame (0.43 CPU ms per 360p frame, over half their work)
        self.reps_on = reps_on
        self.runners = runners
        self.batch_size = max(1, int(batch_size))
        self.workers = workers
        self.prefetch = max(1, int(prefetch))
        self.resize_on = resize_on
        # decoded 360p clips are large (24 frames: 16 MB): ship fewer per chunk
        self.chunk = chunk or (self.batch_size if resize_on == "workers" else max(1, self.batch_size // 4))
        self.chunk_given = chunk is not None
        self.geometries, self.which = group_geometries([r.geometry for r in runners])
        self.kinds = [k for k in Kind if any(g.kind == k for g in self.geometries)]
        self.device = runners[0].device if runners else "cpu"
        self.precision = getattr(runners[0], "precision", "fp32") if runners else "fp32"
        self.stats = EngineStats()
        self.reps_device = False
        self.ring: FrameRing | None = None

    def _reps_on_device(self, jobs: list[Job]) -> bool:
        if self.resize_on != "device" or self.kinds != list(Kind) or self.reps_on == "workers":
            return False
        if self.reps_on == "auto" and not is_cuda(self.device):
            return False  # a CPU counts histograms faster with OpenCV in the workers
        return all(covers_every_frame(j.plan) for j in jobs)

    def launch_size(self, plans: dict) -> int:
        """Clips per model launch: the batch on a GPU. A CPU runs a batch in micro-batches anyway
        (`runner.micro_batch`), so there a launch is the largest of the runners' micro-batches
        (each runner gets whole ones): the model starts once a few clips are decoded, not a
        whole batch, and the next clips are decoded beside it."""
        if is_cuda(self.device) or not self.runners:
            return self.batch_size
        shapes = [clip_shape(r.geometry, self._frames_per_clip(plans)) for r in self.runners]
        return max(micro_batch(shape, self.batch_size) for shape in shapes)

    def _frames_per_clip(self, plans: dict) -> int:
        """Of the plans' clips; where no plan says, of extract's default clip."""
        return max((p.frames.shape[1] for p in plans.values()), default=ExtractConfig.fpc)

    def _prepare(self, plans: dict) -> threading.Thread:
        """Make the runners' networks ready (OpenVINO: read and compile, 0.2 s for R(2+1)D; or
        convert, 5-60 s) in a thread while the first clips are decoded, rather than after; the
        thread, which the caller joins before it returns. A failure here is left to the first
        batch, which makes the network again and reports it. Without plans (another producer's
        chunks) a 3D network's frames per clip are unknown: it is left to the first batch
        rather than guessed."""

        def work() -> None:
            for r in self.runners:
                if not plans and r.geometry.kind == Kind.VIDEO:
                    continue
                try:
                    getattr(r, "prepare", lambda frames: None)(self._frames_per_clip(plans))
                except Exception:  # noqa: BLE001 - the first batch raises it where it is reported
                    pass

        thread = threading.Thread(target=work, name="t12k-prepare", daemon=True)
        thread.start()
        return thread

    def _chunk(self, jobs: list[Job]) -> int:
        """Clips per chunk: as given, else a model launch, or fewer where a worker would hold
        more than CHUNK_BYTES of decoded 3D frames before the resize (the frames per clip come
        from the plans)."""
        if self.chunk_given:
            return self.chunk
        chunk = min(self.chunk, self.launch_size({j.mid: j.plan for j in jobs}))
        if self.resize_on != "workers" or Kind.VIDEO not in self.kinds:
            return chunk
        frames = max(j.plan.frames.shape[1] for j in jobs)
        return max(1, min(chunk, self.CHUNK_BYTES // (frames * self.FRAME_BYTES)))

    def _loader(self, jobs: list[Job]) -> DataLoader | ClipStream:
        cores = os.cpu_count() or 1
        threads = max(1, cores // max(1, self.workers)) if self.workers > 1 else 0
        raw = self.resize_on == "device"
        self.ring = None
        if raw and self.workers > 0 and Kind.VIDEO in self.kinds:
            # enough slots that every worker can fill one while the loader holds its prefetch
            slots = self.RING_SLOTS or min(self.workers, len(jobs)) * (self.prefetch + 1) + 1 + self.PENDING_SLOTS
            self.ring = FrameRing(slots, self.SLOT_BYTES)
        stream = ClipStream(
            jobs, self.geometries, self._chunk(jobs), threads, raw=raw, ring=self.ring, reps_on_device=self.reps_device
        )
        if self.workers == 0:  # in this process, in a background thread
            return in_thread(stream, self.prefetch)
        if any(getattr(r, "openvino", None) is not None for r in self.runners):
            fixed_mmap_threshold(OPENVINO_MMAP_THRESHOLD)  # chunks come from decode processes
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=min(self.workers, len(jobs)),
            prefetch_factor=self.prefetch,
            pin_memory=is_cuda(self.device),
            in_order=False,
            multiprocessing_context="fork" if os.name == "posix" else "spawn",
            worker_init_fn=_fixed_malloc_threshold,
        )

    def run(
        self,
        jobs: list[Job],
        on_done: Callable,
        on_failed: Callable,
        stop: threading.Event | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> EngineStats:
        """Extract every job; the stats of this engine's runs so far. Once `stop` is set, Cancelled
        between chunks: the trailers not yet done are not passed on. `on_start`: called with a
        trailer's id when its first decoded chunk reaches the models."""
        if not jobs:
            return self.stats
        self.reps_device = self._reps_on_device(jobs)
        plans = {j.mid: j.plan for j in jobs}
        return self.consume(self._loader(jobs), on_done, on_failed, plans, stop=stop, on_start=on_start)

    def consume(
        self,
        source: Iterable[Chunk | Failed],
        on_done: Callable,
        on_failed: Callable,
        plans: dict | None = None,
        ready: bool = False,
        stop: threading.Event | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> EngineStats:
        """Run the chunks (and `Failed`s) of `source` through the backbones: the engine's own
        decode workers, or another producer of chunks (`onepass.OnePass.items`), whose chunks
        are `ready` (every geometry applied) and may leave a trailer's total of clips to its
        last chunk. Once `stop` is set, Cancelled at the next chunk (see `Engine.run`)."""
        t_start = time.perf_counter()
        io = DeviceIO(self.device)
        if ready:
            self.reps_device, self.ring = False, None
        run = _Run(self, io, plans or {}, on_done, on_failed, ready)
        items = iter(source)  # forks the workers: they inherit the ring's mappings
        if on_start is not None:
            items = _announced(items, on_start)
        if stop is not None:
            items = until(stop, items)
        # The first batch waits for its network; a stop does not, but the return does: a process
        # that exits while OpenVINO or PyTorch converts a network in a thread is aborted by C++.
        preparing = self._prepare(plans or {})
        try:
            self._lock_ring(io)
            with device_math(self.device, self.precision):
                run.consume(items)
        finally:
            del items
            preparing.join()
            if self.ring is not None and self.ring.registered:
                torch.cuda.synchronize(self.device)
                self.ring.unregister()
        self.stats.wall_s += time.perf_counter() - t_start
        return self.stats

    def _lock_ring(self, io: DeviceIO) -> None:
        """Page-lock the ring only once the workers are forked: the driver may mark registered
        pages not to be inherited by forked children (MADV_DONTFORK), which would leave the
        workers without the slots."""
        if self.ring is not None and io.cuda and not self.ring.register():
            print(
                "warning: the CUDA driver refused to page-lock the frame ring; copies to the GPU "
                "will not overlap the model",
                file=sys.stderr,
            )


def _fixed_malloc_threshold(_worker: int) -> None:
    """A decode worker's memory stays at its working set (glibc only).

    A worker allocates and frees frames and resize buffers of a few to 22 MB at a high rate.
    glibc's default raises its mmap threshold (to at most 32 MB) and its trim threshold (to
    twice that) each time such a buffer is freed, after which freed memory mostly stays in the
    heap: over 20 trailers a worker grew to 1.2 GB of private memory. A fixed threshold of 32
    MB keeps these buffers in the heap, where the next one reuses them, and the default trim
    threshold (128 KB) gives the rest back: 350 MB, at no CPU cost (`bench_extract_cpu.py
    --trailers 20`). A threshold small enough to map every frame would cost 3x the worker's CPU
    in page faults."""
    fixed_mmap_threshold(32 << 20)


# The main process of a run with OpenVINO: with glibc's moving threshold it grew by 13 MB a
# trailer (700 to 960 MB over 20 copies of a trailer, shufflenet2d), the model's and the
# chunks' buffers left in the heaps of OpenVINO's threads; with a fixed 1 MB it stays flat
# (`bench_extract_cpu.py --trailers 20`). OpenVINO keeps the network's own buffers, so the
# blocks mapped anew are only t12k's inputs (a few MB a micro-batch). Only with decode worker
# processes: where this process decodes too (`--workers 0`, `predict`'s one decode), frames,
# resize buffers and TransNet V2's activations would be mapped anew each time (`predict` was
# 8 s slower, a CPU run of shufflenet3d 20% slower), and without chunks coming from other
# processes its memory stays flat anyway.
OPENVINO_MMAP_THRESHOLD = 1 << 20


class _Run:
    """One run's moving parts: chunks -> device inputs -> batches -> models -> trailers."""

    def __init__(self, engine: Engine, io: DeviceIO, plans: dict, on_done: Callable, on_failed: Callable, ready: bool):
        self.stats = engine.stats
        self.batch_size = engine.launch_size(plans)
        self.groups = len(engine.geometries)
        self.trailers = Trailers(engine.runners, on_done, on_failed, self.stats)
        self.batcher = Batcher()
        self.models = ModelQueue(engine.runners, engine.which, io, self.trailers, self.stats)
        self.inputs = ChunkInputs(
            engine.geometries,
            engine.kinds,
            io,
            engine.ring,
            self.stats,
            resize_on_device=engine.resize_on == "device" and not ready,
            plans=plans if engine.reps_device else None,
            pending_slots=engine.PENDING_SLOTS,
        )

    def consume(self, items: Iterator[Chunk | Failed]) -> None:
        """Every chunk the workers send, then the batches left, then the features in flight."""
        while True:
            self.inputs.returns.hand_back()
            with self.stats.timing("wait_s"):
                item = next(items, None)
            if item is None:
                break
            self.feed(item)
        while len(self.batcher):
            self.step()
        self.models.drain(0)

    def feed(self, item: Chunk | Failed) -> None:
        if isinstance(item, Failed):
            if self.trailers.fail(item.mid, item.reason):
                self.batcher.drop(item.mid)
            return
        self.stats.worker_s += item.decode_s
        self.trailers.add(item)
        self.batcher.add(item.mid, item.first, self.inputs(item, self.trailers))
        while len(self.batcher) >= self.batch_size:
            self.step()

    def step(self) -> None:
        """Launch one model batch; read back the previous one while this one runs."""
        owners, parts = self.batcher.take(self.batch_size)
        with self.stats.timing("batch_s"):
            batch = join(parts, self.groups)
        self.models.launch(owners, batch)
        self.models.drain(keep=1)


def _announced(items: Iterator[Chunk | Failed], on_start: Callable[[str], None]) -> Iterator[Chunk | Failed]:
    """`items`, calling `on_start` with each trailer's id when its first chunk comes."""
    seen: set[str] = set()
    for item in items:
        if item.mid not in seen:
            seen.add(item.mid)
            on_start(item.mid)
        yield item
