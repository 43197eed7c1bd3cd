"""The scheduler of `t12k run`, the same for every engine: trailers move from stage to stage
through bounded queues, and an engine (`Backend`) runs each stage's calls where it runs them
(threads and processes here, tasks and actors on a Ray cluster).

Backpressure: a stage starts a call only while the queue of the stage after it holds fewer
than `bound` trailers, so a stage that falls behind holds back the ones before it, and new
trailers enter the run only while their first stage's queue has room. Downloaded files
waiting for a normalizer, decoded frames and features in memory stay bounded however long the
list is. A call that fails as a whole (its worker or node died more times than the engine
retries it) is tried again trailer by trailer when it held several, so that one poison trailer
fails alone; a single trailer's failed call is recorded failed with its stage and reason.
Once the run is stopping, a failure is not recorded: the stop may have caused it (a decoder
or worker it ended reads like a broken video), and the next run tries the trailer again.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from t12k.pipeline.stage import Outcome, Stage, Ticket

_WAIT = 0.5  # seconds the scheduler waits for a call to finish before looking around again
_AGAIN = 1.0  # seconds before a call that found its actor unreachable is tried again
_MOST_AGAIN = 120  # such retries of one trailer and stage before they count as an attempt

__all__ = ["Backend", "Records", "Scheduler", "Ticket"]


class Backend(Protocol):
    """Where the calls of each stage run (an engine: `local.LocalBackend`, `ray_engine.RayBackend`)."""

    slots: dict[str, int]  # calls of a stage at once
    attempts: int  # calls of a stage a trailer gets when their worker dies

    def lost(self, handle: Any, exc: BaseException) -> str | None:
        """'attempt' when a call failed because its worker, actor or node died while it ran;
        'again' when it never ran (its actor could not be reached for now); None when the call
        itself failed."""
        ...

    def submit(self, stage: str, tickets: list[Ticket]) -> Any: ...

    def wait(self, handles: list, timeout: float) -> list: ...

    def result(self, handle: Any) -> list[Outcome]: ...

    def failure(self, exc: BaseException) -> str: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class Records(Protocol):
    """What the scheduler tells of each trailer (the run's `Ledger`, a pipeline's `Tally`)."""

    def entered(self, stage: str, n: int = 1) -> None:
        """`n` trailers started `stage` (negative: they left it to be tried again)."""
        ...

    def record(self, stage: str, ticket: Ticket, out: Outcome, stopping: bool) -> bool:
        """Record one trailer's outcome of `stage`; whether it goes on to the next stage."""
        ...

    @property
    def halted(self) -> bool:
        """True once no new trailer may enter the first stage (a site that blocks downloads)."""
        ...


