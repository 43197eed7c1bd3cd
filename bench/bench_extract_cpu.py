"""Extraction on a CPU: t12k's engine against the plain loop a user writes without t12k (issue 14).

For each backbone, on the same clips (a Shot-24 plan of the trailer, shots from TransNet V2),
two sides run, each as a whole fresh process, alternated, best of `--rounds`:

  t12k   the real engine (`Engine` + `BackboneRunner`, decoding as `--workers auto` does on a
         CPU, in a background thread of the main process; the engine's default batch of 32
         clips), random weights, its modules imported as the `t12k` program imports them
         (`t12k.startup`: the garbage collector paused during the imports, then frozen) and ending
         as it ends (`t12k.startup.leave`: no interpreter teardown);
  plain  OpenCV decode; 2D: the middle frame of each clip through the weights' own
         `transforms()` and the model, batches of 32; 3D: every frame of each clip (black
         padding as t12k pads) through `transforms()`, batches of 4.

Both sides build the network with `load_backbone(key, "none")` (the same random weights: the
hubs are unreachable here and the compute is the same as with pretrained ones) and keep
torch's thread count (`torch.get_num_threads()`, the number of cores). Printed per backbone:
clips/s over the whole process (start-up, imports and model building included, as a user
waits for it) and over the extraction loop alone, the ratio t12k/plain, the peak memory of each
side (ru_maxrss of the main process, and the peak PSS of its whole process tree, decode
workers and ffmpeg included, sampled every 0.2 s) and its ratio. The PSS is sampled in one
more run of each side, not in the timed ones: reading a 1.5 GB process's smaps every 0.2 s
slowed it (R(2+1)D: t12k's run by 1.1 s, the plain loop's by 0.6 s). For 3D backbones the two
sides see the very same inputs (the same decoded frames, tested byte for byte), so the largest
difference of their features is printed too, with the largest feature (random weights give
features in the thousands, so float32 rounding shows in the third decimal) and whether every
feature is within 1e-4 absolute plus 1e-4 relative, the equivalence tests' criterion.

Against the limits (issue 24): a third side, the network alone, runs t12k's runner on the
same runtime in the engine's model launches over the clips' inputs already decoded and resized
in memory, the network made and run once before the clock starts; ffmpeg's decode alone (the
frames the clips reach to raw RGB, no Python) is timed beside it. Printed per backbone: the
whole t12k process's seconds, the network's, their ratio (the goal: 0.90 or more), the decode's
and whole/decode (where the decode costs more than the network, the goal is 1.2x or less),
and the seconds a trailer more costs once start-up is paid (t12k over `--steady` copies: from
the first copy's last clip to the last copy's, in that one process, over K - 1; the difference
of two runs' totals mixed two runs' noise and set a best-of-rounds run against a single one)
against the larger of the two bounds and against the floor of this machine: the network plus
the decode's CPU seconds shared by the cores (a network that keeps every core busy cannot hide
the decode's CPU time; only a decode on other cores, or a GPU, takes it off). The same figures
follow in CPU seconds (user + system of every thread and of ffmpeg), which a loaded machine
hardly moves: read those when `uptime` shows other work.

`--trailers N` also runs t12k over 1 and N copies of the trailer (memory flat in the number of
trailers). The video defaults to Big Buck Bunny's trailer from shared/media, normalized as
`t12k fetch` leaves videos (H.264, 24 fps, short side 360); work files are cached in `--work`.

`--runtime` and `--workers` set t12k's own options (to measure each step: `--runtime torch` is
PyTorch in channels-last, `openvino` needs the package). Converted OpenVINO networks are kept
in $T12K_CACHE (~/.cache/t12k): the first t12k run of a backbone also converts it (5-60 s).

    .venv/bin/python bench/bench_extract_cpu.py [--backbones all] [--rounds 3] [--seconds-3d 20]
        [--trailers 20] [--runtime auto] [--video PATH] [--work /tmp/t12k-bench-cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
BBB = HERE.parent.parent.parent / "shared" / "media" / "bbb-trailer.mp4"
if not BBB.is_file():
    BBB = Path("/work/shared/media/bbb-trailer.mp4")
BATCH_2D, BATCH_3D = 32, 4  # the plain loop's batches (the issue's)


# ---------------------------------------------------------------- preparation (parent process)


def prepare(video: Path, work: Path, seconds: float | None) -> tuple[Path, Path]:
    """The normalized video and the clip plan both sides use (an .npz of frames and spans)."""
    from t12k.pipeline.media import normalize
    from t12k.pipeline.shots_command import detect_shots
    from t12k.shots import plan_clips
    from t12k.storage import ShotStore

    folder = work / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    norm = folder / "trailer.mp4"
    stamp = work / "source.txt"
    if not norm.is_file() or not stamp.is_file() or stamp.read_text() != str(video.resolve()):
        normalize(video, norm)
        stamp.write_text(str(video.resolve()))
        for old in work.glob("shots*.zarr"):
            shutil.rmtree(old)
    shots_path = work / "shots.zarr"
    store = ShotStore.open(shots_path) if shots_path.exists() else None
    if store is None or "trailer" not in store:
        detect_shots(folder, shots_path, device="cpu", progress=False)
        store = ShotStore.open(shots_path)
    frames = len(store.predictions("trailer"))
    plan = plan_clips(store.shots("trailer"), frames, "shot", 24, 24)
    keep = np.ones(len(plan), bool) if not seconds else plan.spans[:, 1] < int(seconds * 24)
    if not keep.any():
        raise SystemExit(f"--seconds {seconds}: no clip of the trailer ends that early; give more seconds")
    out = work / f"plan_{seconds or 0:g}.npz"
    np.savez(out, frames=plan.frames[keep], spans=plan.spans[keep])
    return norm, out


def load_plan(path: Path):
    from t12k.shots import ClipPlan

    z = np.load(path)
    return ClipPlan(z["frames"].astype(np.int32), z["spans"].astype(np.int32), 24, 24, "shot")


# ---------------------------------------------------------------- the two sides (child processes)


def side_t12k(key: str, video: str, plan_path: Path, trailers: int, runtime: str, workers: str) -> dict:
    """t12k's engine over `trailers` copies of the trailer, as `t12k extract` runs it on a CPU."""
    from t12k.backbones import get_spec
    from t12k.pipeline import extract as ex

    plan = load_plan(plan_path)
    cfg = ex.ExtractConfig(backbones=key, weights="none", device="cpu", runtime=runtime, workers=workers)
    runner = ex.BackboneRunner(get_spec(key), cfg.weights, "cpu", cfg.batch_size, cfg.precision, runtime=cfg.runtime)
    workers = ex.worker_count(cfg.workers, "cpu")
    engine = ex.Engine([runner], cfg.batch_size, workers=workers, prefetch=cfg.prefetch, resize_on="workers")
    got: dict = {}
    failed: dict = {}
    done: list[tuple[float, float]] = []  # (seconds, CPU seconds with ffmpeg's) at each trailer's last clip

    def on_done(mid: str, feats: dict, reps: object) -> None:
        got.setdefault("feats", feats[key])
        done.append((time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)))

    t0 = time.perf_counter()
    engine.run([ex.Job(f"t{i}", video, plan) for i in range(trailers)], on_done, failed.__setitem__)
    loop_s = time.perf_counter() - t0
    if failed:
        raise SystemExit(f"t12k failed: {failed}")
    return {"clips": len(plan) * trailers, "loop_s": loop_s, "feats": got["feats"], "done": done}


