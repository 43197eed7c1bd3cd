"""Many processes, one store and one manifest: writers committing the same and different
trailers while readers read them. Before the store's commit lock and the optimistic reads,
commits failed with OSError 39 and readers saw all-zero arrays and arrays mixing writers;
before the manifest's lock and re-reading compaction, rows of other runs were lost."""

from __future__ import annotations

import csv
import multiprocessing as mp
import random
import time
import traceback
from pathlib import Path

import numpy as np

from t12k.storage import FeatureStore, Manifest, verify_store
from t12k.storage.fastread import open_checked, read_arrays

NF = 4
WRITERS, READERS, COMMITS = 3, 2, 30
FIXED_ROWS = 9


def _shared_rows(w: int, k: int) -> int:
    return 5 + 7 * w + k % 3  # the shared trailer changes shape from commit to commit


def _commit(store: FeatureStore, mid: str, rows: int, value: int) -> None:
    store.write_features(mid, np.full((rows, NF), value, np.float32), np.full((rows, 3), value, np.int32))


def _check(mid: str, a: np.ndarray) -> str | None:
    """Why `a` is not exactly one commit's array of `mid` (None when it is)."""
    if a.size == 0 or not (a == a.flat[0]).all():
        return f"{mid}: a mix or a part ({np.unique(a)[:5]})"
    w, k = divmod(int(a.flat[0]), 1000)
    want = _shared_rows(w, k) if mid == "shared" else FIXED_ROWS
    return None if a.shape[0] == want else f"{mid}: {a.shape[0]} rows, writer {w} commit {k} wrote {want}"


def _writer(path: str, manifest: str, w: int, errors) -> None:
    try:
        store = FeatureStore.create_or_append(path, {"backbone": "synthetic"}, {"num_features": NF})
        rows = Manifest(manifest, ("clips",))
        rng = random.Random(w)
        for k in range(COMMITS):
            value = w * 1000 + k
            _commit(store, "shared", _shared_rows(w, k), value)
            _commit(store, "fixed", FIXED_ROWS, value)
            _commit(store, f"own{w}", FIXED_ROWS, value)
            rows.record(f"w{w}-{k}", "ok", clips=k)
            if k % 10 == 9:
                rows.compact()
            time.sleep(rng.random() * 0.003)
        rows.compact()
    except Exception:
        errors.put(f"writer {w}: {traceback.format_exc()}")


def _reader(path: str, stop, errors, reads) -> None:
    try:
        store = FeatureStore.open(path)
        n = 0
        while not stop.is_set() or n < 20:
            for mid in ("shared", "fixed", "own0"):
                problem = _check(mid, store.read(mid)) or _check(mid, store.read(mid, "clips")[:, :1])
                if problem:
                    errors.put(problem)
            # as load_table reads: shapes first, then the data into a table allocated once
            arrays = [open_checked(Path(path) / mid, 2, True) for mid in ("fixed", "own1")]
            outs = [np.empty(a.shape, np.float32) for a in arrays]
            read_arrays(arrays, outs, threads=2)
            for mid, out in zip(("fixed", "own1"), outs):
                if problem := _check(mid, out):
                    errors.put(problem)
            n += 1
        reads.put(n)
    except Exception:
        errors.put(f"reader: {traceback.format_exc()}")


def test_many_writers_and_readers_on_one_store_and_manifest(tmp_path):
    path, manifest = str(tmp_path / "s.zarr"), str(tmp_path / "extract.manifest.csv")
    store = FeatureStore.create_or_append(path, {"backbone": "synthetic"}, {"num_features": NF})
    for mid in ("shared", "fixed", *(f"own{w}" for w in range(WRITERS))):
        _commit(store, mid, _shared_rows(9, 0) if mid == "shared" else FIXED_ROWS, 9000)
    ctx = mp.get_context("spawn")  # no fork of a process that may hold threads
    errors, reads, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    readers = [ctx.Process(target=_reader, args=(path, stop, errors, reads)) for _ in range(READERS)]
    writers = [ctx.Process(target=_writer, args=(path, manifest, w, errors)) for w in range(WRITERS)]
    for p in readers + writers:
        p.start()
    for p in writers:
        p.join(120)
    stop.set()
    for p in readers:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert all(p.exitcode == 0 for p in readers + writers)
    assert sum(reads.get() for _ in readers) >= 2 * 20
    # the last commit of each trailer is there whole, the store is sound, no staging folder left
    final = FeatureStore.open(path)
    assert _check("shared", final.read("shared")) is None and _check("fixed", final.read("fixed")) is None
    assert int(final.read("shared")[0, 0]) % 1000 == COMMITS - 1
    last = [w * 1000 + COMMITS - 1 for w in range(WRITERS)]
    assert [int(final.read(f"own{w}")[0, 0]) for w in range(WRITERS)] == last
    assert verify_store(path).ok
    assert [p.name for p in (tmp_path / ".s.zarr.staging").iterdir()] == [".lock"]
    # no manifest row lost
    with open(manifest, newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    assert sorted(ids) == sorted(f"w{w}-{k}" for w in range(WRITERS) for k in range(COMMITS))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".extract.manifest.csv.lock",
        ".s.zarr.staging",
        "extract.manifest.csv",
        "s.zarr",
    ]