class Scheduler:
    """Moves tickets through `stages`, in their order, with `backend`, recording each outcome
    in `records`."""

    def __init__(self, stages: Sequence[Stage], backend: Backend, records: Records, bound: int):
        self.backend, self.records, self.bound = backend, records, max(1, bound)
        self.names = [s.name for s in stages]
        self.batch = {s.name: max(1, s.batch) for s in stages}
        self.next: dict[str, str | None] = dict(zip(self.names, [*self.names[1:], None]))
        self.ready: dict[str, deque[Ticket]] = {s: deque() for s in self.names}
        self.inflight: dict[Any, tuple[str, list[Ticket]]] = {}
        self.calls = dict.fromkeys(self.names, 0)
        self.source: deque[tuple[str, Ticket]] = deque()
        self.later: list[tuple[float, str, Ticket]] = []  # (when, stage, ticket) to try again
        self.stopping = False
        self.dropped = 0  # trailers that were not let into the first stage (`Records.halted`)

    def run(self, entries: list[tuple[str, Ticket]]) -> int:
        """Take every (first stage, ticket) through its stages; the number not attempted (the
        run stopped early). Ctrl-C (or any error) stops the engine, records what finished,
        and re-raises."""
        self.source = deque(entries)
        try:
            while self.source or any(self.ready.values()) or self.inflight or self.later:
                self._admit()
                self._launch()
                if not self.inflight:
                    if not self.later:  # nothing could start: the run was stopped (blocked by the site)
                        break
                    time.sleep(max(0.0, min(when for when, _, _ in self.later) - time.monotonic()))
                    continue
                for handle in self.backend.wait(list(self.inflight), _WAIT):
                    self._finish(handle)
        except BaseException:
            self.stopping = True
            self.backend.stop()
            while self.inflight:
                for handle in self.backend.wait(list(self.inflight), _WAIT):
                    self._finish(handle)
            raise
        return self.not_attempted

    @property
    def not_attempted(self) -> int:
        """Trailers that never started their next stage (the run stopped early)."""
        waiting = len(self.source) + sum(len(r) for r in self.ready.values()) + len(self.later)
        return waiting + self.dropped

    def _admit(self) -> None:
        """Trailers due to be tried again to the front of their queue; new trailers into their
        first stage's queue, in list order, while it has room."""
        now = time.monotonic()
        for item in [x for x in self.later if x[0] <= now]:
            self.later.remove(item)
            self.ready[item[1]].appendleft(item[2])
        if self.records.halted:
            first = self.names[0]
            kept = deque(e for e in self.source if e[0] != first)
            self.dropped += len(self.ready[first]) + len(self.source) - len(kept)
            self.ready[first].clear()  # blocked by the site: no more downloads
            self.source = kept
        while self.source and len(self.ready[self.source[0][0]]) < self.bound:
            stage, ticket = self.source.popleft()
            self.ready[stage].append(ticket)

    def _launch(self) -> None:
        """Start calls, last stage first, while a stage has a free slot, trailers waiting and
        room in the queue after it."""
        for stage in reversed(self.names):
            nxt = self.next[stage]
            slots, most = self.backend.slots[stage], self.batch[stage]
            queue = self.ready[stage]
            while queue and self.calls[stage] < slots and (nxt is None or len(self.ready[nxt]) < self.bound):
                tickets = [queue.popleft()]
                while queue and len(tickets) < most and not tickets[0].alone and not queue[0].alone:
                    tickets.append(queue.popleft())
                if stage == self.names[0]:
                    tickets[0].t0 = time.perf_counter()
                self.inflight[self.backend.submit(stage, tickets)] = (stage, tickets)
                self.calls[stage] += 1
                self.records.entered(stage, len(tickets))

    def _finish(self, handle: Any) -> None:
        stage, tickets = self.inflight.pop(handle)
        self.calls[stage] -= 1
        try:
            outcomes = self.backend.result(handle)
        except Exception as exc:
            if self.stopping:
                outcomes = [Outcome(t.mid, "cancelled") for t in tickets]
            else:
                outcomes = self._lost(stage, tickets, self.backend.lost(handle, exc), exc)
                self.records.entered(stage, -outcomes.count(None))  # they enter again when tried again
        for ticket, out in zip(tickets, outcomes):
            if out is None:
                continue
            out = _unfailed(out) if self.stopping else out
            nxt = self.next[stage]
            if self.records.record(stage, ticket, out, self.stopping) and not self.stopping and nxt is not None:
                ticket.data = out.data
                self.ready[nxt].append(ticket)

    def _lost(self, stage: str, tickets: list[Ticket], kind: str | None, exc: Exception) -> list[Outcome | None]:
        """What becomes of the trailers of a call that failed as a whole (`kind` as `Backend.lost`
        says): tried again (None), or failed."""
        if kind is not None and len(tickets) > 1:  # each on its own: a poison trailer then fails alone
            for t in reversed(tickets):
                t.alone = True
                self.ready[stage].appendleft(t)
            return [None] * len(tickets)
        if kind is None:  # the call itself failed: its trailers fail with its reason
            return [Outcome(t.mid, "failed", self.backend.failure(exc)) for t in tickets]
        (t,) = tickets
        if kind == "again" and t.waits < _MOST_AGAIN:
            t.waits += 1
            self.later.append((time.monotonic() + _AGAIN, stage, t))
            return [None]
        t.tries[stage] = t.tries.get(stage, 0) + 1
        if t.tries[stage] < self.backend.attempts:
            t.alone = True
            self.ready[stage].appendleft(t)
            return [None]
        return [Outcome(t.mid, "failed", self.backend.failure(exc))]


def _unfailed(out: Outcome) -> Outcome:
    """A failure that came back while the run was stopping, as cancelled (see the module's
    note); the shot stage's outcome riding along with a feature outcome too."""
    data = _unfailed(out.data) if isinstance(out.data, Outcome) else out.data
    if out.status != "failed":
        return dataclasses.replace(out, data=data)
    return dataclasses.replace(out, status="cancelled", reason="", data=data)
