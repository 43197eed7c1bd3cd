"""Where an extract run's time went, kept by the engine and reported by the bench."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


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

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        """Add the seconds the block takes to the counter `name` (e.g. "wait_s")."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, name, getattr(self, name) + time.perf_counter() - t0)

    def add_model(self, key: str, seconds: float) -> None:
        self.model_s[key] = self.model_s.get(key, 0.0) + seconds
