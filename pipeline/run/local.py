"""The local engine of `t12k run`: every stage on this machine, each with workers of its own.

Downloads run in `workers` threads paced by fetch's `Pacer`; normalizations in fetch's worker
processes (a thread waits for each), `normalize_workers` at once; shot detection and the
backbones each in one model thread on the model device. Ctrl-C (or SIGTERM) stops the
downloads and ffmpeg at once, and the model threads within a batch or so: what they had not
committed comes back cancelled (a commit is whole or absent) and the next run redoes it.

The model threads, and the decode processes and ffmpeg they start, leave SIGINT to the main
thread: a Ctrl-C in the terminal, which reaches the whole process group, stops the run,
which ends them, rather than killing them mid-trailer (a healthy video recorded as broken).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from t12k.errors import describe
from t12k.pipeline.extract.config import ExtractConfig
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.normalizer import TARGET
from t12k.pipeline.fetch.pacing import Pacer
from t12k.pipeline.fetch.procpool import WorkerPool
from t12k.pipeline.run import stages
from t12k.pipeline.run.config import STAGES, Layout, RunConfig
from t12k.pipeline.run.scheduler import Ticket
from t12k.pipeline.run.stages import Outcome
from t12k.pipeline.shots_command import ShotsConfig


class LocalBackend:
    """Threads and processes of this machine for the calls of each stage (see `Backend`)."""

    def __init__(
        self,
        layout: Layout,
        run: RunConfig,
        fetch: FetchConfig,
        shots: ShotsConfig,
        extract: ExtractConfig,
        log: Callable[[str], None] = print,
        runners: list | None = None,
    ) -> None:
        self.layout, self.fetch = layout, fetch
        self.slots = {"download": fetch.workers, "normalize": fetch.processes, "shots": 1, "features": 1}
        self.group = {"features": run.group}
        self.attempts = 1  # a failed call here is a bug in a stage, not a lost worker
        self.halt = threading.Event()
        self.pacer = Pacer()
        # the stores are opened (and the backbones loaded) here, so that a store made with
        # other settings stops the run before any work; the detector loads on first use
        self.shots = stages.Shots(layout.shots, shots, run.faults)
        one = self.shots if run.decode == "once" else None  # the feature stage finds the shots too
        self.features = stages.Features(layout.features, layout.shots, extract, run.faults, log, one, runners)
        self.pool = WorkerPool(TARGET)
        self.threads = {
            s: ThreadPoolExecutor(
                max_workers=self.slots[s],
                thread_name_prefix=f"t12k-{s}",
                initializer=_without_sigint if s in ("shots", "features") else None,
            )
            for s in STAGES
        }

    def submit(self, stage: str, tickets: list[Ticket]) -> Future:
        call = {
            "download": self._download,
            "normalize": self._normalize,
            "shots": self._shots,
            "features": self._features,
        }[stage]
        return self.threads[stage].submit(call, tickets)

    def _download(self, tickets: list[Ticket]) -> list[Outcome]:
        (t,) = tickets
        return [stages.download(t.item, self.layout.videos, self.fetch, self.pacer, self.halt)]

    def _normalize(self, tickets: list[Ticket]) -> list[Outcome]:
        (t,) = tickets
        return [stages.normalize(t.download, self.layout.videos, self.fetch, self.pool)]

    def _shots(self, tickets: list[Ticket]) -> list[Outcome]:
        h = self.halt
        return [Outcome(t.mid, "cancelled") if h.is_set() else self.shots(t.mid, t.video, stop=h) for t in tickets]

    def _features(self, tickets: list[Ticket]) -> list[Outcome]:
        if self.halt.is_set():
            return [Outcome(t.mid, "cancelled") for t in tickets]
        return self.features([(t.mid, str(t.video)) for t in tickets], self.halt)

    def wait(self, handles: list[Future], timeout: float) -> list[Future]:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Future) -> list[Outcome]:
        return handle.result()

    def lost(self, handle: Future, exc: BaseException) -> str | None:
        return None

    def failure(self, exc: BaseException) -> str:
        return f"unexpected {describe(exc)}"

    def stop(self) -> None:
        """Stop downloads and ffmpeg now, the model calls at their next batch (or frame)."""
        self.halt.set()
        self.pool.stop()

    def close(self) -> None:
        self.stop()
        for pool in self.threads.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self.pool.close()


def _without_sigint() -> None:
    """A model thread leaves SIGINT to the main thread, and so do the processes it starts
    (decode workers, ffmpeg), which inherit its signal mask (see the module's note). POSIX only."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
