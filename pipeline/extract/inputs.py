"""A chunk from the workers made ready for the model batches, in the main process: on the
device, its ring slots handed back, and (when asked) its 2D frames picked and its geometry
applied there."""

from __future__ import annotations

from collections import deque

import torch

from t12k.backbones import Kind
from t12k.pipeline.extract.batches import Trailers
from t12k.pipeline.extract.device_io import DeviceIO
from t12k.pipeline.extract.reps import device_representatives
from t12k.pipeline.extract.ring import FrameRing, SlotRef
from t12k.pipeline.extract.stats import EngineStats
from t12k.pipeline.extract.stream import Chunk
from t12k.pipeline.extract.transforms import Geometry, apply_geometry
from t12k.shots import ClipPlan


class SlotReturns:
    """Ring slots whose frames are being copied to the GPU, given back to the workers once the
    copy is done. Never more than `limit` are held while waiting for the workers (they may be
    waiting for a slot)."""

    def __init__(self, ring: FrameRing | None, io: DeviceIO, limit: int):
        self.ring, self.io, self.limit = ring, io, limit
        self.pending: deque[tuple[torch.cuda.Event, int]] = deque()  # (copy done, slot)

    def copy_out(self, ref: SlotRef) -> torch.Tensor:
        """The slot's frames on the GPU; the slot goes back when the copy is done."""
        assert self.ring is not None  # a slot reference comes from the ring
        y = self.io.to_device(self.ring.view(ref.slot, ref.shape))
        done = torch.cuda.Event()
        done.record(self.io.copy_stream)
        self.pending.append((done, ref.slot))
        return y

    def hand_back(self) -> None:
        while self.pending and (self.pending[0][0].query() or len(self.pending) > self.limit):
            done, slot = self.pending.popleft()
            done.synchronize()
            assert self.ring is not None  # a slot was copied out of the ring
            self.ring.release(slot)


class ChunkInputs:
    """Turns a chunk's inputs into the model-ready inputs per geometry group."""

    def __init__(
        self,
        geometries: list[Geometry],
        kinds: list[Kind],
        io: DeviceIO,
        ring: FrameRing | None,
        stats: EngineStats,
        *,
        resize_on_device: bool,
        plans: dict[str, ClipPlan] | None = None,
        pending_slots: int = 4,
    ):
        self.geometries, self.kinds, self.io, self.ring, self.stats = geometries, kinds, io, ring, stats
        self.resize_on_device = resize_on_device
        self.plans = plans  # given: pick the 2D frames on the device from the 3D frames
        self.returns = SlotReturns(ring, io, pending_slots)

    def __call__(self, chunk: Chunk, trailers: Trailers) -> list[torch.Tensor]:
        cpu_slots: list[int] = []
        with self.stats.timing("copy_s"):
            inputs = [self._on_device(x, cpu_slots) for x in chunk.inputs]
        if self.plans is not None:  # the 2D frames: each clip's representative among its 3D frames
            with self.stats.timing("reps_s"):
                inputs, host = self._representatives(chunk, inputs)
            trailers.add_device_reps(chunk.mid, chunk.first, host)
        if self.resize_on_device:
            with self.stats.timing("resize_s"):
                inputs = [apply_geometry(g, inputs[self.kinds.index(g.kind)]) for g in self.geometries]
        if cpu_slots:
            inputs = self._off_slots(inputs, cpu_slots)
        return inputs

    def _on_device(self, x: torch.Tensor | SlotRef, cpu_slots: list[int]) -> torch.Tensor:
        """A chunk input on the device. A ring slot goes back once its frames are copied out: on
        a GPU when the copy is done; on a CPU after the resize, which writes new tensors, so the
        frames are never copied twice (its slot is added to `cpu_slots`)."""
        if not isinstance(x, SlotRef):
            return self.io.to_device(x)
        if self.io.cuda:
            return self.returns.copy_out(x)
        cpu_slots.append(x.slot)
        assert self.ring is not None  # a slot reference comes from the ring
        return self.ring.view(x.slot, x.shape)

    def _representatives(self, chunk: Chunk, inputs: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The 2D inputs picked from the 3D frames, and the picked frame numbers on their way
        to a host tensor."""
        (raw3,) = inputs
        assert self.plans is not None  # representatives are picked on the device only with plans
        table = torch.from_numpy(self.plans[chunk.mid].frames[chunk.first : chunk.first + len(chunk)])
        table = table.to(raw3.device, non_blocking=True)
        t_star = device_representatives(raw3, table >= 0)
        inputs = [raw3[torch.arange(len(chunk), device=raw3.device), t_star], raw3]
        host = torch.empty(len(chunk), dtype=torch.int32, pin_memory=self.io.cuda)
        host.copy_(table.gather(1, t_star[:, None])[:, 0], non_blocking=True)
        return inputs, host

    def _off_slots(self, inputs: list[torch.Tensor], slots: list[int]) -> list[torch.Tensor]:
        """Inputs that no longer view a ring slot (the resize made new tensors; anything still a
        view is copied), and the slots given back."""
        assert self.ring is not None  # slots come from the ring
        slot_ptrs = {self.ring.buffers[i].untyped_storage().data_ptr() for i in slots}
        inputs = [x.clone() if x.untyped_storage().data_ptr() in slot_ptrs else x for x in inputs]
        for slot in slots:
            self.ring.release(slot)
        return inputs
