"""The run summary every batch command prints (fetch, shots, extract, download-reps), and the
per-trailer loop of the stages that take one trailer at a time (shots): skip what is done,
record what failed with its reason, go on. fetch and extract schedule their own work (downloads
in threads, decoding in worker processes) and record their items the same way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from t12k.errors import T12kError, describe
from t12k.storage import Manifest

_SHOWN_FAILURES = 5


@dataclass
class RunSummary:
    """How a batch run ended: the one summary of fetch, shots, extract and download-reps.

    `totals` are figures worth a word (MB written, clips, ...); `notes` are extra sentences;
    `stopped` says why the run ended before its last item, and `not_attempted` how many it left.
    """

    stage: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    totals: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stopped: str | None = None
    not_attempted: int = 0
    words: tuple[str, str] = ("done", "already done")  # how `done` and `skipped` read in the text
    outputs: dict[str, Any] = field(default_factory=dict)  # `Pipeline.run`: the last stage's output per trailer

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stopped

    @property
    def total(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed) + self.not_attempted

    def text(self) -> str:
        done, skipped = self.words
        parts = [
            f"{self.stage}: {len(self.done)} {done}, {len(self.skipped)} {skipped}, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s"
        ]
        if self.totals:
            parts.append("; ".join(f"{k} {v}" for k, v in self.totals.items()))
        parts += [n.rstrip(".") for n in self.notes]
        if self.stopped:
            parts.append(f"Stopped early, {self.not_attempted} not attempted: {self.stopped}")
        if self.failed:
            shown = list(self.failed.items())[:_SHOWN_FAILURES]
            more = len(self.failed) - _SHOWN_FAILURES
            parts.append(
                "Failed: "
                + "; ".join(f"{k}: {v}" for k, v in shown)
                + (f" (and {more} more, see the manifest)" if more > 0 else "")
            )
        return ". ".join(parts) + "."


def run_items(
    stage: str,
    ids: Iterable[str],
    work: Callable[[str], dict[str, Any]],
    is_done: Callable[[str], bool],
    manifest: Manifest | None = None,
    progress: bool = True,
) -> RunSummary:
    """Call `work(id)` for every id not `is_done`; a T12kError (or an OS, value or runtime
    error) marks the id failed with its one-line reason and the loop goes on. `work` returns
    fields for the manifest row."""
    ids = list(ids)
    summary = RunSummary(stage)
    t0 = time.perf_counter()
    for mid in tqdm(ids, desc=stage, unit="trailer", disable=not progress, leave=False):
        if is_done(mid):
            summary.skipped.append(mid)
            continue
        t1 = time.perf_counter()
        try:
            fields = work(mid) or {}
        except (T12kError, OSError, ValueError, RuntimeError) as exc:
            reason = describe(exc)
            summary.failed[mid] = reason
            if manifest is not None:
                manifest.record(mid, "failed", reason, seconds=f"{time.perf_counter() - t1:.2f}")
            continue
        summary.done.append(mid)
        if manifest is not None:
            manifest.record(mid, "ok", seconds=f"{time.perf_counter() - t1:.2f}", **fields)
    if manifest is not None:
        manifest.compact()
    summary.seconds = time.perf_counter() - t0
    return summary
