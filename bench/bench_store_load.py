"""Benchmark: loading a whole feature store into memory for training, against disk speed.

Builds (or reuses, in the cache folder given by --dir) a synthetic store shaped like
Trailers12k: 12,000 trailers by default, written by t12k's FeatureStore (zarr format 2 as
the published stores, or 3 with --zarr-format 3), clip counts drawn around 64 per trailer
(35 % spread) so that with 1024 features it holds about 3 GB. The features are float32
rows of |N(0, 0.5)|, which Blosc zstd with byte shuffle compresses only modestly, as real
features; rows are cut from one pool of random rows so that generating 3 GB stays cheap.

Then, in this one process, with a warm page cache (every chunk file read once first), best
of --repeat runs, it times:

(a) the old loader: t12k's `load_table` before the fast reader (one zarr API call per
    array for its shape, another to read it), kept below as `old_load_table`;
(b) the new `t12k.divita.data.load_table` (`t12k.storage.fastread`);
(c) the lower bound: every chunk file read and decoded with numcodecs in 2 threads, the
    decoded chunks thrown away (no metadata, no table, no bookkeeping);

and prints seconds, MB/s (of chunk files read) and the ratios new/bound and old/new, and
checks that the old and new loaders give identical arrays.

    python bench/bench_store_load.py --dir /tmp/t12k-bench --scale 0.1   # 1,200 trailers
    python bench/bench_store_load.py --dir /tmp/t12k-bench                # 12,000, ~3 GB
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numcodecs
import numpy as np
import zarr

from t12k.divita.data import load_table
from t12k.errors import T12kError
from t12k.storage import FeatureStore
from t12k.storage.fastread import open_array

TRAILERS = 12_000
MEAN_CLIPS = 64
POOL_ROWS = 8192


# ---- the store -----------------------------------------------------------------------------


def store_path(root: Path, n: int, features: int, zarr_format: int, seed: int) -> Path:
    return root / f"t12k_like_n{n}_f{features}_c{MEAN_CLIPS}_v{zarr_format}_s{seed}.zarr"


def build_store(path: Path, n: int, features: int, zarr_format: int, seed: int) -> list[str]:
    """Write the synthetic store at `path` unless a complete one is there; return its ids."""
    ids = [f"tt{i:07d}" for i in range(n)]
    done = path / ".complete"
    if done.is_file():
        print(f"reusing {path}")
        return ids
    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.normal(MEAN_CLIPS, 0.35 * MEAN_CLIPS, n).round(), 1, None).astype(int)
    pool = (np.abs(rng.standard_normal((POOL_ROWS, features), dtype=np.float32)) * 0.5).astype(np.float32)
    pool = np.concatenate([pool, pool[: lengths.max()]])  # any start in [0, POOL_ROWS) has room
    store = FeatureStore.create_or_append(
        path, {"backbone": "synthetic"}, {"num_features": features}, zarr_format=zarr_format
    )
    t0 = time.perf_counter()
    for i, (mid, m) in enumerate(zip(ids, lengths)):
        start = int(rng.integers(POOL_ROWS))
        store.write_features(mid, pool[start : start + m])
        if (i + 1) % 1000 == 0:
            print(f"  wrote {i + 1}/{n} trailers ({time.perf_counter() - t0:.0f} s)", flush=True)
    done.write_text("ok\n")
    print(f"built {path} in {time.perf_counter() - t0:.0f} s")
    return ids


def chunk_files(path: Path, ids: list[str]) -> list[Path]:
    """Every chunk file of the per-trailer arrays (not metadata)."""
    files: list[Path] = []
    for mid in ids:
        for root, _, names in os.walk(path / mid):
            files += [Path(root) / f for f in names if f not in (".zarray", ".zattrs", "zarr.json")]
    return files


# ---- (a) the old loader, kept here for the comparison ----------------------------------------
# OLD CODE PATH: t12k's load_table before t12k.storage.fastread (array reading part only; the
# FeatureTable and torch tensors around it cost nothing). Do not use it elsewhere.


def old_load_table(path: Path, ids: list[str]) -> np.ndarray:
    store = FeatureStore.open(path)
    nf = store.num_features
    missing = [m for m in ids if m not in store]
    if missing:
        raise T12kError(f"id {missing[0]!r} is not in {store.path}")
    group = zarr.open_group(str(store.path), mode="r")
    lengths = np.zeros(len(ids), np.int64)
    for i, mid in enumerate(ids):
        shape = tuple(group[mid].shape)
        if len(shape) != 2 or shape[1] != nf:
            raise T12kError(f"array {mid!r} has shape {shape}")
        lengths[i] = shape[0]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    buf = np.zeros((int(lengths.sum()) + 1, nf), np.float32)
    for i, mid in enumerate(ids):
        if lengths[i]:
            buf[offsets[i] : offsets[i] + lengths[i]] = group[mid][...]
    return buf


# ---- (b) the new loader and (c) the bound ------------------------------------------------------


def new_load_table(path: Path, ids: list[str]) -> np.ndarray:
    return load_table(path, ids).feats.numpy()


def bound(files: list[Path], threads: int = 2) -> None:
    """Read and decode every chunk file with numcodecs in `threads` threads; keep nothing."""
    codec = numcodecs.Blosc()

    def one(f: Path) -> None:
        codec.decode(f.read_bytes())

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, files, chunksize=64):
            pass


def timed(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Best time of `repeat` runs and the result of the last one."""
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None  # free the previous table before the next run
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, required=True, help="cache folder for the synthetic store (reused)")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 12,000 trailers (0.1: 1,200)")
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--zarr-format", type=int, default=2, choices=(2, 3))
    ap.add_argument("--repeat", type=int, default=3, help="runs per loader; the best one counts")
    ap.add_argument(
        "--skip-old", action="store_true", help="do not time the old loader (a minute per run at full size)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    n = max(1, round(TRAILERS * args.scale))
    args.dir.mkdir(parents=True, exist_ok=True)
    path = store_path(args.dir, n, args.features, args.zarr_format, args.seed)
    ids = build_store(path, n, args.features, args.zarr_format, args.seed)
    files = chunk_files(path, ids)
    disk_mb = sum(f.stat().st_size for f in files) / 1e6
    bound(files)  # warm the page cache
    t0 = time.perf_counter()
    arrays = [open_array(path / mid) for mid in ids]
    meta_s = time.perf_counter() - t0
    rows = sum(a.shape[0] for a in arrays)
    print(
        f"{n} trailers, {rows} clips x {args.features} features, format {args.zarr_format}: "
        f"{len(files)} chunk files, {disk_mb:.0f} MB on disk, {rows * args.features * 4 / 1e6:.0f} MB decoded "
        f"({disk_mb / (rows * args.features * 4 / 1e6):.2f} compressed/raw)"
    )
    print(f"metadata of every array read by the fast reader: {meta_s:.2f} s (part of (b))")

    results = {}
    t_bound, _ = timed(args.repeat, lambda: bound(files))
    results["(c) bound: numcodecs, 2 threads"] = t_bound
    t_new, new = timed(args.repeat, lambda: new_load_table(path, ids))
    results["(b) new load_table"] = t_new
    if not args.skip_old:
        t_old, old = timed(args.repeat, lambda: old_load_table(path, ids))
        results["(a) old loader (zarr API)"] = t_old
        same = np.array_equal(old, new)
        del old
    for name, sec in results.items():
        print(f"{name:<34} {sec:8.2f} s {disk_mb / sec:8.0f} MB/s")
    print(f"new / bound: {t_new / t_bound:.2f}x")
    if not args.skip_old:
        print(f"old / new:   {t_old / t_new:.1f}x")
        print(f"old and new arrays identical: {same}")
        if not same:
            raise SystemExit("the new loader's table differs from the old one's")


if __name__ == "__main__":
    main()
