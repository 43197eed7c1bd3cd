"""Benchmark: `t12k status` on a 12,000-trailer collection.

Builds (or reuses, in the folder given by --dir) a run folder shaped like Trailers12k
mid-way through a sharded run: 12,000 ids in a list; fetch's manifest with a row per id seen
(90 % fetched, 3 % failed with a few reasons, 1 % rejected), an empty file per fetched video;
a shots store and two feature stores (shufflenet2d, r2plus1d) with 80 % and 70 % of the
trailers, their manifests with their rows and failures; row times spread over the last two
hours. The first trailer of each store is written through t12k's store classes (tiny arrays)
and its committed folders copied for the other ids, so that the stores list as written ones
do; the manifests are written through `storage.Manifest`.

Then it times `collection_status` in this process (best of --repeat, warm page cache) and
`t12k status WORK --items LIST` as a fresh process (the user's wait, start-up included),
and prints the status.

    python bench/bench_status.py --dir /tmp/t12k-bench-status             # 12,000 trailers
    python bench/bench_status.py --dir /tmp/t12k-bench-status --n 1200
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from t12k.pipeline.fetch.records import MANIFEST_FIELDS
from t12k.pipeline.status import collection_status, list_ids
from t12k.storage import FeatureStore, Manifest, ShotStore

STORES = ("trailers_i_shufflenet_fpc24.zarr", "trailers_k_r2plus1d_fps24_fpc24.zarr")
FETCH_REASONS = ("HTTP Error 404: Not Found", "Video unavailable: this video is private", "download too slow")


def _copies(store: Path, first: str, ids: list[str], companions: tuple[str, ...]) -> None:
    """Copy trailer `first`'s committed folders (its array and companions) for each id."""
    for mid in ids:
        for where in ("", *companions):
            shutil.copytree(store / where / first, store / where / mid)


def _manifest(path: Path, fields: tuple[str, ...], rows: list[tuple[str, str, str]], times: list[float]) -> None:
    """A manifest with these rows (written through Manifest), then their times set to `times`."""
    m = Manifest(path, fields)
    for mid, status, reason in rows:
        m.record(mid, status, reason)
    m.rows = {
        mid: {**row, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))}
        for (mid, row), t in zip(m.rows.items(), times)
    }
    path.unlink()
    m.compact()


def build(work: Path, n: int, seed: int = 0) -> Path:
    """The run folder in `work` and the list file beside it (made once)."""
    items = work.with_suffix(".list.csv")
    if (work / "done").is_file():
        return items
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    ids = [f"tt{1000000 + i:07d}" for i in range(n)]
    items.write_text("id,url\n" + "".join(f"{m},https://example.org/{m}.mp4\n" for m in ids))
    now = time.time()
    stamp = lambda: now - rnd.uniform(0, 7200)  # noqa: E731 - rows over the last two hours

    seen = ids[: int(n * 0.94)]
    fetched = seen[: int(n * 0.90)]
    (work / "videos").mkdir(parents=True)
    for mid in fetched:
        (work / "videos" / f"{mid}.mp4").touch()
    rows = [(m, "ok", "") for m in fetched]
    rows += [(m, "failed", rnd.choice(FETCH_REASONS)) for m in seen[len(fetched) : len(fetched) + int(n * 0.03)]]
    rows += [(m, "rejected", "too short: 40 s") for m in seen[len(fetched) + int(n * 0.03) :]]
    _manifest(work / "videos/manifest.csv", MANIFEST_FIELDS, rows, sorted(stamp() for _ in rows))

    shot_ids = fetched[: int(n * 0.80)]
    shots = ShotStore.create_or_append(work / "shots.zarr", {"detector": "transnetv2", "threshold": 0.5})
    shots.write_shots(shot_ids[0], np.array([[0, 23], [24, 47]]), np.zeros(48))
    _copies(work / "shots.zarr", shot_ids[0], shot_ids[1:], ("predictions",))
    failed = fetched[len(shot_ids) : len(shot_ids) + 40]
    rows = [(m, "ok", "") for m in shot_ids] + [(m, "failed", f"{m}: cannot decode frame 1200") for m in failed]
    _manifest(work / "shots.manifest.csv", ("frames", "shots"), rows, sorted(stamp() for _ in rows))

    feat_ids = shot_ids[: int(n * 0.70)]
    for name in STORES:
        store = FeatureStore.create_or_append(work / "features" / name, {"backbone": name}, {"num_features": 8})
        store.write_features(feat_ids[0], np.ones((2, 8), np.float32), np.array([[0, 23], [24, 47]]))
        _copies(work / "features" / name, feat_ids[0], feat_ids[1:], ("clips",))
    rows = [(m, "ok", "") for m in feat_ids] + [(m, "failed", "CUDA out of memory") for m in shot_ids[-25:]]
    _manifest(work / "features/extract.manifest.csv", ("clips", "frames"), rows, sorted(stamp() for _ in rows))
    (work / "done").touch()
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/tmp/t12k-bench-status", help="folder for the synthetic collection (reused)")
    ap.add_argument("--n", type=int, default=12000, help="trailers in the collection")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each timing (the best is printed)")
    a = ap.parse_args()
    work = Path(a.dir) / f"work-{a.n}"
    t0 = time.perf_counter()
    items = build(work, a.n)
    print(f"collection of {a.n} trailers in {work} (made or found in {time.perf_counter() - t0:.1f} s)")
    ids = list_ids(items)
    best = min(_timed(lambda: collection_status(work, ids)) for _ in range(a.repeat))
    print(f"collection_status (in process, warm):      {best:.3f} s")
    cmd = [sys.executable, "-m", "t12k.cli", "status", str(work), "--items", str(items)]
    runs = [_timed(lambda: subprocess.run(cmd, check=True, capture_output=True)) for _ in range(a.repeat)]
    print(f"t12k status WORK --items LIST (a process): {min(runs):.3f} s")
    print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    print(f"cpu count {os.cpu_count()}")


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
