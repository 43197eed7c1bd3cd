"""Extraction throughput, memory and stores: figures for issue 5.

Sections (all by default, or pick with --only):

  sample      the Trailers12k goal: `t12k extract --backbone all` (on a GPU; two 2D
              backbones on a CPU) over a sample of trailers with the run's own worker
              count, extrapolated to the 35 M frames of Trailers12k; the busy share of the
              device (model), of the decode workers and of the store writes says where the
              limit is and how close to it the run is.
  pipeline    what the engine costs on top of decoding, the regime expected on a GPU: a
              free stand-in model, decoded 360p frames shipped raw through the frame ring
              (as with `--resize-on device`), one decode worker; CPU ms per frame of the
              workers and of the main process against the same worker work alone.
  throughput  per backbone, `t12k extract` on a sample of real trailer footage: clips/s,
              and where the time goes (decode workers: decode + histograms + resize/crop;
              main: waiting for inputs, model, store writes).
  workers     the CPU side alone per geometry group (decode + representative frames +
              resize/crop, no model): frames/s per worker process. This is what bounds a
              GPU run, so the Trailers12k estimate is built from it.
  precision   feature difference of bf16 and fp16 autocast from fp32, per backbone.
  memory      peak memory of `t12k extract` on 1 and on 20 trailers of 210 s (psutil:
              the main process's peak RSS and the peak PSS of the whole process tree).
  store       bytes per trailer of each store and the read speed of a whole store.

The sample trailer is Big Buck Bunny's trailer from ../shared/media, normalized as
`t12k fetch` leaves videos (H.264, 24 fps, short side 360) and looped to 210 s; its shots
come from `t12k shots`. Weights are random (`none`): the hubs are unreachable here and the
compute is the same as with pretrained weights.

    .venv/bin/python bench/bench_extract.py [--only sample,throughput,workers] [--device cuda]
        [--backbones all] [--seconds 20] [--work /tmp/t12k-bench-extract]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from t12k.backbones import REGISTRY, get_spec
from t12k.pipeline import extract as ex
from t12k.pipeline.media import ffmpeg_exe, normalize
from t12k.shots import plan_clips
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
        from t12k.pipeline.detect import detect_shots

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


def bench_sample(args, work: Path, video: Path, shots_long: Path) -> dict:
    """All chosen backbones at once over `--sample-trailers` trailers, as a real run does."""
    cuda = args.device.startswith("cuda")
    keys = args.sample_backbones or ("all" if cuda else "shufflenet2d,resnet")
    n = args.sample_trailers or (32 if cuda else 4)
    seconds = args.sample_seconds
    workers = ex.resolve_workers(args.sample_workers, args.device)
    resize_on = "device" if cuda else "workers"
    section(
        f"sample: t12k extract --backbone {keys} on {n} trailers of {seconds:g} s, device {args.device}, "
        f"{workers} worker(s), resize on {resize_on}, batch {args.batch_size}, {args.precision}"
    )
    folder, shots = collection(work, video, shots_long, n, seconds)
    frames = sum(len(ShotStore.open(shots).predictions(m)) for m in ShotStore.open(shots).ids())
    common = dict(
        backbones=keys,
        weights="none",
        device=args.device,
        workers=workers,
        batch_size=args.batch_size,
        precision=args.precision,
        resize_on=resize_on,
        progress=False,
        log=lambda m: None,
    )
    warm, _ = collection(work, video, shots_long, 1, 2.0)  # model loading, cuDNN autotuning, page cache
    ex.extract_features(warm, work / "shots_n1_s2.zarr", work / "warm", **common)
    shutil.rmtree(work / "warm")
    out = work / "out_sample"
    shutil.rmtree(out, ignore_errors=True)
    got = {}
    real_engine = ex.Engine

    class Recording(real_engine):
        def run(self, *a, **k):
            got["stats"] = super().run(*a, **k)
            return got["stats"]

    ex.Engine = Recording
    try:
        summary = ex.extract_features(folder, shots, out, **common)
    finally:
        ex.Engine = real_engine
    assert not summary.failed, summary.failed
    st = got["stats"]
    wall = st.wall_s
    model = sum(st.model_s.values())
    busy = {
        "model (device)": model / wall,
        "decode workers": st.worker_s / (max(1, workers) * wall) if workers else st.worker_s / wall,
        "store writes": st.write_s / wall,
    }
    hours = T12K_FRAMES / (frames / wall) / 3600
    print(
        f"{st.clips} clips, {frames} frames in {wall:.1f} s: {st.clips / wall:.1f} clips/s, "
        f"{frames / wall:.0f} frames/s"
    )
    for key, sec in st.model_s.items():
        print(
            f"  model {key:<13} {sec:7.1f} s  {100 * sec / wall:5.1f}% of the run, {st.clips / sec:8.1f} clips/s alone"
        )
    print(
        f"  waiting for decoded clips {100 * st.wait_s / wall:.1f}% of the main process; "
        f"resize/crop on the device (queueing) {100 * st.resize_s / wall:.1f}%"
    )
    for name, share in busy.items():
        print(f"  busy: {name:<15} {100 * share:5.1f}%")
    limit = max(busy, key=busy.get)
    print(
        f"limit: {limit} ({100 * busy[limit]:.0f}% busy). Trailers12k (35 M frames) at this rate: "
        f"{hours:.2f} h with {workers} worker(s) on this machine"
    )
    return {
        "backbones": keys,
        "trailers": n,
        "seconds": seconds,
        "workers": workers,
        "clips": st.clips,
        "frames": frames,
        "wall_s": wall,
        "clips_per_s": st.clips / wall,
        "model_s": st.model_s,
        "busy": busy,
        "limit": limit,
        "trailers12k_hours": hours,
    }


class _FreeModel:
    """A stand-in backbone that costs nothing: its geometry keeps the decoded size (no resize)
    and its feature is two input values, so a run measures the engine itself."""

    def __init__(self, kind: str, size: tuple[int, int]):
        self.spec = type("Spec", (), {"key": f"free{kind}", "kind": kind, "num_features": 2})()
        self.geometry = ex.Geometry(kind, size, size, "bilinear", True)
        self.device, self.batch_size, self.precision = "cpu", 32, "fp32"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)[:, :2].float()


def bench_pipeline(args, work: Path, video: Path, shots_long: Path) -> dict:
    n, seconds = 4, 30.0
    section(
        f"pipeline: the engine at the decode limit ({n} trailers of {seconds:g} s, 2D + 3D inputs at "
        "fps 24 shipped raw, free model, 1 worker) against the worker's work alone"
    )
    folder, shots_path = collection(work, video, shots_long, n, seconds)
    store = ShotStore.open(shots_path)
    height, width = ex.iter_frames(folder / "t00.mp4").__next__().shape[:2]
    jobs = [
        ex.Job(m, str(folder / f"{m}.mp4"), plan_clips(store.shots(m), len(store.predictions(m)), "shot", 24, 24))
        for m in store.ids()
    ]
    frames = sum(len(store.predictions(m)) for m in store.ids())
    runners = [_FreeModel("2d", (height, width)), _FreeModel("3d", (height, width))]
    geometries = [r.geometry for r in runners]
    torch.set_num_threads(1)
    best: dict = {}
    ring = ex.FrameRing(2, ex.Engine.SLOT_BYTES)  # made once, as in a run (not timed)
    for _ in range(max(1, args.repeat)):
        c0, t0 = _cpu_s(), time.perf_counter()
        for item in ex.ClipStream(jobs, geometries, chunk=8, decode_threads=1, raw=True, ring=ring):
            assert isinstance(item, ex.Chunk), item
            for x in item.inputs:
                if isinstance(x, ex.SlotRef):
                    ring.release(x.slot)
        c1, dt = _cpu_s(), time.perf_counter() - t0
        best["alone"] = min(best.get("alone", (float("inf"),)), (dt, 0.0, c1[0] - c0[0] + c1[1] - c0[1]))
        done = []
        engine = ex.Engine(runners, batch_size=32, workers=1, resize_on="device")
        c0 = _cpu_s()
        st = engine.run(jobs, lambda m, f, r, done=done: done.append(m), lambda m, why, done=done: done.append(why))
        c1 = _cpu_s()
        assert sorted(done) == sorted(store.ids()), done
        best["engine"] = min(best.get("engine", (float("inf"),)), (st.wall_s, c1[0] - c0[0], c1[1] - c0[1], st))
    torch.set_num_threads(os.cpu_count() or 1)
    ms = lambda sec: 1000 * sec / frames  # noqa: E731
    alone_wall, _, alone_cpu = best["alone"]
    wall, main_cpu, kids_cpu, st = best["engine"]
    device_work = st.resize_s + st.batch_s + st.copy_s + sum(st.model_s.values())
    print(
        f"worker work alone (1 process + ffmpeg): {frames / alone_wall:7.1f} frames/s, {ms(alone_cpu):.2f} CPU ms "
        "per frame"
    )
    print(
        f"engine, 1 worker + main process:        {frames / wall:7.1f} frames/s; CPU ms per frame: workers + "
        f"ffmpeg {ms(kids_cpu):.2f}, main process {ms(main_cpu):.2f}, of which {ms(device_work):.2f} is work a "
        "GPU does in a GPU run (batching, layout copy)"
    )
    main_rest = ms(main_cpu) - ms(device_work)
    keeps_up = f"{1000 / main_rest:,.0f}" if main_rest > 0.02 else "over 50,000"
    print(
        f"  -> the workers' CPU per frame in the engine is {100 * ms(kids_cpu) / ms(alone_cpu):.0f}% of the work "
        f"alone; the main process's own share, {max(0.0, main_rest):.2f} ms per frame, keeps up with {keeps_up} "
        "frames/s (Trailers12k in 0.9 h needs about 10,800)"
    )
    print(
        f"  ({width}x{height}, {frames * height * width * 3 / 2**30:.1f} GiB of raw frames through the ring; "
        f"best of {args.repeat}; on 2 cores the three busy processes share the cores, so wall figures say little)"
    )
    return {
        "alone_frames_per_s": frames / alone_wall,
        "alone_cpu_ms": ms(alone_cpu),
        "engine_frames_per_s": frames / wall,
        "engine_workers_cpu_ms": ms(kids_cpu),
        "engine_main_cpu_ms": ms(main_cpu),
        "engine_device_work_ms": ms(device_work),
    }


def bench_throughput(args, work: Path, video: Path, shots_long: Path) -> dict:
    section(
        f"throughput: t12k extract, one backbone at a time, device {args.device}, "
        f"{args.workers} worker(s), batch {args.batch_size}, after a warm-up run; 2D on "
        f"{args.seconds_2d:g} s of trailer, 3D on {args.seconds:g} s"
    )
    results = {}
    print(
        f"{'backbone':<13} {'clips':>6} {'clips/s':>8} {'wall s':>7} {'worker s':>9} {'wait %':>7} "
        f"{'model %':>8} {'write %':>8}  model clips/s"
    )
    for key in args.backbones:
        seconds = args.seconds_2d if get_spec(key).kind == "2d" else args.seconds
        folder, shots = collection(work, video, shots_long, 1, seconds or None)
        warm, _ = collection(work, video, shots_long, 1, 2.0)
        out = work / "out_throughput" / key
        shutil.rmtree(out, ignore_errors=True)
        ex.extract_features(
            warm,
            work / "shots_n1_s2.zarr",
            work / "warm",
            backbones=key,
            weights="none",
            device=args.device,
            workers=args.workers,
            batch_size=args.batch_size,
            precision=args.precision,
            progress=False,
            log=lambda m: None,
        )
        shutil.rmtree(work / "warm")
        runner_stats = {}
        real_engine = ex.Engine

        class Recording(real_engine):  # keep the engine's own timing figures
            def run(self, *a, _stats=runner_stats, **k):
                st = super().run(*a, **k)
                _stats["stats"] = st
                return st

        ex.Engine = Recording
        try:
            ex.extract_features(
                folder,
                shots,
                out,
                backbones=key,
                weights="none",
                device=args.device,
                workers=args.workers,
                batch_size=args.batch_size,
                precision=args.precision,
                progress=False,
                log=lambda m: None,
            )
        finally:
            ex.Engine = real_engine
        st = runner_stats["stats"]
        model = sum(st.model_s.values())
        results[key] = {
            "clips": st.clips,
            "clips_per_s": st.clips / st.wall_s,
            "wall_s": st.wall_s,
            "worker_s": st.worker_s,
            "wait_share": st.wait_s / st.wall_s,
            "model_share": model / st.wall_s,
            "write_share": st.write_s / st.wall_s,
            "model_clips_per_s": st.clips / model,
        }
        r = results[key]
        print(
            f"{key:<13} {st.clips:>6} {r['clips_per_s']:>8.2f} {st.wall_s:>7.1f} {st.worker_s:>9.1f} "
            f"{100 * r['wait_share']:>6.1f}% {100 * r['model_share']:>7.1f}% {100 * r['write_share']:>7.1f}%  "
            f"{r['model_clips_per_s']:.2f}",
            flush=True,
        )
    return results


def _cpu_s() -> tuple[float, float]:
    """CPU seconds of this process and of its finished children (the ffmpeg decoders)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def bench_workers(args, work: Path, video: Path, shots: Path) -> dict:
    section("decode workers alone (one process, one ffmpeg thread): decode + histograms + resize/crop")
    store = ShotStore.open(shots)
    frames_n = len(store.predictions("t00"))
    sh = store.shots("t00")
    torch.set_num_threads(1)
    results = {}
    groups = {}
    for key in args.backbones:
        g, _ = ex.split_transforms(get_spec(key))
        groups.setdefault(g, []).append(key)
    every = list(groups)
    cases = (
        [("decode only", None, False)]
        + [("+".join(keys), [g], False) for g, keys in groups.items()]
        + [
            ("ALL, resize in workers", every, False),
            ("ALL, resize on device", every, True),
            ("ALL, resize + reps on device", every, "reps"),
        ]
    )
    print(
        "ms per frame: wall, and CPU of the worker process and of its ffmpeg; a 16-core machine runs "
        "about 15 / CPU of them at once"
    )
    print(
        f"{'inputs for':<28} {'frames/s':>9} {'wall':>6} {'worker':>7} {'ffmpeg':>7} {'CPU':>6}   "
        f"(the run with the least CPU of {args.repeat})"
    )
    for _ in ex.iter_frames(video, threads=1):  # warm-up: page cache, ffmpeg and torch start-up
        pass
    ring = ex.FrameRing(2, ex.Engine.SLOT_BYTES)
    for name, gs, raw in cases:
        fps = 24 if gs is None or all(g.kind == "2d" for g in gs) else args.fps
        plan = plan_clips(sh, frames_n, "shot", 24, fps)
        best = (float("inf"), 0.0, 0.0)
        for _ in range(max(1, args.repeat)):
            c0, t0 = _cpu_s(), time.perf_counter()
            if gs is None:
                n = sum(1 for _ in ex.iter_frames(video, threads=1))
                assert n == frames_n, (n, frames_n)
            else:
                # raw frames go into reused ring slots, made once as in a run
                stream = ex.ClipStream(
                    [ex.Job("t00", str(video), plan)],
                    gs,
                    chunk=8 if raw else 32,
                    decode_threads=1,
                    raw=bool(raw),
                    ring=ring if raw else None,
                    reps_on_device=raw == "reps",
                )
                for item in stream:
                    assert isinstance(item, ex.Chunk), item
                    for x in item.inputs:
                        if isinstance(x, ex.SlotRef):
                            ring.release(x.slot)
            dt, c1 = time.perf_counter() - t0, _cpu_s()
            run = (dt, c1[0] - c0[0], c1[1] - c0[1])
            # the run with the least CPU: on a shared machine, noise only ever adds
            best = min(best, run, key=lambda r: r[1] + r[2] if r[0] < float("inf") else float("inf"))
        dt, me, kids = (x * 1000 / frames_n for x in best)
        results[name] = {
            "frames_per_s": 1000 / dt,
            "clips_per_s": len(plan) / best[0],
            "wall_ms": dt,
            "worker_cpu_ms": me,
            "ffmpeg_cpu_ms": kids,
            "cpu_ms": me + kids,
        }
        print(f"{name:<28} {1000 / dt:>9.1f} {dt:>6.2f} {me:>7.2f} {kids:>7.2f} {me + kids:>6.2f}", flush=True)
    # what the ring saves: writing decoded frames into fresh shared memory (a new segment per
    # chunk, as PyTorch's DataLoader does for a worker's tensors) or into a reused slot
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
    torch.set_num_threads(os.cpu_count() or 1)
    return results


