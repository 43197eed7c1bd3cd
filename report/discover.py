"""What a work folder holds: the fetch manifests (with their videos), the shots stores, the
feature stores and the stage manifests, found by their content wherever `run` or the stage
commands put them (a shallow walk: stores are not entered)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from t12k.errors import describe

DEPTH = 3  # folders below WORK searched


@dataclass
class Found:
    """A store found in WORK: its path, its kind ('shots', 'features' or '' when it cannot be
    told) and, when it does not open, why."""

    path: Path
    kind: str
    problem: str | None = None


@dataclass
class Work:
    root: Path
    fetch_manifests: list[Path] = field(default_factory=list)  # videos/manifest.csv (beside the mp4 files)
    stage_manifests: list[Path] = field(default_factory=list)  # shots.manifest.csv, extract.manifest.csv
    shots: list[Found] = field(default_factory=list)
    features: list[Found] = field(default_factory=list)
    broken: list[Found] = field(default_factory=list)  # zarr-looking folders that are no store
    videos: dict[str, Path] = field(default_factory=dict)  # id -> its .mp4
    runs: list[Path] = field(default_factory=list)  # `t12k train` run folders (history.csv)

    @property
    def empty(self) -> bool:
        return not (self.fetch_manifests or self.shots or self.features or self.videos)


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            return next(csv.reader(fh), [])
    except OSError:
        return []


def _zarr_kind(path: Path) -> Found:
    from t12k.storage import FeatureStore, ShotStore

    for cls in (ShotStore, FeatureStore):
        try:
            cls.open(path)
            return Found(path, cls.kind)
        except Exception as exc:  # noqa: BLE001 - any failure to open is reported, not raised
            last = describe(exc)
    kind = "features" if path.name.startswith("trailers_") else "shots" if "shot" in path.name else ""
    return Found(path, kind, last)


def _looks_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path / ".zgroup").is_file() or (path / "zarr.json").is_file()


def discover(root: str | os.PathLike[str]) -> Work:
    """The pieces of the work folder `root` (nothing is read beyond headers and store attributes)."""
    work = Work(Path(root))
    todo, mp4s = [(work.root, 0)], []
    while todo:
        folder, depth = todo.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            p = Path(e.path)
            if e.name.startswith("."):
                continue
            if e.is_dir():
                if _looks_zarr(p):
                    found = _zarr_kind(p)
                    target = {"shots": work.shots, "features": work.features}.get(found.kind, work.broken)
                    target.append(found)
                elif depth < DEPTH:
                    todo.append((p, depth + 1))
            elif e.name == "history.csv":
                work.runs.append(folder)
            elif e.name.endswith(".csv"):
                head = _header(p)
                if "id" in head and "status" in head:
                    (work.fetch_manifests if "src_width" in head else work.stage_manifests).append(p)
            elif e.name.endswith(".mp4"):
                mp4s.append(p)
    fetched = {m.parent for m in work.fetch_manifests}  # normalized videos win over their sources
    for p in sorted(mp4s, key=lambda v: (v.parent not in fetched, str(v))):
        work.videos.setdefault(p.stem, p)
    for group in (work.fetch_manifests, work.stage_manifests, work.shots, work.features, work.broken, work.runs):
        group.sort(key=lambda f: str(getattr(f, "path", f)))
    return work
