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
import time
from pathlib import Path

import numpy as np
import torch
from extract_cases import (
    T12K_CLIPS,
    T12K_FRAMES,
    FreeModel,
    bench_memory,
    bench_store,
    collection,
    cpu_seconds,
    recording_engine,
    section,
    shared_memory_writes,
    shots_for,
    trailer_210s,
)

from t12k.backbones import REGISTRY, Kind, get_spec
from t12k.errors import first_line
from t12k.pipeline import extract as ex
from t12k.pipeline.media import iter_frames
from t12k.shots import ClipPlan, plan_clips
from t12k.storage import ShotStore


def _quiet(message: str) -> None:
    """A stage's log, silenced."""


def _report_sample(st, frames: int, workers: int) -> tuple[dict, str, float]:
    """Print where the sample run's time went; the busy shares, the limit and the hours
    Trailers12k would take at this rate."""
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
    return busy, limit, hours


def bench_sample(args, work: Path, video: Path, shots_long: Path) -> dict:
    """All chosen backbones at once over `--sample-trailers` trailers, as a real run does."""
    cuda = args.device.startswith("cuda")
    keys = args.sample_backbones or ("all" if cuda else "shufflenet2d,resnet")
    n = args.sample_trailers or (32 if cuda else 4)
    seconds = args.sample_seconds
    workers = ex.worker_count(args.sample_workers, args.device)
    resize_on = "device" if cuda else "workers"
    section(
        f"sample: t12k extract --backbone {keys} on {n} trailers of {seconds:g} s, device {args.device}, "
        f"{workers} worker(s), resize on {resize_on}, batch {args.batch_size}, {args.precision}"
    )
    folder, shots = collection(work, video, shots_long, n, seconds)
    frames = sum(len(ShotStore.open(shots).predictions(m)) for m in ShotStore.open(shots).ids())
    cfg = ex.ExtractConfig(
        backbones=keys,
        weights="none",
        device=args.device,
        workers=workers,
        batch_size=args.batch_size,
        precision=args.precision,
        resize_on=resize_on,
    )
    warm, _ = collection(work, video, shots_long, 1, 2.0)  # model loading, cuDNN autotuning, page cache
    ex.extract_features(warm, work / "shots_n1_s2.zarr", work / "warm", cfg, progress=False, log=_quiet)
    shutil.rmtree(work / "warm")
    out = work / "out_sample"
    shutil.rmtree(out, ignore_errors=True)
    with recording_engine() as got:
        summary = ex.extract_features(folder, shots, out, cfg, progress=False, log=_quiet)
    assert not summary.failed, summary.failed
    st = got["stats"]
    wall = st.wall_s
    busy, limit, hours = _report_sample(st, frames, workers)
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


def bench_pipeline(args, work: Path, video: Path, shots_long: Path) -> dict:
    n, seconds = 4, 30.0
    section(
        f"pipeline: the engine at the decode limit ({n} trailers of {seconds:g} s, 2D + 3D inputs at "
        "fps 24 shipped raw, free model, 1 worker) against the worker's work alone"
    )
    folder, shots_path = collection(work, video, shots_long, n, seconds)
    store = ShotStore.open(shots_path)
    height, width = iter_frames(folder / "t00.mp4").__next__().shape[:2]
    jobs = [
        ex.Job(m, str(folder / f"{m}.mp4"), plan_clips(store.shots(m), len(store.predictions(m)), "shot", 24, 24))
        for m in store.ids()
    ]
    frames = sum(len(store.predictions(m)) for m in store.ids())
    runners = [FreeModel(Kind.IMAGE, (height, width)), FreeModel(Kind.VIDEO, (height, width))]
    geometries = [r.geometry for r in runners]
    torch.set_num_threads(1)
    best: dict = {}
    ring = ex.FrameRing(2, ex.Engine.SLOT_BYTES)  # made once, as in a run (not timed)
    for _ in range(max(1, args.repeat)):
        c0, t0 = cpu_seconds(), time.perf_counter()
        for item in ex.ClipStream(jobs, geometries, chunk=8, decode_threads=1, raw=True, ring=ring):
            assert isinstance(item, ex.Chunk), item
            for x in item.inputs:
                if isinstance(x, ex.SlotRef):
                    ring.release(x.slot)
        c1, dt = cpu_seconds(), time.perf_counter() - t0
        best["alone"] = min(best.get("alone", (float("inf"),)), (dt, 0.0, c1[0] - c0[0] + c1[1] - c0[1]))
        done = []
        engine = ex.Engine(runners, batch_size=32, workers=1, resize_on="device")
        c0 = cpu_seconds()
        st = engine.run(jobs, lambda m, f, r, done=done: done.append(m), lambda m, why, done=done: done.append(why))
        c1 = cpu_seconds()
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
        seconds = args.seconds_2d if get_spec(key).kind == Kind.IMAGE else args.seconds
        folder, shots = collection(work, video, shots_long, 1, seconds or None)
        warm, _ = collection(work, video, shots_long, 1, 2.0)
        out = work / "out_throughput" / key
        shutil.rmtree(out, ignore_errors=True)
        cfg = ex.ExtractConfig(
            backbones=key,
            weights="none",
            device=args.device,
            workers=args.workers,
            batch_size=args.batch_size,
            precision=args.precision,
        )
        ex.extract_features(warm, work / "shots_n1_s2.zarr", work / "warm", cfg, progress=False, log=_quiet)
        shutil.rmtree(work / "warm")
        with recording_engine() as got:  # keep the engine's own timing figures
            ex.extract_features(folder, shots, out, cfg, progress=False, log=_quiet)
        st = got["stats"]
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