def bench_precision(args, work: Path, video: Path, shots: Path) -> dict:
    section(f"precision: autocast bf16 / fp16 against fp32 on {args.device} (random weights)")
    store = ShotStore.open(shots)
    plan = plan_clips(store.shots("t00"), len(store.predictions("t00")), "shot", 24, args.fps)
    idx = np.linspace(0, len(plan) - 1, min(len(plan), args.precision_clips)).astype(int)
    sub = ex.ClipPlan(plan.frames[idx], plan.spans[idx], plan.fpc, plan.fps, plan.strategy)
    results = {}
    print(f"{'backbone':<13} {'precision':<9} {'max |d| / max |f|':>18} {'mean rel. L2':>13} {'min cosine':>11}")
    for key in args.backbones:
        ref = None
        for prec in ("fp32", "bf16", "fp16"):
            try:
                runner = ex.BackboneRunner(get_spec(key), "none", args.device, args.batch_size, prec)
                feats, _ = ex.clip_features(video, sub, [runner])
            except RuntimeError as exc:
                print(f"{key:<13} {prec:<9} not supported here: {str(exc).splitlines()[0][:60]}")
                continue
            f = feats[key].astype(np.float64)
            if ref is None:
                ref = f
                continue
            d = np.abs(f - ref).max() / np.abs(ref).max()
            l2 = np.mean(np.linalg.norm(f - ref, axis=1) / np.linalg.norm(ref, axis=1))
            cos = np.min(np.sum(f * ref, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1)))
            results[f"{key}/{prec}"] = {"max_rel": d, "mean_rel_l2": l2, "min_cosine": cos}
            print(f"{key:<13} {prec:<9} {d:>18.2e} {l2:>13.2e} {cos:>11.6f}", flush=True)
    return results