def _plain_batches(key: str, video: str, plan) -> object:
    """The plain loop's inputs: OpenCV decode, clip by clip, in batches."""
    import cv2
    import torch

    from t12k.backbones import Kind, get_spec

    two_d = get_spec(key).kind == Kind.IMAGE
    batch = BATCH_2D if two_d else BATCH_3D
    cap = cv2.VideoCapture(video)
    pending: list = []
    held: dict[int, np.ndarray] = {}
    needed = [
        {(s + e) // 2} if two_d else {int(i) for i in row if i >= 0} for (s, e), row in zip(plan.spans, plan.frames)
    ]
    i, c = 0, 0
    while c < len(plan):
        ok, bgr = cap.read()
        if not ok:
            raise SystemExit(f"{video}: ran out of frames at {i}")
        if i in needed[c]:
            held[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if i == plan.spans[c, 1]:
            if two_d:
                pending.append(torch.from_numpy(held[(plan.spans[c, 0] + i) // 2]).permute(2, 0, 1))
            else:
                black = np.zeros_like(bgr)
                clip = np.stack([held[int(j)] if j >= 0 else black for j in plan.frames[c]])
                pending.append(torch.from_numpy(clip).permute(0, 3, 1, 2))
            held = {}
            c += 1
            if len(pending) == batch or c == len(plan):
                yield torch.stack(pending)
                pending = []
        i += 1
    cap.release()


def side_plain(key: str, video: str, plan_path: Path) -> dict:
    """What a user writes without t12k: OpenCV frames, the weights' transforms, the model."""
    import torch

    from t12k.backbones import get_spec, load_backbone

    plan = load_plan(plan_path)
    model, _ = load_backbone(key, "none")
    transform = get_spec(key).transforms()
    out = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x in _plain_batches(key, video, plan):
            out.append(model(transform(x)))
    loop_s = time.perf_counter() - t0
    return {"clips": len(plan), "loop_s": loop_s, "feats": torch.cat(out).numpy()}


def side_net(key: str, video: str, plan_path: Path, runtime: str) -> dict:
    """The network alone: t12k's runner on the same runtime and in the engine's model launches
    (on a CPU, its micro-batches), the clips' inputs decoded and resized into memory first and
    the network made and run once before the clock starts; only the forward passes are timed."""
    import torch

    from t12k.backbones import Kind, get_spec
    from t12k.pipeline import extract as ex
    from t12k.pipeline.extract.clip_inputs import apply_geometries, iter_clip_inputs

    plan = load_plan(plan_path)
    spec = get_spec(key)
    cfg = ex.ExtractConfig(backbones=key, weights="none", device="cpu", runtime=runtime)
    runner = ex.BackboneRunner(spec, cfg.weights, "cpu", cfg.batch_size, cfg.precision, runtime=cfg.runtime)
    launch = ex.Engine([runner], cfg.batch_size, workers=0).launch_size({"t": plan})
    two_d = spec.kind == Kind.IMAGE
    x = apply_geometries([runner.geometry], list(iter_clip_inputs(video, plan, need_2d=two_d, need_3d=not two_d)))[0]
    runner.forward(x[:launch])  # the network made (OpenVINO: converted or read, compiled) and warm
    out = []
    cpu0, t0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), launch):
            out.append(runner.forward(x[i : i + launch]))
    loop_s, loop_cpu_s = time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - cpu0
    return {
        "clips": len(plan),
        "loop_s": loop_s,
        "loop_cpu_s": loop_cpu_s,
        "launch": launch,
        "feats": torch.cat(out).numpy(),
    }


def _cpu(who: int) -> float:
    """User plus system CPU seconds of this process (all its threads) or of its waited-for children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def decode_alone(video: Path, plan_path: Path) -> tuple[float, float]:
    """Seconds ffmpeg takes to decode the frames the clips reach to raw RGB (no Python), wall
    and CPU: what a backbone whose network is cheaper than its decode is bounded by, and the
    CPU time a network that keeps every core busy cannot hide."""
    from t12k.pipeline.media import ffmpeg_exe

    last = int(load_plan(plan_path).spans[-1, 1]) + 1
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", "0", "-i", str(video), "-frames:v", str(last)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([*cmd, "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", "/dev/null"], check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def child(args) -> None:
    if args.child == "t12k":
        from t12k.startup import settled_imports

        with settled_imports():  # as the `t12k` program imports its modules
            import t12k.pipeline.extract  # noqa: F401
    import torch

    if args.child == "t12k":
        r = side_t12k(args.backbones, args.video, Path(args.plan), args.trailers, args.runtime, args.workers)
    elif args.child == "net":
        r = side_net(args.backbones, args.video, Path(args.plan), args.runtime)
    else:
        r = side_plain(args.backbones, args.video, Path(args.plan))
    np.save(args.feats_out, r.pop("feats"))
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    r |= {"rss_main": me.ru_maxrss * 1024, "rss_children": kids.ru_maxrss * 1024, "threads": torch.get_num_threads()}
    r["cpu_s"] = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)  # the whole process, ffmpeg included
    if args.child in ("t12k", "net"):
        from t12k.pipeline.extract.backbone import resolve_runtime

        r["runtime"] = resolve_runtime(args.runtime, "cpu", "fp32")
    print("RESULT " + json.dumps(r), flush=True)
    if args.child == "t12k":  # it ends as the `t12k` program ends (no interpreter teardown)
        from t12k.startup import leave

        leave(0)


# ---------------------------------------------------------------- measuring (parent process)


def _tree(pid: int) -> list[int]:
    """The process and its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return out


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_side(args, side: str, key: str, video: Path, plan: Path, trailers: int = 1, sample: bool = True) -> dict:
    """One side as a fresh process: its result, whole wall time and (`sample`) peak tree PSS."""
    feats = Path(args.work) / f"feats_{side}_{key}.npy"
    cmd = [sys.executable, str(HERE), "--child", side, "--backbones", key, "--video", str(video), "--plan", str(plan)]
    cmd += ["--trailers", str(trailers), "--feats-out", str(feats), "--work", str(args.work), "--runtime", args.runtime]
    cmd += ["--workers", args.workers]
    peak = {"pss": 0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def sampler() -> None:
        while sample and proc.poll() is None:
            peak["pss"] = max(peak["pss"], sum(_pss(p) for p in _tree(proc.pid)))
            time.sleep(0.2)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{side} {key} failed (exit {proc.returncode})")
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT ") :])
    return r | {"wall_s": wall, "tree_pss": peak["pss"], "feats_path": str(feats)}


def _best(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["wall_s"])
    return best | {
        "loop_s": min(r["loop_s"] for r in runs),
        "rss_main": max(r["rss_main"] for r in runs),
    }


def bench_backbone(args, key: str, kind: str, video: Path, plan: Path) -> dict:
    sides = ("t12k", "plain", "net")
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    decode: list[tuple[float, float]] = []
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            runs[side].append(run_side(args, side, key, video, plan, sample=False))
        decode.append(decode_alone(video, plan))
    pss = {side: run_side(args, side, key, video, plan)["tree_pss"] for side in ("t12k", "plain")}  # its own run
    t, p = _best(runs["t12k"]) | {"tree_pss": pss["t12k"]}, _best(runs["plain"]) | {"tree_pss": pss["plain"]}
    net = _best(runs["net"])
    res = {
        "clips": t["clips"],
        "t12k": t,
        "plain": p,
        "net": net,
        "decode_s": min(decode)[0],
        "decode_cpu_s": min(decode)[1],
    }
    if args.steady > 1:  # a trailer more, once start-up is paid: from the first copy's end to the last's, in one run
        done = run_side(args, "t12k", key, video, plan, trailers=args.steady, sample=False)["done"]
        (first_s, first_cpu), (last_s, last_cpu) = done[0], done[-1]
        res["per_trailer_s"] = (last_s - first_s) / (args.steady - 1)
        res["per_trailer_cpu_s"] = (last_cpu - first_cpu) / (args.steady - 1)
    a, n = np.load(t["feats_path"]), np.load(net["feats_path"])
    res["net_max_diff"] = float(np.abs(a - n).max())  # the same runtime and inputs: rounding of other batches
    if kind == "3d":
        b = np.load(p["feats_path"])
        res["max_feature_diff"] = float(np.abs(a - b).max())
        res["feature_scale"] = float(np.abs(b).max())  # random He-init features reach thousands
        res["within_1e-4"] = bool(np.allclose(a, b, atol=1e-4, rtol=1e-4))
    mib = 2**20
    diff = ""
    if "max_feature_diff" in res:
        diff = (
            f"  3D features: max |diff| {res['max_feature_diff']:.1e} of max |feature| {res['feature_scale']:.3g}"
            f" (within 1e-4 abs + 1e-4 rel: {res['within_1e-4']})"
        )
    print(
        f"{key:<13} {t['clips']:>5} {t['clips'] / t['wall_s']:>7.2f} {p['clips'] / p['wall_s']:>7.2f} "
        f"{p['wall_s'] / t['wall_s']:>5.2f}x  {t['clips'] / t['loop_s']:>7.2f} {p['clips'] / p['loop_s']:>7.2f} "
        f"{p['loop_s'] / t['loop_s']:>5.2f}x  {t['rss_main'] / mib:>6.0f} {p['rss_main'] / mib:>6.0f} "
        f"{t['tree_pss'] / mib:>6.0f} {p['tree_pss'] / mib:>6.0f} {t['tree_pss'] / max(1, p['tree_pss']):>5.2f}x"
        + diff,
        flush=True,
    )
    return res


def print_efficiency(results: dict) -> None:
    """Against the limits: the whole t12k process against its network alone and, where the
    decode costs more than the network, against ffmpeg's decode alone."""
    print("\nagainst the limits: seconds of the whole t12k process, of its network alone (same runtime and")
    print("launches, inputs in memory) and of ffmpeg's decode alone (raw RGB, no Python); the goal's ratio")
    print("(bound: the larger of the two); 'a trailer more': the whole process's seconds per trailer once")
    print("start-up is paid (first copy's end to last's in a run over --steady copies), against the same bound and")
    print(f"against the floor on {os.cpu_count()} cores: the network plus the decode's CPU seconds shared by the cores")
    print("(a network that keeps every core busy cannot hide the decode's CPU time)")
    print(
        f"{'backbone':<13} {'whole':>6} {'net':>6} {'net/whole':>9} {'decode':>7} {'whole/decode':>12}  {'bound':<8}"
        f" {'a trailer more':>14} {'bound/it':>8} {'floor':>6} {'floor/it':>8}"
    )
    for key, r in results.items():
        whole, net, dec = r["t12k"]["wall_s"], r["net"]["loop_s"], r["decode_s"]
        bound = "network" if net >= dec else "decode"
        more = r.get("per_trailer_s")
        floor = max(dec, net + r["decode_cpu_s"] / (os.cpu_count() or 1))
        steady = f" {more:>14.2f} {max(net, dec) / more:>8.2f} {floor:>6.2f} {floor / more:>8.2f}" if more else ""
        print(
            f"{key:<13} {whole:>6.2f} {net:>6.2f} {net / whole:>9.2f} {dec:>7.2f} {whole / dec:>11.2f}x  {bound:<8}"
            + steady
            + f"  (features t12k vs net alone: max |diff| {r['net_max_diff']:.1e})",
            flush=True,
        )
    print("\nthe same in CPU seconds (user + system, every thread and ffmpeg; load hardly moves them): the whole")
    print("process, the network alone, the decode alone, a trailer more, and (network + decode) / a trailer more")
    head = f"{'backbone':<13} {'whole':>6} {'net':>6} {'net/whole':>9} {'decode':>7}"
    print(head + f" {'a trailer more':>14} {'(net+decode)/it':>15}")
    for key, r in results.items():
        whole, net, dec = r["t12k"]["cpu_s"], r["net"]["loop_cpu_s"], r["decode_cpu_s"]
        more = r.get("per_trailer_cpu_s")
        steady = f" {more:>14.2f} {(net + dec) / more:>15.2f}" if more else ""
        print(f"{key:<13} {whole:>6.2f} {net:>6.2f} {net / whole:>9.2f} {dec:>7.2f}" + steady, flush=True)


def bench_trailers(args, key: str, video: Path, plan: Path) -> dict:
    """t12k over 1 and N copies of the trailer: clips/s and peak memory."""
    res = {}
    for n in (1, args.trailers):
        r = run_side(args, "t12k", key, video, plan, trailers=n)
        res[n] = r
        print(
            f"{key:<13} {n:>3} trailer(s): {r['clips']:>6} clips, {r['clips'] / r['loop_s']:>7.2f} clips/s (loop), "
            f"peak RSS main {r['rss_main'] / 2**20:>6.0f} MiB, peak tree PSS {r['tree_pss'] / 2**20:>6.0f} MiB",
            flush=True,
        )
    return res


def prepare_all(args) -> None:
    """The children's shared facts, in a process of its own (the parent stays small: a child's
    ru_maxrss starts from the memory of the process it was forked from)."""
    import torch

    from t12k.backbones import REGISTRY, Kind, parse_backbones

    keys = [s.key for s in parse_backbones(args.backbones)] if args.backbones != "all" else list(REGISTRY)
    info: dict = {"threads": torch.get_num_threads(), "keys": keys, "plans": {}}
    for key in keys:
        secs = args.seconds_3d if REGISTRY[key].kind == Kind.VIDEO and args.seconds_3d else args.seconds
        if str(secs) not in info["plans"]:
            info["plans"][str(secs)] = [str(p) for p in prepare(args.video, args.work, secs)]
        info[key] = {"kind": str(REGISTRY[key].kind), "plan": info["plans"][str(secs)]}
    print("RESULT " + json.dumps(info), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="all", help="comma-separated backbone keys, or all")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side per backbone (best of)")
    ap.add_argument("--video", type=Path, default=BBB, help="the trailer (normalized here as t12k fetch does)")
    ap.add_argument("--seconds", type=float, default=None, help="only the clips in the first N seconds")
    ap.add_argument("--seconds-3d", type=float, default=None, help="--seconds for 3D backbones (default: --seconds)")
    ap.add_argument("--trailers", type=int, default=0, help="also run t12k over 1 and N copies of the trailer")
    ap.add_argument("--steady", type=int, default=3, help="also run t12k over K copies: seconds per trailer more")
    ap.add_argument("--runtime", default="auto", help="t12k's --runtime (auto, torch, openvino)")
    ap.add_argument("--workers", default="auto", help="t12k's --workers (auto: 0 on a CPU, a decode thread)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/t12k-bench-cpu"))
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    ap.add_argument("--child", choices=("t12k", "plain", "net", "prepare"), help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    ap.add_argument("--feats-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "prepare":
        prepare_all(args)
        return
    if args.child:
        child(args)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE), "--child", "prepare", "--backbones", args.backbones, "--video", str(args.video)]
    cmd += ["--work", str(args.work)] + (["--seconds", str(args.seconds)] if args.seconds else [])
    cmd += ["--seconds-3d", str(args.seconds_3d)] if args.seconds_3d else []
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    info = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[len("RESULT ") :])
    print(
        f"{args.video.name}, Shot-24 clips; torch threads {info['threads']}, {os.cpu_count()} cores; "
        f"best of {args.rounds}, sides alternated, each a fresh process"
    )
    print(
        f"{'backbone':<13} {'clips':>5} {'-- clips/s, whole process --':>28}  {'-- clips/s, loop --':>23}  "
        f"{'RSS main MiB':>13} {'-- tree PSS MiB --':>20}"
    )
    print(
        f"{'':<13} {'':>5} {'t12k':>7} {'plain':>7} {'ratio':>6}  {'t12k':>7} {'plain':>7} {'ratio':>6}  "
        f"{'t12k':>6} {'plain':>6} {'t12k':>6} {'plain':>6} {'ratio':>6}"
    )
    results: dict = {"threads": info["threads"], "backbones": {}, "trailers": {}}
    for key in info["keys"]:
        video, plan = map(Path, info[key]["plan"])
        results["backbones"][key] = bench_backbone(args, key, info[key]["kind"], video, plan)
    print_efficiency(results["backbones"])
    if args.trailers > 1:
        print(f"\nmemory in the number of trailers: t12k over 1 and {args.trailers} copies")
        for key in info["keys"]:
            video, plan = map(Path, info[key]["plan"])
            results["trailers"][key] = bench_trailers(args, key, video, plan)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
