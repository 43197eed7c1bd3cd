"""`t12k.Pipeline`: a list of stages of one's own, run by the engines `t12k run` runs on.

The stages may be t12k's own (`t12k.pipeline.run.stages`: `Download`, `Normalize`,
`Shots`, `Features`) or a user's (`t12k.Stage` subclasses); the scheduler takes every
trailer through them in order with bounded queues between them, on this machine's threads
(`engine="local"`) or a Ray cluster's tasks and actors (`engine="ray"`), and records each
trailer as done, skipped or failed with its stage and reason (`Tally`). Nothing is printed
unless `progress` is asked for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from t12k.errors import T12kError
from t12k.pipeline.run.config import RunConfig
from t12k.pipeline.run.scheduler import Backend, Records, Scheduler
from t12k.pipeline.stage import Outcome, Stage, Ticket
from t12k.pipeline.summary import RunSummary
from t12k.storage import Manifest

__all__ = ["Pipeline", "Tally", "open_engine", "run_stages"]


class Tally:
    """The scheduler's `Records` for a pipeline: a trailer is done when its last stage is ok,
    skipped when every stage skipped it, failed with 'stage: reason' at its first failure
    (the reason alone when the pipeline has one stage, as a stage command says it). A stage
    with a manifest gets a row per trailer it worked on, as the stage commands write them:
    ok with its seconds and fields, failed with its reason; none when skipped or cancelled."""

    def __init__(
        self, names: list[str], total: int, progress: bool = False, manifests: Mapping[str, Manifest] | None = None,
        name: str = "pipeline",
    ) -> None:  # fmt: skip
        self.names, self.summary, self.manifests = names, RunSummary(name), dict(manifests or {})
        self.worked: set[str] = set()
        self.ticked: set[str] = set()  # trailers the last stage said it finished (`Stage.progress`)
        self.last = names[-1]
        self.bar = tqdm(total=total, desc=name, unit="trailer", disable=not progress, leave=False)

    def tick(self, out: Outcome) -> None:
        """The last stage finished a trailer within a call still running: its manifest row is
        written and the bar moves now (a call stopped by Ctrl-C keeps the rows of what it committed)."""
        if out.mid not in self.ticked:
            self.ticked.add(out.mid)
            self._row(self.last, out)
            self.bar.update(1)

    def _row(self, stage: str, out: Outcome) -> None:
        manifest = self.manifests.get(stage)
        if manifest is None:
            return
        if out.status == "ok":
            manifest.record(out.mid, "ok", seconds=f"{out.seconds:.2f}", **out.fields)
        elif out.status in ("failed", "rejected"):
            manifest.record(out.mid, out.status, out.reason, seconds=f"{out.seconds:.2f}")

    def entered(self, stage: str, n: int = 1) -> None:
        pass

    @property
    def halted(self) -> bool:
        return False

    def record(self, stage: str, ticket: Ticket, out: Outcome, stopping: bool) -> bool:
        if out.status == "ok":
            self.worked.add(out.mid)
        if not (stage == self.last and out.mid in self.ticked):  # (a ticked trailer's row is written)
            self._row(stage, out)
        if out.status in ("failed", "rejected"):
            self.summary.failed[out.mid] = out.reason if len(self.names) == 1 else f"{stage}: {out.reason}"
        elif out.goes_on and stage == self.names[-1]:
            (self.summary.done if out.mid in self.worked else self.summary.skipped).append(out.mid)
            self.summary.outputs[out.mid] = out.data
        if (not out.goes_on or stage == self.names[-1]) and out.mid not in self.ticked:
            self.bar.update(1)
        return out.goes_on


class Pipeline:
    """Stages run in their order over trailers (see the module's note).

    >>> class Size(t12k.Stage):
    ...     name = "size"
    ...     def process(self, tickets, stop=None):
    ...         return [t12k.Outcome(t.mid, "ok", data=os.path.getsize(t.data)) for t in tickets]
    >>> class Kilobytes(t12k.Stage):
    ...     name = "kilobytes"
    ...     def process(self, tickets, stop=None):
    ...         return [t12k.Outcome(t.mid, "ok", data=t.data // 1024) for t in tickets]
    >>> summary = t12k.Pipeline([Size(), Kilobytes()]).run([("a1", video), ("zz", "gone.mp4")])
    >>> summary.done, summary.outputs == {"a1": os.path.getsize(video) // 1024}
    (['a1'], True)
    >>> summary.failed["zz"]  # a stage that raises fails the trailers of that call
    'size: unexpected FileNotFoundError: No such file or directory'
    """

    def __init__(self, stages: Sequence[Stage], queue: int = 4) -> None:
        stages = list(stages)
        bad = [s for s in stages if not isinstance(s, Stage)]
        if not stages or bad:
            raise T12kError(f"a Pipeline takes a list of t12k.Stage objects, not {bad[0] if bad else 'nothing'!r}")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise T12kError(f"two stages of the pipeline share a name ({', '.join(names)}); give each its own `name`")
        if queue < 1:
            raise T12kError(f"queue {queue} must be at least 1 (the trailers that may wait between two stages)")
        self.stages, self.queue = stages, queue

    def run(
        self,
        items: Iterable[tuple[str, Any] | str | os.PathLike[str]],
        engine: str = "local",
        *,
        address: str | None = None,
        progress: bool = False,
        manifests: Mapping[str, Manifest] | None = None,
        name: str = "pipeline",
    ) -> RunSummary:
        """Take every item through the stages: (id, input) pairs, or paths (the id is the
        file's name without its suffix); the first stage gets the input as `Ticket.data`. The
        summary's `outputs` holds what the last stage made of each trailer that got through.
        A stage that raises fails that call's trailers (`unexpected ...`), and the others go on.
        `manifests`: a `Manifest` per stage name, to record its rows in (compacted at the end);
        `name`: the summary's and the progress bar's."""
        entries = [(self.stages[0].name, Ticket(mid, value, value)) for mid, value in _pairs(items)]
        config = RunConfig(engine=engine, address=address)
        tally = Tally([s.name for s in self.stages], len(entries), progress, manifests, name)
        t0 = time.perf_counter()
        last = self.stages[-1]
        if config.engine == "local":  # rows as trailers commit, and a bar that moves when asked
            last.progress = tally.tick
        try:
            not_attempted = run_stages(
                self.stages, entries, tally, max(self.queue, self.stages[0].batch), config
            )  # a whole first call admitted
        finally:
            last.progress = None
            tally.bar.close()
            for manifest in tally.manifests.values():
                manifest.compact()
        tally.summary.not_attempted, tally.summary.seconds = not_attempted, time.perf_counter() - t0
        return tally.summary


def open_engine(stages: Sequence[Stage], config: RunConfig) -> Backend:
    """The engine `config.engine` names, with `stages` prepared and set up on it."""
    if config.engine == "ray":
        from t12k.pipeline.run.ray_engine import RayBackend

        return RayBackend(stages, config)
    from t12k.pipeline.run.local import LocalBackend

    return LocalBackend(stages)


def run_stages(
    stages: Sequence[Stage],
    entries: list[tuple[str, Ticket]],
    records: Records,
    queue: int = RunConfig.queue,
    config: RunConfig | None = None,
) -> int:
    """Take (first stage, ticket) entries through `stages` on the engine of `config` (this
    machine's by default), recording in `records`; the trailers not attempted (stopped early).
    The engine is closed on the way out, whatever happens."""
    backend = open_engine(stages, config or RunConfig())
    try:
        return Scheduler(stages, backend, records, queue).run(entries)
    finally:
        backend.close()


def _pairs(items: Iterable[tuple[str, Any] | str | os.PathLike[str]]) -> list[tuple[str, Any]]:
    pairs = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            pairs.append((str(item[0]), item[1]))
        elif isinstance(item, (str, os.PathLike)):
            pairs.append((Path(item).stem, os.fspath(item)))
        else:
            raise T12kError(f"cannot read the item {item!r}; give (id, input) pairs or paths")
    ids = [mid for mid, _ in pairs]
    if len(set(ids)) != len(ids):
        raise T12kError("two items share an id; give each trailer its own id")
    return pairs