def _worker_cases(backbones: list[str]) -> list[tuple[str, list | None, bool | str]]:
    """(name, geometries, raw) per case: decode alone, each geometry group, and all of them with
    the resize in the workers, on the device, and with the representatives on the device too."""
    groups: dict = {}
    for key in backbones:
        g, _ = ex.split_transforms(get_spec(key))
        groups.setdefault(g, []).append(key)
    every = list(groups)
    return (
        [("decode only", None, False)]
        + [("+".join(keys), [g], False) for g, keys in groups.items()]
        + [
            ("ALL, resize in workers", every, False),
            ("ALL, resize on device", every, True),
            ("ALL, resize + reps on device", every, "reps"),
        ]
    )


def _worker_pass(
    video: Path, plan: ClipPlan, gs: list | None, raw: bool | str, ring: ex.FrameRing, frames: int
) -> None:
    """One worker's work on the trailer of `frames` frames, in this process: decode only, or
    every chunk's inputs."""
    if gs is None:
        n = sum(1 for _ in iter_frames(video, threads=1))
        assert n == frames, (n, frames)
        return
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


def _least_cpu(repeat: int, work) -> tuple[float, float, float]:
    """(wall, own CPU, children's CPU) seconds of the run of `work()` with the least CPU: on a
    shared machine, noise only ever adds."""
    best = (float("inf"), 0.0, 0.0)
    for _ in range(max(1, repeat)):
        c0, t0 = cpu_seconds(), time.perf_counter()
        work()
        dt, c1 = time.perf_counter() - t0, cpu_seconds()
        run = (dt, c1[0] - c0[0], c1[1] - c0[1])
        best = min(best, run, key=lambda r: r[1] + r[2] if r[0] < float("inf") else float("inf"))
    return best


def bench_workers(args, work: Path, video: Path, shots: Path) -> dict:
    section("decode workers alone (one process, one ffmpeg thread): decode + histograms + resize/crop")
    store = ShotStore.open(shots)
    frames_n = len(store.predictions("t00"))
    sh = store.shots("t00")
    torch.set_num_threads(1)
    results = {}
    print(
        "ms per frame: wall, and CPU of the worker process and of its ffmpeg; a 16-core machine runs "
        "about 15 / CPU of them at once"
    )
    print(
        f"{'inputs for':<28} {'frames/s':>9} {'wall':>6} {'worker':>7} {'ffmpeg':>7} {'CPU':>6}   "
        f"(the run with the least CPU of {args.repeat})"
    )
    for _ in iter_frames(video, threads=1):  # warm-up: page cache, ffmpeg and torch start-up
        pass
    ring = ex.FrameRing(2, ex.Engine.SLOT_BYTES)
    for name, gs, raw in _worker_cases(args.backbones):
        fps = 24 if gs is None or all(g.kind == Kind.IMAGE for g in gs) else args.fps
        plan = plan_clips(sh, frames_n, "shot", 24, fps)
        best = _least_cpu(
            args.repeat, lambda plan=plan, gs=gs, raw=raw: _worker_pass(video, plan, gs, raw, ring, frames_n)
        )
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
    results.update(shared_memory_writes())
    torch.set_num_threads(os.cpu_count() or 1)
    return results


def bench_precision(args, work: Path, video: Path, shots: Path) -> dict:
    section(f"precision: autocast bf16 / fp16 against fp32 on {args.device} (random weights)")
    store = ShotStore.open(shots)
    plan = plan_clips(store.shots("t00"), len(store.predictions("t00")), "shot", 24, args.fps)
    idx = np.linspace(0, len(plan) - 1, min(len(plan), args.precision_clips)).astype(int)
    sub = ClipPlan(plan.frames[idx], plan.spans[idx], plan.fpc, plan.fps, plan.strategy)
    results = {}
    print(f"{'backbone':<13} {'precision':<9} {'max |d| / max |f|':>18} {'mean rel. L2':>13} {'min cosine':>11}")
    for key in args.backbones:
        ref = None
        for prec in ("fp32", "bf16", "fp16"):
            try:
                runner = ex.BackboneRunner(get_spec(key), "none", args.device, args.batch_size, prec)
                feats, _ = ex.clip_features(video, sub, [runner])
            except RuntimeError as exc:
                print(f"{key:<13} {prec:<9} not supported here: {first_line(exc)[:60]}")
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
