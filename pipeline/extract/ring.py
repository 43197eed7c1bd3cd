"""Shared-memory slots that carry raw 3D frames from the decode workers to the main process."""

from __future__ import annotations

import multiprocessing
import os
import queue
from dataclasses import dataclass
from multiprocessing.context import BaseContext

import numpy as np
import torch


def mp_context() -> BaseContext:
    """The multiprocessing start method of the engine: fork where there is one (the workers
    inherit the ring's mappings), else spawn."""
    return multiprocessing.get_context("fork" if os.name == "posix" else "spawn")


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

    def __init__(self, slots: int, slot_bytes: int, ctx: BaseContext | None = None) -> None:
        ctx = ctx or mp_context()
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
