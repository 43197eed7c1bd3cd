"""The per-trailer loop every stage shares: skip what is done, record what failed, go on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from t12k.errors import T12kError
from t12k.storage import Manifest


@dataclass
class StageSummary:
    stage: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    totals: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        parts = [
            f"{self.stage}: {len(self.done)} done, {len(self.skipped)} already done, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s"
        ]
        if self.totals:
            parts.append("; ".join(f"{k} {v}" for k, v in self.totals.items()))
        if self.failed:
            shown = list(self.failed.items())[:5]
            parts.append(
                "failed: "
                + "; ".join(f"{k}: {v}" for k, v in shown)
                + (f" (and {len(self.failed) - 5} more, see the manifest)" if len(self.failed) > 5 else "")
            )
        return ". ".join(parts) + "."


def run_items(
    stage: str,
    ids: Iterable[str],
    work: Callable[[str], dict[str, Any]],
    is_done: Callable[[str], bool],
    manifest: Manifest | None = None,
    progress: bool = True,
) -> StageSummary:
    """Call `work(id)` for every id not `is_done`; a T12kError (or a decoding error) marks
    the id failed with its one-line reason and the loop goes on. `work` returns fields for
    the manifest row."""
    ids = list(ids)
    summary = StageSummary(stage)
    t0 = time.perf_counter()
    bar = tqdm(ids, desc=stage, unit="trailer", disable=not progress, leave=False)
    for mid in bar:
        if is_done(mid):
            summary.skipped.append(mid)
            continue
        t1 = time.perf_counter()
        try:
            fields = work(mid) or {}
        except KeyboardInterrupt:
            raise
        except T12kError as exc:
            reason = str(exc)
        except (OSError, ValueError, RuntimeError) as exc:  # unexpected per-item failure: record it
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            summary.done.append(mid)
            if manifest is not None:
                manifest.record(mid, "ok", seconds=f"{time.perf_counter() - t1:.2f}", **fields)
            continue
        summary.failed[mid] = reason
        if manifest is not None:
            manifest.record(mid, "failed", reason, seconds=f"{time.perf_counter() - t1:.2f}")
    if manifest is not None:
        manifest.compact()
    summary.seconds = time.perf_counter() - t0
    return summary
