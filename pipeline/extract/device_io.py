"""Copies between host and device for the engine, overlapped with the model on a GPU."""

from __future__ import annotations

import time
from typing import cast

import torch

Mark = float | torch.cuda.Event  # a point in a device's timeline (`DeviceIO.mark`)
HostCopy = tuple[list[torch.Tensor], torch.cuda.Event | None]  # `DeviceIO.to_host`'s handle


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


class DeviceIO:
    """Copies between host and device for the engine.

    On a CUDA device, inputs go up on a side stream (so a copy overlaps the model still
    running on the compute stream) and features come back into pinned memory without
    waiting: the engine reads a batch's features only after it has queued the next batch, so
    the GPU never idles while Python scatters features and writes stores. On a CPU every step
    is immediate."""

    def __init__(self, device: str | torch.device):
        self.device = device
        self.cuda = is_cuda(device)
        self.copy_stream = torch.cuda.Stream(device) if self.cuda else None

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda:
            return x.to(self.device)
        with torch.cuda.stream(self.copy_stream):
            y = x.to(self.device, non_blocking=True)
        compute = torch.cuda.current_stream(self.device)
        compute.wait_stream(cast(torch.cuda.Stream, self.copy_stream))  # kernels queued from now on see the copy done
        y.record_stream(compute)  # the allocator must not reuse y's memory before compute is done with it
        return y

    def mark(self) -> Mark:
        """A point in the device's timeline (an event on CUDA, the clock on a CPU)."""
        if not self.cuda:
            return time.perf_counter()
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    @staticmethod
    def seconds(a: Mark, b: Mark) -> float:
        """Seconds between two marks; on CUDA, both must have completed."""
        return cast(float, b) - a if isinstance(a, float) else a.elapsed_time(cast(torch.cuda.Event, b)) / 1000.0

    def to_host(self, ys: list[torch.Tensor]) -> HostCopy:
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
    def wait(handle: HostCopy) -> list[torch.Tensor]:
        host, done = handle
        if done is not None:
            done.synchronize()
        return host
