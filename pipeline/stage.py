"""What a stage is: the one interface every step a trailer goes through is written against.

A stage has a name, the resources one of its workers asks for (`Resources`: CPUs, GPUs,
memory), a `setup` run once on the worker before its first call (a model stage loads its
weights there), a `process` of one trailer or a batch of them, and a `teardown`. An engine
(`t12k.pipeline.run.local`, `t12k.pipeline.run.ray_engine`) runs any list of stages: on this
machine each stage gets `slots` threads; on a Ray cluster a stage that keeps state
(`stateful`, a model) becomes actors sized by its `resources`, and one that keeps none
becomes tasks. The scheduler (`t12k.pipeline.run.scheduler`) joins the stages with bounded
queues in the order of the list: what a stage returns for a trailer (`Outcome.data`) is what
the next stage gets (`Ticket.data`).

A stage's own settings travel in its own dataclass; the stage object is built from them and
must pickle (a Ray engine ships it to its workers), so `setup`, not `__init__`, loads what
cannot travel (models, open files, pools). The life of a stage on an engine: `placed` (its
device, on a cluster), `prepare` once by the driver, `setup` once per worker, `process` per
call, `stop` when the run stops, `teardown` when the engine closes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage asks of the machine or cluster it runs on."""

    cpus: float = 1.0  # cores (a download waiting on the network asks for none)
    gpus: float = 0.0  # GPUs; a model stage asks for 1 and an engine may pack several on one
    memory: int = 0  # bytes of memory beyond the worker's own (0: nothing worth reserving)

    def ray_options(self) -> dict[str, Any]:
        """These resources as Ray's `.options(...)` of a task or actor."""
        options: dict[str, Any] = {"num_cpus": self.cpus}
        if self.gpus:
            options["num_gpus"] = self.gpus
        if self.memory:
            options["memory"] = int(self.memory)
        return options


@dataclass
class Outcome:
    """What one stage did with one trailer."""

    mid: str
    status: str  # ok, skipped (done by an earlier run), failed, rejected (quality rules), cancelled
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # the manifest row's fields
    seconds: float = 0.0  # busy time of the stage on this trailer
    data: Any = None  # what the next stage takes: the download, the video's path, ...

    @property
    def goes_on(self) -> bool:
        return self.status in ("ok", "skipped")


@dataclass
class Ticket:
    """One trailer on its way through the stages: its id, what it came in as, and what the
    last stage made of it (`data`, that stage's `Outcome.data`)."""

    mid: str
    item: Any = None  # what entered the pipeline (a `FetchItem`, a video's path, ...)
    data: Any = None  # the last stage's output, the next stage's input
    t0: float = field(default_factory=time.perf_counter)
    alone: bool = False  # run it in a call of its own (its group's call failed)
    tries: dict[str, int] = field(default_factory=dict)  # calls of a stage lost with their worker
    waits: int = 0  # calls that found their actor unreachable


class Stage:
    """One step of a pipeline (see the module's note). Subclasses set `name`, and override
    `process`; the rest has defaults a stateless one-trailer stage needs."""

    name: ClassVar[str] = "stage"
    stateful: ClassVar[bool] = False  # keeps a model or a store between calls: actors on Ray
    batch: int = 1  # most trailers per call
    slots: int = 1  # calls at once on one machine
    # Called with a trailer's outcome as a call finishes it, when the caller asks (a progress
    # bar that moves, and manifest rows written as trailers commit, within a long call of many
    # trailers); a stage may ignore it, and then the call's outcomes say it all at its end.
    progress: Callable[[Outcome], None] | None = None

    def resources(self) -> Resources:
        """What one worker of this stage asks for."""
        return Resources()

    def placed(self, device: str) -> Stage:
        """This stage with its models on `device` ("cpu", "cuda"), as an engine places it on
        a cluster whose GPUs the driver may not see; a stage without a model is itself."""
        return self

    def prepare(self) -> None:
        """Run once by the driver before any worker starts: make the stores, refuse settings
        that clash with what is there (a bad setting stops the run before any work)."""

    def setup(self) -> None:
        """Run once on the worker before its first call: load models, open stores."""

    def process(self, tickets: list[Ticket], stop: threading.Event | None = None) -> list[Outcome]:
        """One `Outcome` per ticket, in their order; a trailer's failure is an outcome, never
        an exception. Once `stop` is set, what is not committed comes back cancelled."""
        raise NotImplementedError(f"the stage {self.name!r} does not say how to process a trailer")

    def stop(self) -> None:
        """Stop the work in flight now (ffmpeg, a process pool); the engine also sets `stop`."""

    def teardown(self) -> None:
        """Run once when the engine closes: free what `setup` took."""
