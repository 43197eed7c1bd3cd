"""`build_report`: the whole report of a work folder (what `t12k run` or the stage commands
left there), written as static pages: index.html (the collection), list-N.html (the trailers,
paged), failures.html, stores.html and t/{id}.html (one per trailer, thumbnails in t/{id}/)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from t12k.errors import T12kError, describe
from t12k.report.collection import Collection, index_page
from t12k.report.discover import Work, discover
from t12k.report.html import COLLECTION_NAV, CSS
from t12k.report.stores import StoreFacts, all_facts, stores_page
from t12k.report.trailer import Sources, TrailerRecord, trailer_page
from t12k.report.training import is_experiment_dir, is_run_dir, training_report
from t12k.storage import FeatureStore, ShotStore
from t12k.storage.folders import writable_folder


@dataclass
class ReportSummary:
    """What `build_report` wrote: the index page, how many trailer pages, the report's bytes and
    seconds, and what could not be read (also said on the pages)."""

    index: Path
    kind: str = "collection"  # or "training"
    trailers: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.kind == "training":
            return f"report of the training: {self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s; open {self.index}"
        return (
            f"report: {self.trailers} trailer pages, {self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s; "
            f"open {self.index}" + (f" ({len(self.problems)} problems shown on it)" if self.problems else "")
        )


def _stage_name(path: Path) -> str:
    return path.name.removesuffix(".csv").removesuffix(".manifest") or path.stem


def _read_manifests(work: Work) -> dict[str, dict[str, dict[str, str]]]:
    stages: dict[str, dict[str, dict[str, str]]] = {}
    for path in work.fetch_manifests:
        stages.setdefault("fetch", {}).update(_rows(path))
    for path in work.stage_manifests:
        stages.setdefault(_stage_name(path), {}).update(_rows(path))
    order = {name: i for i, name in enumerate(("fetch", "shots", "extract"))}  # the data flow's order
    return dict(sorted(stages.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _rows(path: Path) -> dict[str, dict[str, str]]:
    """A manifest's rows by id (the last of each), read without locking or rewriting it."""
    import csv

    rows: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            if row.get("id") and row.get("status") and None not in row:
                rows[row["id"]] = {k: v or "" for k, v in row.items()}
    return rows


def _open_stores(facts: list[StoreFacts]) -> tuple[list[ShotStore], list[FeatureStore]]:
    shots = [ShotStore.open(f.path) for f in facts if f.kind == "shots" and f.problem is None]
    feats = [FeatureStore.open(f.path) for f in facts if f.kind == "features" and f.problem is None]
    # the filmstrip's store first: a 2D one (a representative frame per clip)
    feats.sort(key=lambda s: (not _is_2d(s), s.path.name))
    return shots, feats


def _is_2d(store: FeatureStore) -> bool:
    return bool(store.settings.get("frame_selection")) or store.path.name.startswith("trailers_i_")


def _style(root: Path) -> None:
    """The report folder, made, with its stylesheet; T12kError when it cannot be written."""
    writable_folder(root, "report folder", "pass another --out")
    (root / "style.css").write_text(CSS, encoding="utf-8")


def _size(folder: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def build_report(
    work: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
    thumbs: bool = True,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReportSummary:
    """Write the report of the work folder `work` into `out` (default WORK/report) and return
    what was written (`.index`: the collection page to open). With `checkpoint` (a `t12k train`
    checkpoint.pt), each trailer page shows its genre probabilities. `verify`: check every store
    as `t12k verify` does; `thumbs`: decode the clips' representative frames; `progress` is
    called with 1 per trailer page written. What is missing or damaged is said on the pages;
    T12kError only when nothing at all could be read from `work`."""
    t0 = time.perf_counter()
    root_in = Path(work)
    if not root_in.is_dir():
        raise T12kError(f"work folder {root_in} does not exist; pass the --out folder of `t12k run` or `t12k demo`")
    if is_run_dir(root_in) or is_experiment_dir(root_in):
        root = Path(out) if out is not None else root_in / "report"
        _style(root)
        summary = ReportSummary(training_report(root_in, root), kind="training")
        summary.bytes, summary.seconds = _size(root), time.perf_counter() - t0
        return summary
    found = discover(root_in)
    if found.empty:
        raise T12kError(
            f"nothing to report in {root_in}: no manifest, store or video found in it (or {3} folders below); "
            "pass the folder `t12k run` wrote"
        )
    root = Path(out) if out is not None else root_in / "report"
    _style(root)
    everything = (*found.shots, *found.features, *found.broken)
    problems = [f"{f.path}: cannot be read ({f.problem})" for f in everything if f.problem]
    facts = all_facts(found, verify=verify)
    stores_page(root, facts, root_in)
    shots, feats = _open_stores(facts)
    coll = Collection(stages=_read_manifests(found))
    genres = None
    if checkpoint is not None:
        from t12k.report.genres import genre_predictor

        try:
            genres = genre_predictor(checkpoint, feats)
        except T12kError as exc:
            problems.append(f"no genre probabilities: {describe(exc)}")
    rows = coll.stages.get("fetch", {})
    in_stores = (m for s in (*shots, *feats) for m in s.ids())
    ids = sorted({*rows, *(m for s in coll.stages.values() for m in s), *in_stores})
    src = Sources(root, rows, shots, feats, found.videos, genres, thumbs)
    coll.pages = set(ids)

    def one(i: int) -> TrailerRecord:
        rec = trailer_page(src, ids[i], (ids[i - 1] if i else None, ids[i + 1] if i + 1 < len(ids) else None))
        if progress:
            progress(1)
        return rec

    with ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="t12k-report") as pool:
        coll.records = list(pool.map(one, range(len(ids))))
    runs = []
    for run in found.runs:
        name = run.relative_to(root_in).as_posix().replace("/", "-") or run.name
        try:
            runs.append((name, training_report(run, root / "runs" / name, (root, COLLECTION_NAV))))
        except Exception as exc:  # noqa: BLE001 - said on the index
            problems.append(f"training run {run}: cannot be shown ({describe(exc)})")
    index = index_page(coll, facts, root, root_in, problems, runs)
    summary = ReportSummary(index, trailers=len(ids), problems=problems)
    summary.bytes = _size(root)
    summary.seconds = time.perf_counter() - t0
    return summary
