"""`t12k run` next to the three stage commands in sequence, on one generated corpus.

    .venv/bin/python bench/bench_run.py [--trailers 8] [--seconds 8] [--sleep 1.0] [--nodes 1,2]

The corpus: `--trailers` generated trailers of `--seconds` each (the demo's footage, 25 fps,
so normalization re-times them to 24 fps), served by a local HTTP server. Every variant
starts from an empty folder and takes the whole corpus through download, normalization,
TransNet V2 and a backbone (`--backbone`, random weights by default: no network):

1. `fetch`, `shots`, `extract` in sequence (the stage functions of the three commands);
2. `run --engine local`: the same stages as staged workers joined by bounded queues, with one
   decode per trailer for both model stages (`--decode once`) and with each decoding (`per-stage`);
3. `run --engine ray` on a local Ray cluster of 1 and 2 simulated nodes (`--nodes`), each of
   `--node-cpus` logical CPUs (on one machine the nodes share its cores: this measures the
   engine's overhead and the overlap, not a cluster's speed-up).

`--sleep` is fetch's pause between download starts (its polite pacing; YouTube needs about 5 s):
with a local server downloads take no time, and the pause stands for the network. Prints
each variant's wall time, its ratio to the stage commands and, for the runs, every stage's
busy share. Each variant's stores are checked equal to the stage commands' before its time
counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from t12k.pipeline.demo import LocalServer, build_corpus
from t12k.pipeline.extract import ExtractConfig, extract_features
from t12k.pipeline.fetch import FetchConfig, FetchItem, fetch_collection
from t12k.pipeline.run import RunConfig, run_collection
from t12k.pipeline.shots_command import ShotsConfig, detect_shots
from t12k.storage import FeatureStore, ShotStore


def _stage_commands(items, out: Path, fetch, shots, extract) -> dict[str, float]:
    t0 = time.perf_counter()
    fetch_collection(items, out / "videos", fetch, progress=False)
    t1 = time.perf_counter()
    detect_shots(out / "videos", out / "shots.zarr", shots, progress=False)
    t2 = time.perf_counter()
    extract_features(out / "videos", out / "shots.zarr", out / "features", extract, progress=False, log=lambda m: None)
    t3 = time.perf_counter()
    return {"fetch": t1 - t0, "shots": t2 - t1, "extract": t3 - t2, "total": t3 - t0}


def _same(a: Path, b: Path) -> None:
    """The run folder `a` holds the stores of `b`, array for array (features to float32 rounding)."""
    sa, sb = ShotStore.open(a / "shots.zarr"), ShotStore.open(b / "shots.zarr")
    assert sa.ids() == sb.ids(), (sa.ids(), sb.ids())
    for m in sb.ids():
        assert np.array_equal(sa.shots(m), sb.shots(m)) and np.array_equal(sa.predictions(m), sb.predictions(m))
    for store in (b / "features").glob("*.zarr"):
        fa, fb = FeatureStore.open(a / "features" / store.name), FeatureStore.open(store)
        assert fa.ids() == fb.ids()
        for m in fb.ids():
            x = fb.read(m)
            assert np.allclose(fa.read(m), x, rtol=1e-5, atol=1e-6 * float(np.abs(x).max())), m


def _ray_cluster(nodes: int, cpus: int):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    return cluster


def _run(items, out: Path, config: RunConfig, fetch, shots, extract) -> tuple[float, str]:
    t0 = time.perf_counter()
    summary = run_collection(items, out, config, fetch=fetch, shots=shots, extract=extract, progress=False, log=print)
    wall = time.perf_counter() - t0
    assert summary.ok, summary.text()
    return wall, summary.totals.get("busy", "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trailers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sleep", type=float, default=1.0, help="fetch's pause between download starts (s)")
    ap.add_argument("--backbone", default="shufflenet2d")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--nodes", default="1,2", help="simulated Ray nodes to run on ('' for none)")
    ap.add_argument("--node-cpus", type=int, default=3)
    ap.add_argument("--work", help="work folder (default: a temporary one, removed)")
    a = ap.parse_args(argv)

    root = Path(a.work or tempfile.mkdtemp(prefix="t12k-bench-run-"))
    fetch = FetchConfig(workers=2, sleep=a.sleep)
    shots = ShotsConfig(device="cpu")
    extract = ExtractConfig(backbones=a.backbone, weights=a.weights, device="cpu")
    ids = [m for m in build_corpus(root / "corpus", a.trailers, a.seconds, seed=0) if m != "real000"]
    print(f"corpus: {len(ids)} generated trailers of {a.seconds:g} s; {os.cpu_count()} cores; sleep {a.sleep:g} s")
    rows = []
    try:
        with LocalServer(root / "corpus") as server:
            items = [FetchItem(m, f"{server.url}/{m}.mp4") for m in ids]
            ref = root / "stages"
            parts = _stage_commands(items, ref, fetch, shots, extract)
            base = parts["total"]
            split = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items() if k != "total")
            rows.append(("fetch -> shots -> extract", base, split))
            for decode in ("once", "per-stage"):
                wall, busy = _run(items, root / f"local-{decode}", RunConfig(decode=decode), fetch, shots, extract)
                _same(root / f"local-{decode}", ref)
                rows.append((f"run --engine local --decode {decode}", wall, f"busy: {busy}"))
            for n in [int(x) for x in a.nodes.split(",") if x.strip()]:
                cluster = _ray_cluster(n, a.node_cpus)
                try:
                    config = RunConfig(engine="ray", address=cluster.address, actors=n, decode_workers=0)
                    wall, busy = _run(items, root / f"ray{n}", config, fetch, shots, extract)
                finally:
                    import ray

                    ray.shutdown()
                    cluster.shutdown()
                _same(root / f"ray{n}", ref)
                rows.append((f"run --engine ray, {n} node(s)", wall, f"busy: {busy}"))
    finally:
        if not a.work:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'variant':<36} {'wall s':>7} {'speed-up':>8}  notes")
    for name, wall, note in rows:
        print(f"{name:<36} {wall:>7.1f} {base / wall:>7.2f}x  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