def _measure_tree(proc, peak: dict) -> None:
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
        th = threading.Thread(target=_measure_tree, args=(proc, peak))
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


def estimate(results: dict, args) -> None:
    section("Trailers12k estimate (35 M frames, 1.46 M Shot-24 clips)")
    w = results.get("workers")
    if w:
        for name in ("ALL, resize in workers", "ALL, resize on device", "ALL, resize + reps on device"):
            if name not in w:
                continue
            cpu_ms = w[name]["cpu_ms"]
            for cores in (2, 16):
                procs = max(1, cores - 1)  # one core for the main process
                hours = T12K_FRAMES * cpu_ms / 1000 / procs / 3600
                print(
                    f"CPU side, {name}: {cpu_ms:.2f} CPU ms per frame (worker + ffmpeg) on {procs} of "
                    f"{cores} cores like these: {hours:.2f} h for 35 M frames"
                )
    t = results.get("throughput")
    if t:
        for key, r in t.items():
            hours = T12K_CLIPS / r["model_clips_per_s"] / 3600
            print(
                f"model {key} on {args.device}: {r['model_clips_per_s']:.2f} clips/s -> {hours:.1f} h for "
                f"Trailers12k on this device"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="sample,pipeline,throughput,workers,precision,memory,store")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbones", default="all")
    ap.add_argument("--memory-backbones", default="shufflenet2d")
    ap.add_argument("--workers", default="1")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--fps", type=int, default=24, help="frame rate of 3D clips")
    ap.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="3D throughput, workers, precision: cut the sample trailer to this many seconds (0: all 210 s)",
    )
    ap.add_argument("--seconds-2d", type=float, default=60.0, help="2D throughput: seconds of the sample trailer")
    ap.add_argument("--precision-clips", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="workers, pipeline: runs per case, the best is kept")
    ap.add_argument(
        "--sample-backbones", help="sample section: backbones (default all on a GPU, shufflenet2d,resnet on a CPU)"
    )
    ap.add_argument("--sample-trailers", type=int, help="sample section: trailers (default 32 on a GPU, 4 on a CPU)")
    ap.add_argument("--sample-seconds", type=float, default=60.0, help="sample section: seconds per trailer")
    ap.add_argument("--sample-workers", default="auto", help="sample section: decode workers (auto: as t12k extract)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/t12k-bench-extract"))
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    args.backbones = list(REGISTRY) if args.backbones == "all" else args.backbones.split(",")
    only = args.only.split(",")
    print(
        f"torch {torch.__version__}, {os.cpu_count()} cores, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    video = trailer_210s(args.work)
    shots = shots_for(args.work, video)
    results: dict = {}
    folder, store = collection(args.work, video, shots, 1, args.seconds or None)
    sample = folder / "t00.mp4"
    if "sample" in only:
        results["sample"] = bench_sample(args, args.work, video, shots)
    if "pipeline" in only:
        results["pipeline"] = bench_pipeline(args, args.work, video, shots)
    if "throughput" in only:
        results["throughput"] = bench_throughput(args, args.work, video, shots)
    if "workers" in only:
        results["workers"] = bench_workers(args, args.work, sample, store)
    if "precision" in only:
        results["precision"] = bench_precision(args, args.work, sample, store)
    if "memory" in only:
        results["memory"] = bench_memory(args, args.work, video, shots)
    if "store" in only:
        results["store"] = bench_store(args, args.work)
    estimate(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
