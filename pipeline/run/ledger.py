"""What a run records: each stage's manifest rows (the rows the stage commands write), the one
progress display with every stage's trailers in and done, and the summary with each stage's
busy share. Only the driver writes here; the workers commit the stores."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from t12k.pipeline.fetch.ids import FetchItem
from t12k.pipeline.fetch.records import MANIFEST_FIELDS, FetchRecords, FetchSummary, Recorder
from t12k.pipeline.run.config import STAGES, Layout
from t12k.pipeline.stage import Outcome, Ticket
from t12k.pipeline.summary import RunSummary
from t12k.storage import Manifest

_SHORT = {"download": "dl", "normalize": "norm", "shots": "shots", "features": "feat"}


class _NoBar:
    """fetch's Recorder counts on a bar of its own; the run has one bar for every stage."""

    def update(self, *_: object) -> None:
        pass

    def set_postfix(self, **_: object) -> None:
        pass


@dataclass
class StageCount:
    entered: int = 0
    done: int = 0
    busy: float = 0.0  # seconds of work, all workers together


@dataclass
class Ledger:
    layout: Layout
    total: int
    progress: bool = True
    slots: dict[str, int] = field(default_factory=dict)  # workers per stage, for the busy share
    counts: dict[str, StageCount] = field(default_factory=lambda: {s: StageCount() for s in STAGES})
    worked: set[str] = field(default_factory=set)  # trailers some stage did work on in this run
    rejected: dict[str, str] = field(default_factory=dict)  # kept out by the quality rules
    one_decode: bool = False  # the feature stage finds the shots too (its outcome carries theirs)

    def __post_init__(self) -> None:
        lay = self.layout
        self.fetch = FetchSummary(out_dir=lay.videos)
        self.fetch_manifest = Manifest(lay.videos / "manifest.csv", MANIFEST_FIELDS)
        self.recorder = Recorder(self.fetch_manifest, self.fetch, _NoBar())
        self.fetch_records = FetchRecords(self.recorder)
        self.shots_manifest = Manifest(lay.shots_manifest, ("frames", "shots"))
        self.features_manifest = Manifest(lay.features_manifest, ("clips", "frames"))
        self.summary = RunSummary("run")
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=self.total, desc="run", unit="trailer", disable=not self.progress, leave=False)

    def restore(self, feature_stores: list[Path]) -> None:
        """Rows for the trailers the stores hold, sound, and the manifests lack (a run killed
        between a commit and its row, however and whenever it ended): every trailer in the
        shots store has its shots row, every trailer in each of `feature_stores` its features
        row. Only rows that say ok are added, from what is in the stores."""
        from t12k.storage import FeatureStore, ShotStore

        shots = ShotStore.open(self.layout.shots) if self.layout.shots.is_dir() else None
        for mid in shots.ids() if shots is not None else []:
            assert shots is not None  # ids come from the store
            if self.shots_manifest.status(mid) != "ok" and shots.is_done(mid):
                preds, found = shots.predictions(mid), shots.shots(mid)
                self.shots_manifest.record(mid, "ok", seconds="", frames=len(preds), shots=len(found))
        if not feature_stores or not all(p.is_dir() for p in feature_stores):
            return
        stores = [FeatureStore.open(p) for p in feature_stores]
        for mid in sorted(set.intersection(*(set(s.ids()) for s in stores))):
            if self.features_manifest.status(mid) != "ok" and all(s.is_done(mid) for s in stores):
                frames = len(shots.predictions(mid)) if shots is not None and mid in shots else ""
                self.features_manifest.record(mid, "ok", seconds="", clips=len(stores[0].read(mid)), frames=frames)

    # ---- progress -------------------------------------------------------------------------------

    def entered(self, stage: str, n: int = 1) -> None:
        self.counts.setdefault(stage, StageCount()).entered += n
        if stage == "features" and self.one_decode:
            self.counts["shots"].entered += n
        self._show()

    @property
    def halted(self) -> bool:
        """The site blocks downloads: no new trailer starts one."""
        return bool(self.summary.stopped)

    def record(self, stage: str, t: Ticket, out: Outcome, stopping: bool) -> bool:
        """Record one trailer's outcome of `stage` (the scheduler's `Records`); whether it goes on."""
        if stage in ("download", "normalize"):  # fetch's own records, then the run's count
            self._stage_done(stage, out)
            goes = self.fetch_records.record(stage, t, out, stopping)
            if self.fetch.stopped:
                self.summary.stopped = self.fetch.stopped
            if not goes and out.status != "cancelled":
                self._leave(out.mid, f"{stage}: {out.reason}", out.status == "rejected")
            return goes
        if stage == "shots":
            return self.shot(out)
        if stage != "features":  # a stage of the run's list that keeps no manifest: counted, and failures said
            self._stage_done(stage, out)
            if out.status == "failed":
                self._leave(out.mid, f"{stage}: {out.reason}")
            return out.goes_on
        if self.one_decode:  # the shot stage's outcome rides along; a lost call's shots may be in the store
            shot = out.data if isinstance(out.data, Outcome) else self.found_shots(out.mid)
            if not self.shot(shot or Outcome(out.mid, out.status, out.reason)):
                return False
        self.featured(out)
        return False

    def _show(self) -> None:
        if self.progress:
            self.bar.set_postfix_str(
                " ".join(f"{_SHORT.get(s, s)} {c.done}/{c.entered}" for s, c in self.counts.items()), refresh=False
            )

    def _stage_done(self, stage: str, out: Outcome) -> None:
        c = self.counts.setdefault(stage, StageCount())
        c.done += 1
        c.busy += out.seconds
        if out.status == "ok":
            self.worked.add(out.mid)
        self._show()

    def _leave(self, mid: str, failed: str | None = None, rejected: bool = False) -> None:
        """A trailer is through: every stage done, or one failed (`failed`: 'stage: reason'), or
        kept out by the quality rules (`rejected`, not a failure, as in `t12k fetch`)."""
        if rejected:
            self.rejected[mid] = failed or ""
        elif failed is not None:
            self.summary.failed[mid] = failed
        elif mid in self.worked:
            self.summary.done.append(mid)
        else:
            self.summary.skipped.append(mid)
        self.bar.update(1)

    # ---- what each stage did ----------------------------------------------------------------

    def fetch_skipped(self, items: list[FetchItem], still: list[FetchItem]) -> None:
        """fetch's own done check recorded the items not in `still` (skipped, rejected, no URL);
        those that did not go on leave the run here."""
        left, skipped = {it.id for it in still}, set(self.fetch.skipped)
        for it in items:
            if it.id in left or it.id in skipped:
                continue
            rejected = it.id in self.fetch.rejected
            reason = self.fetch.rejected[it.id] if rejected else self.fetch.failed.get(it.id, "")
            self._leave(it.id, f"download: {reason}", rejected)

    def shot(self, out: Outcome) -> bool:
        """Record a shot detection (as `t12k shots`: no row when skipped); whether the trailer goes on."""
        self._stage_done("shots", out)
        found = out.status == "skipped" and out.fields  # found in the store by one decode (`Features.one_decode`)
        if found and self.shots_manifest.status(out.mid) != "ok":  # committed by a call that was lost
            self.shots_manifest.record(out.mid, "ok", seconds="", **out.fields)
        if out.status == "ok":
            self.shots_manifest.record(out.mid, "ok", seconds=f"{out.seconds:.2f}", **out.fields)
        elif out.status == "failed":
            self.shots_manifest.record(out.mid, "failed", out.reason, seconds=f"{out.seconds:.2f}")
            # `t12k extract` would find the video without shots and record it failed too
            self.features_manifest.record(
                out.mid, "failed", f"{out.mid} is not in the shots store: its shot detection failed ({out.reason})"
            )
            self._leave(out.mid, f"shots: {out.reason}")
        return out.goes_on

    def found_shots(self, mid: str) -> Outcome | None:
        """The shots of `mid` in the shots store (committed by a one-decode call that was then
        lost), as a skipped shot outcome with its manifest fields; None when absent or unsound."""
        from t12k.storage import ShotStore

        if not self.layout.shots.is_dir():
            return None
        store = ShotStore.open(self.layout.shots)
        if not store.is_done(mid):
            return None
        return Outcome(mid, "skipped", fields={"frames": len(store.predictions(mid)), "shots": len(store.shots(mid))})

    def featured(self, out: Outcome) -> None:
        """Record a feature extraction (as `t12k extract`: no row when skipped); the trailer is through."""
        self._stage_done("features", out)
        if out.status == "ok":
            self.features_manifest.record(out.mid, "ok", seconds=f"{out.seconds:.2f}", **out.fields)
            self._leave(out.mid)
        elif out.status == "skipped":
            self._leave(out.mid)
        elif out.status == "failed":
            self.features_manifest.record(out.mid, "failed", out.reason)
            self._leave(out.mid, f"features: {out.reason}")

    # ---- the end ----------------------------------------------------------------------------------

    def close(self, items: list[FetchItem], not_attempted: int = 0) -> RunSummary:
        """Compact the manifests (fetch's rows in list order) and finish the summary."""
        self.bar.close()
        order = [it.id for it in items if it.id in self.fetch_manifest.rows]
        rows = self.fetch_manifest.rows
        self.fetch_manifest.rows = {**{m: rows[m] for m in order}, **rows}
        for m in (self.fetch_manifest, self.shots_manifest, self.features_manifest):
            m.compact()
        s = self.summary
        s.seconds = time.perf_counter() - self.t0
        s.not_attempted = not_attempted
        s.totals = {"busy": ", ".join(f"{st} {share:.0%}" for st, share in self.busy_shares().items())}
        s.notes.append("Trailers through each stage: " + ", ".join(f"{st} {c.done}" for st, c in self.counts.items()))
        if self.rejected:
            s.notes.append(f"{len(self.rejected)} kept out by the quality rules (see {self.fetch_manifest.path})")
        s.notes.append(
            f"Videos in {self.layout.videos}, shots in {self.layout.shots}, features in {self.layout.features}"
        )
        return s

    def busy_shares(self) -> dict[str, float]:
        """Each stage's busy time over the time its workers had (wall time x workers)."""
        wall = max(1e-9, time.perf_counter() - self.t0)
        return {st: min(1.0, c.busy / (wall * max(1, self.slots.get(st, 1)))) for st, c in self.counts.items()}
