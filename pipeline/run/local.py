"""The local engine: every stage of a pipeline on this machine, each with workers of its own.

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
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from t12k.errors import describe
from t12k.pipeline.stage import Outcome, Stage, Ticket


class LocalBackend:
    """Threads and processes of this machine for the calls of any list of stages (see
    `scheduler.Backend`): each stage gets `slots` threads; every stage is prepared and set up
    here, once, before the first call (the stores are opened and the models loaded, so that a
    store made with other settings stops the run before any work)."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        # one stage (`t12k shots`, `t12k extract`): its calls run in the calling thread, as
        # there is nothing to overlap them with, and a signal reaches the work itself
        self.inline = len(stages) == 1 and stages[0].slots <= 1
        self.stages = {s.name: s for s in stages}
        self.slots = {s.name: max(1, s.slots) for s in stages}
        self.attempts = 1  # a failed call here is a bug in a stage, not a lost worker
        self.halt = threading.Event()
        self.threads: dict[str, ThreadPoolExecutor] = {}
        try:
            for s in stages:
                s.prepare()
                s.setup()
        except BaseException:
            self.close()
            raise
        self.threads = (
            {}
            if self.inline
            else {
                s.name: ThreadPoolExecutor(
                    max_workers=self.slots[s.name],
                    thread_name_prefix=f"t12k-{s.name}",
                    initializer=_without_sigint if s.stateful else None,
                )
                for s in stages
            }
        )

    def submit(self, stage: str, tickets: list[Ticket]) -> Future:
        if not self.inline:
            return self.threads[stage].submit(self.stages[stage].process, tickets, self.halt)
        done: Future = Future()
        try:
            done.set_result(self.stages[stage].process(tickets, self.halt))
        except Exception as exc:  # as a thread's call would: the scheduler records its trailers failed
            done.set_exception(exc)
        return done

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
        for s in self.stages.values():
            s.stop()

    def close(self) -> None:
        self.stop()
        for pool in self.threads.values():
            pool.shutdown(wait=True, cancel_futures=True)
        for s in self.stages.values():
            s.teardown()


def _without_sigint() -> None:
    """A model thread leaves SIGINT to the main thread, and so do the processes it starts
    (decode workers, ffmpeg), which inherit its signal mask (see the module's note). POSIX only."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
