"""`t12k predict` on one trailer: wall time from the file to the probabilities, and where it went.

    .venv/bin/python bench/bench_predict.py [--seconds 150] [--backbone shufflenet2d] [--rounds 2]

The trailer: `--seconds` of /work/shared/media/bbb-trailer.mp4 (1280x720, 24 fps) looped, as a
user's file would come (720p, so `predict` normalizes it first). The checkpoint: a DIViTA head
trained for one epoch on a tiny store of `--backbone` features (random weights: no network;
the speed is the same as with the pretrained ones). Each round runs `t12k predict --json` in a
fresh process and prints its wall time and the breakdown `predict` reports (load models,
normalize, shots and features from one decode, of which the backbones, head). Both are made
once in `--cache`, so a second run only measures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from t12k.pipeline.media import ffmpeg_exe

BBB = Path("/work/shared/media/bbb-trailer.mp4")
T12K = [sys.executable, "-m", "t12k.cli"]


def make_trailer(cache: Path, seconds: float) -> Path:
    out = cache / f"trailer-{seconds:g}s.mp4"
    if not out.is_file():
        part = out.with_name(".part.mp4")
        cmd = [ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(BBB), "-t", f"{seconds:g}", "-an"]
        subprocess.run([*cmd, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(part)], check=True)
        part.rename(out)
    return out


def make_checkpoint(cache: Path, backbone: str) -> Path:
    """A head trained for one epoch on a store of three short clips of the trailer."""
    run = cache / f"run-{backbone}"
    if (run / "checkpoint.pt").is_file():
        return run / "checkpoint.pt"
    from t12k.storage import MTGC, write_mtgc

    videos = cache / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for i, mid in enumerate(("a1", "b2", "c3")):
        cmd = [ffmpeg_exe(), "-v", "error", "-y", "-ss", str(10 * i), "-t", "6", "-i", str(BBB), "-an"]
        subprocess.run(
            [*cmd, "-vf", "scale=-2:360", "-r", "24", "-c:v", "libx264", str(videos / f"{mid}.mp4")], check=True
        )
    shots, feats = cache / "shots.zarr", cache / "features"
    subprocess.run(
        [*T12K, "shots", "--videos", str(videos), "--store", str(shots), "--device", "cpu", "--quiet"], check=True
    )
    cmd = [
        *T12K,
        "extract",
        "--videos",
        str(videos),
        "--shots",
        str(shots),
        "--out",
        str(feats),
        "--backbone",
        backbone,
    ]
    subprocess.run([*cmd, "--weights", "none", "--device", "cpu", "--quiet"], check=True)
    y = np.eye(10, dtype=np.int8)[[0, 4, 6]]
    write_mtgc(cache / "mtgc.csv", MTGC(["a1", "b2", "c3"], y, np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.int8)))
    (store,) = feats.glob("*.zarr")
    role = "--video-store" if "_k_" in store.name or "_ik_" in store.name else "--image-store"
    cmd = [*T12K, "train", role, str(store), "--labels", str(cache / "mtgc.csv"), "--out", str(run)]
    subprocess.run([*cmd, "--max-epochs", "1", "--device", "cpu", "--quiet"], check=True)
    return run / "checkpoint.pt"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--backbone", default="shufflenet2d")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "t12k-bench-predict")
    a = ap.parse_args(argv)
    a.cache.mkdir(parents=True, exist_ok=True)
    trailer = make_trailer(a.cache, a.seconds)
    ckpt = make_checkpoint(a.cache, a.backbone)
    print(f"trailer: {trailer} ({a.seconds:g} s, 1280x720); checkpoint: {a.backbone}; {os.cpu_count()} cores")
    best = None
    for r in range(a.rounds):
        t0 = time.perf_counter()
        cmd = [*T12K, "predict", str(trailer), "--checkpoint", str(ckpt), "--json", "--device", "cpu"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        wall = time.perf_counter() - t0
        res = json.loads(out)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in res["seconds"].items())
        print(f"round {r + 1}: {wall:.1f} s wall (process), {res['frames']} frames, {res['clips']} clips; {parts}")
        best = wall if best is None else min(best, wall)
    print(f"best: {best:.1f} s from file to probabilities ({a.seconds:g} s trailer, {a.backbone}, CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
