"""Checking whole stores (`t12k verify STORE...`): every trailer's arrays read, decoded and
compared with the checksums their commits recorded, and held to their kind's contract (dtype,
shape, every chunk file, values: finite features, ordered shots within their frames), checksums
or not."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from t12k.errors import T12kError
from t12k.storage.fastread import default_threads
from t12k.storage.features import FeatureStore
from t12k.storage.shots import ShotStore
from t12k.storage.zarrstore import ArrayStore

SHOWN = 20  # damaged trailers listed by name in a report


@dataclass
class VerifyReport:
    """What `verify_store` found: the trailers checked, how many record a checksum, and the
    damaged ones with their reasons (in id order)."""

    path: Path
    kind: str
    trailers: int
    checksummed: int
    redo: str
    damaged: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def lines(self, shown: int = SHOWN) -> list[str]:
        """The summary: one line for the store, one per damaged trailer (at most `shown`), the fix."""
        head = f"{self.path}: {self.kind} store, {self.trailers} trailers, "
        head += f"{len(self.damaged)} damaged" if self.damaged else "all sound"
        if self.checksummed < self.trailers:
            head += (
                f" ({self.trailers - self.checksummed} record no checksum: written before t12k recorded them, "
                "only decoding, chunk files and contracts checked)"
            )
        out = [head]
        out += [f"  {mid}: {reason}" for mid, reason in list(self.damaged.items())[:shown]]
        if len(self.damaged) > shown:
            out.append(f"  ... and {len(self.damaged) - shown} more")
        if self.damaged:
            out.append(f"  to redo them: {self.redo}")
        return out


def open_store(path: str | os.PathLike[str]) -> ArrayStore:
    """The feature or shots store at `path` (told apart by its attributes), opened read-only."""
    try:
        return ShotStore.open(path)
    except T12kError:
        return FeatureStore.open(path)


def verify_store(
    path: str | os.PathLike[str], threads: int | None = None, progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Check every trailer of the store at `path` (`ArrayStore.check`) in `threads` threads;
    `progress` is called with 1 per trailer checked. T12kError if it cannot be opened."""
    store = open_store(path)
    ids = store.ids()
    report = VerifyReport(store.path, store.kind, len(ids), 0, store.redo)
    with ThreadPoolExecutor(threads or default_threads(), thread_name_prefix="t12k-verify") as pool:
        for mid, (reason, checksummed) in zip(ids, pool.map(store.check, ids)):
            report.checksummed += checksummed
            if reason is not None:
                report.damaged[mid] = reason
            if progress:
                progress(1)
    return report
