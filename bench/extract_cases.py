"""Material and helpers of `bench_extract.py`: the sample trailer and its collections, CPU
and memory measurement, a free stand-in model, and the sections that run `t12k extract` as a
subprocess (memory) or only read stores (store).

Kept beside the bench script (not a package): `bench_extract.py` imports it by name, which
works because Python puts a script's own folder first on the import path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from t12k.backbones import Kind
from t12k.pipeline import extract as ex
from t12k.pipeline.media import ffmpeg_exe, normalize
from t12k.storage import FeatureStore, ShotStore

BBB = Path(__file__).resolve().parent.parent.parent / "shared" / "media" / "bbb-trailer.mp4"
if not BBB.is_file():
    BBB = Path("/work/shared/media/bbb-trailer.mp4")
T12K_FRAMES, T12K_CLIPS, T12K_TRAILERS = 35e6, 1.46e6, 12000  # Trailers12k, DESIGN.md / the issue


def trailer_210s(work: Path) -> Path:
    """The sample trailer, normalized and looped to 210 s (5040 frames at 24 fps)."""
    out = work / "long.mp4"
    if out.is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    norm = work / "bbb360.mp4"
    normalize(BBB, norm)
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-stream_loop",
            "4",
            "-i",
            str(norm),
            "-t",
            "210",
            "-c",
            "copy",
            str(work / "tmp.mp4"),
        ],
        check=True,
    )
    normalize(work / "tmp.mp4", out)  # re-encode so the loop has exact frame timing
    (work / "tmp.mp4").unlink()
    return out


def shots_for(work: Path, video: Path) -> Path:
    """Shots store of the sample trailer (TransNet V2, computed once and cached)."""
    store = work / "shots.zarr"
    if not (store / "long").exists():
        from t12k.pipeline.shots_command import detect_shots

        folder = work / "one"
        folder.mkdir(exist_ok=True)
        if not (folder / "long.mp4").exists():
            os.symlink(video, folder / "long.mp4")
        detect_shots(folder, store, device="cpu", progress=False)
    return store


def collection(work: Path, video: Path, shots: Path, n: int, seconds: float | None = None) -> tuple[Path, Path]:
    """A folder of `n` copies of the trailer (symlinks; or cut to `seconds`) and its shots store."""
    tag = f"n{n}" + (f"_s{seconds:g}" if seconds else "")
    folder, store_path = work / f"videos_{tag}", work / f"shots_{tag}.zarr"
    src = ShotStore.open(shots)
    if store_path.exists() and len(ShotStore.open(store_path).ids()) == n:
        return folder, store_path
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(store_path, ignore_errors=True)
    folder.mkdir()
    sample = video
    frames = len(src.predictions("long"))
    if seconds:
        sample = work / f"cut_{seconds:g}.mp4"
        subprocess.run(
            [
                ffmpeg_exe(),
                "-v",
                "error",
                "-y",
                "-i",
                str(video),
                "-frames:v",
                str(int(seconds * 24)),
                "-c:v",
                "libx264",
                "-crf",
                "20",
                "-preset",
                "veryfast",
                "-an",
                str(sample),
            ],
            check=True,
        )
        frames = int(seconds * 24)
    shots = src.shots("long")
    shots = shots[shots[:, 0] < frames]
    shots[-1, 1] = min(shots[-1, 1], frames - 1)
    store = ShotStore.create_or_append(store_path, src.settings)
    for i in range(n):
        os.symlink(sample, folder / f"t{i:02d}.mp4")
        store.write_shots(f"t{i:02d}", shots, src.predictions("long")[:frames])
    return folder, store_path


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)), flush=True)


@contextmanager
def recording_engine() -> Iterator[dict]:
    """Keep the stats of the engine run `extract_features` makes inside the block (in
    `got["stats"]`): the engine's own timing figures, which the stage's summary leaves out."""
    from t12k.pipeline import extract as package
    from t12k.pipeline.extract import command as stage

    got: dict = {}
    real_engine = stage.Engine

    class Recording(real_engine):
        def run(self, *a, **k):
            got["stats"] = super().run(*a, **k)
            return got["stats"]

    # the feature stage of `t12k run` (which `extract_features` runs) imports it from the package
    stage.Engine = package.Engine = Recording
    try:
        yield got
    finally:
        stage.Engine = package.Engine = real_engine


class FreeModel:
    """A stand-in backbone that costs nothing: its geometry keeps the decoded size (no resize)
    and its feature is two input values, so a run measures the engine itself."""

    def __init__(self, kind: Kind, size: tuple[int, int]):
        self.spec = type("Spec", (), {"key": f"free{kind}", "kind": kind, "num_features": 2})()
        self.geometry = ex.Geometry(kind, size, size, "bilinear", True)
        self.device, self.batch_size, self.precision = "cpu", 32, "fp32"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)[:, :2].float()


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its finished children (the ffmpeg decoders)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def shared_memory_writes() -> dict:
    """What the ring saves: writing decoded frames into fresh shared memory (a new segment per
    chunk, as PyTorch's DataLoader does for a worker's tensors) or into a reused slot."""
    results = {}
    frame = torch.randint(0, 256, (360, 640, 3), dtype=torch.uint8)
    n = 96
    slot = torch.empty((n, *frame.shape), dtype=torch.uint8).share_memory_()
    for label, fresh in (("fresh shared memory", True), ("reused ring slot", False)):
        best_s = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            dest = torch.empty((n, *frame.shape), dtype=torch.uint8).share_memory_() if fresh else slot
            dest.copy_(frame.expand(n, *frame.shape))
            best_s = min(best_s, time.perf_counter() - t0)
            del dest
        results[f"write 360p frames, {label}"] = {"ms_per_frame": 1000 * best_s / n}
        print(f"write 360p frames into {label}: {1000 * best_s / n:.3f} ms per frame")
    return results


def measure_tree(proc, peak: dict) -> None:
    import psutil

    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += info.pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            main_rss = root.memory_info().rss
            peak["tree_pss"] = max(peak.get("tree_pss", 0), pss)
            peak["main_rss"] = max(peak.get("main_rss", 0), main_rss)
            peak["procs"] = max(peak.get("procs", 0), len(procs))
        except psutil.NoSuchProcess:
            break
        time.sleep(1.0)  # reading smaps is not free: sample once a second


def bench_memory(args, work: Path, video: Path, shots: Path) -> dict:
    section(f"memory: t12k extract --backbone {args.memory_backbones} on 1 and 20 trailers of 210 s")
    results = {}
    for n in (1, 20):
        folder, store = collection(work, video, shots, n)
        out = work / f"out_memory_{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "t12k.cli",
            "extract",
            "--backbone",
            args.memory_backbones,
            "--weights",
            "none",
            "--videos",
            str(folder),
            "--shots",
            str(store),
            "--out",
            str(out),
            "--device",
            args.device,
            "--workers",
            str(args.workers),
            "--batch-size",
            str(args.batch_size),
            "--fps",
            str(args.fps),
            "--quiet",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd)
        peak: dict = {}
        th = threading.Thread(target=measure_tree, args=(proc, peak))
        th.start()
        proc.wait()
        th.join()
        dt = time.perf_counter() - t0
        results[n] = {k: v for k, v in peak.items()} | {"seconds": dt, "rc": proc.returncode}
        print(
            f"{n:>2} trailer(s) x 5040 frames: peak main RSS {peak['main_rss'] / 2**20:7.0f} MiB, peak tree PSS "
            f"{peak['tree_pss'] / 2**20:7.0f} MiB ({peak['procs']} processes), {dt:.0f} s, exit {proc.returncode}",
            flush=True,
        )
    return results


def bench_store(args, work: Path) -> dict:
    section("stores: bytes per trailer (zstd-5 Blosc, shuffle) and read speed of a whole store")
    results = {}
    roots = [work / "out_memory_20", work / "out_throughput"]
    paths = sorted({p for r in roots if r.exists() for p in r.rglob("trailers_*.zarr")})
    for path in paths:
        store = FeatureStore.open(path)
        ids = store.ids()
        if not ids:
            continue
        files = [f for f in path.rglob("*") if f.is_file()]
        total = sum(f.stat().st_size for f in files)
        os.sync()
        t0 = time.perf_counter()
        raw = 0
        import zarr

        z = zarr.open(str(path), mode="r")  # what the reference trainer does
        for m in ids:
            raw += z[m][:].nbytes
        dt = time.perf_counter() - t0
        clips = raw / 4 / int(z.attrs["num_features"])
        results[str(path)] = {
            "trailers": len(ids),
            "bytes_total": total,
            "bytes_per_trailer": total / len(ids),
            "raw_bytes": raw,
            "read_s": dt,
        }
        print(
            f"{path.parent.name}/{path.name}: {len(ids)} trailers, {clips / len(ids):.0f} clips each, "
            f"{total / len(ids) / 2**20:.2f} MiB per trailer on disk (raw float32 {raw / len(ids) / 2**20:.2f} MiB, "
            f"ratio {raw / total:.2f}); whole store read in {dt:.2f} s = {raw / dt / 2**20:.0f} MiB/s, "
            f"{len(ids) / dt:.0f} trailers/s (page cache warm)",
            flush=True,
        )
    return results
