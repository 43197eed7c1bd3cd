"""`t12k predict` on one trailer: wall time from the file to the probabilities, where it went,
and the networks alone on the same frames.

    .venv/bin/python bench/bench_predict.py [--seconds 150] [--backbone shufflenet2d] [--rounds 2]
        [--baseline DIR] [--reencode] [--costs]

The trailer: `--seconds` of /work/shared/media/bbb-trailer.mp4 (1280x720, 24 fps) looped, as a
user's file would come (720p, so `predict` normalizes it first). The checkpoint: a DIViTA head
trained for one epoch on a tiny store of `--backbone` features (random weights: no network;
the speed is the same as with the pretrained ones). Each round runs `t12k predict --json` in a
fresh process and prints its wall time, the CPU seconds of its processes (ffmpeg included) and
the breakdown `predict` reports (load models, normalize, shots and features from one decode,
of which the backbones, head). Both are made once in `--cache`, so a second run only measures.

The networks alone (in a fresh process, as `predict` loads them, on the same frames with
nothing else running; once before the rounds and once after each, the best kept): TransNet
V2 (`ShotDetector.predict`) over the trailer's 48x27 frames, decoded beforehand; each of the
head's backbones (`BackboneRunner.forward`) over the very batches `predict` gives it,
recorded once (into `--cache`) from a run of `predict`'s own `_features`; and the head. The
last lines are the ratio of the whole command (best round) to their sum (best), and the
genres the command found (the same before and after a change of the pipeline); the
CPU seconds of both, which other processes' load hardly moves, come with them.

`--baseline DIR` runs another t12k (DIR holds a checkout named t12k, e.g. `git archive COMMIT`
unpacked into DIR/t12k) before each round, so both meet the same load, and says whether its
probabilities are identical. `--reencode` runs `t12k predict --reencode` too in each round
(the frames H.264-encoded on the way, as `t12k fetch` does: the features a collection run
stores) and compares its genres with the default's: the same order of the ten, the same ones
at 0.5 or more, and the largest difference of a probability. `--costs` times the one
decode's parts that are not networks, each alone (`decode_costs`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
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


def networks_alone(trailer: Path, ckpt: Path, inputs: Path) -> dict:
    """Seconds of `predict`'s networks alone on the trailer's frames, inputs in memory (see the
    module): TransNet V2, each backbone over its recorded batches, the head. The inputs are
    recorded once into the file `inputs` (torch.save), and read from it afterwards."""
    import torch

    from t12k.device import device_math
    from t12k.divita.train import load_model, predict_features
    from t12k.pipeline import predict as P
    from t12k.pipeline.media import normalize, read_frames
    from t12k.shots import ShotDetector
    from t12k.shots.windows import INPUT_SIZE

    model, info = load_model(ckpt, "cpu")
    stores = info.get("stores") or {}
    configs = P._store_configs(stores, None)
    runners = P._runners(stores, configs, "cpu")
    detector = ShotDetector(device="cpu", threshold=P._shots_config(stores, configs).threshold)
    if not inputs.is_file():
        batches: dict[str, list] = {role: [] for role in runners}
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / "trailer.mp4"
            normalize(trailer, video)  # what predict decodes, as a file here
            small = read_frames(video, INPUT_SIZE)
            for role, r in runners.items():  # record the batches predict gives each backbone
                r.forward = lambda x, f=r.forward, b=batches[role]: (b.append(x.clone()), f(x))[1]
            _, frames, feats = P._features(video, configs, runners, detector, {"normalize": 0.0})
            for r in runners.values():
                del r.forward
        torch.save({"small": small, "batches": batches, "frames": frames, "feats": feats}, inputs.with_suffix(".part"))
        inputs.with_suffix(".part").rename(inputs)
    saved = torch.load(inputs, weights_only=False)
    small, batches, frames, feats = saved["small"], saved["batches"], saved["frames"], saved["feats"]
    out: dict = {"frames": int(frames), "threads": torch.get_num_threads()}
    with torch.inference_mode():
        detector.predict(small[:200])  # warm-up: first-call allocations, not the network's cost
        c0 = time.process_time()
        t0 = time.perf_counter()
        detector.predict(small)
        out["transnet"] = time.perf_counter() - t0
        for role, r in runners.items():
            r.forward(batches[role][0][:1])
            t0 = time.perf_counter()
            with device_math(r.device, r.precision):
                for x in batches[role]:
                    r.forward(x)
            out[f"{role} backbone {r.spec.key}"] = time.perf_counter() - t0
            out[f"{role} clips"] = sum(len(x) for x in batches[role])
    t0 = time.perf_counter()
    predict_features(model, feats.get("image"), feats.get("video"), int(info.get("snippet", 30)))
    out["head"] = time.perf_counter() - t0
    out["cpu"] = {"networks": time.process_time() - c0}  # CPU s of all three, all threads
    return out


def _timed(work) -> tuple[float, float]:
    """(wall s, CPU s of this process and its reaped children) of `work()`."""
    me, kids = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN

    def cpu() -> float:
        return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(me), resource.getrusage(kids)))

    c0, t0 = cpu(), time.perf_counter()
    work()
    return time.perf_counter() - t0, cpu() - c0


def decode_costs(trailer: Path) -> dict[str, tuple[float, float]]:
    """(wall s, CPU s) of the parts of `predict`'s one decode that are not networks, each alone:
    normalizing (to a file; to a pipe read by nothing else), decoding the normalized file to
    (48x27, full size) pairs, the pairs while normalizing (`Piped`: through the H.264 pipe of
    `--reencode`; the source through the normalizer's filters, the default), the 48x27 frames
    alone, and the colour counts of every full-size frame (the 2D representative frames)."""
    from t12k.pipeline.media import ffmpeg_exe, iter_frames, normalize, normalize_command, probe
    from t12k.pipeline.media.decode import iter_frame_pairs
    from t12k.pipeline.predict import Piped
    from t12k.shots.clips import color_counts
    from t12k.shots.windows import INPUT_SIZE

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        video, info = Path(tmp) / "n.mp4", probe(trailer)
        out["normalize to a file"] = _timed(lambda: normalize(trailer, video, src_info=info))
        piped = Piped(trailer, info, Path(tmp))
        cmd = normalize_command(ffmpeg_exe(), trailer, "pipe:1", piped.size, container="nut")
        out["normalize to a pipe"] = _timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))
        out["decode the file: pairs"] = _timed(lambda: sum(1 for _ in iter_frame_pairs(video, INPUT_SIZE)))
        out["normalize + decode through the pipe, H.264 (--reencode): pairs"] = _timed(
            lambda: sum(1 for _ in piped.pairs(str(trailer), INPUT_SIZE))
        )
        raw = Piped(trailer, info, Path(tmp), encode=False)
        out["the normalizer's filters in the one decode (the default): pairs"] = _timed(
            lambda: sum(1 for _ in raw.pairs(str(trailer), INPUT_SIZE))
        )
        out["decode the file: 48x27 only"] = _timed(lambda: sum(1 for _ in iter_frames(video, INPUT_SIZE)))
        big = [b for _, b in itertools.islice(iter_frame_pairs(video, INPUT_SIZE), 480)]
        per = _timed(lambda: [color_counts(f) for f in big])
        out["colour counts of every frame"] = (per[0] * info.num_frames / len(big), per[1] * info.num_frames / len(big))
    return out


def run_predict(
    trailer: Path, ckpt: Path, code: Path | None = None, extra: tuple[str, ...] = ()
) -> tuple[float, float, dict]:
    """(wall s, CPU s of the process and its children, `predict --json`'s result) of one round;
    `code`: a folder holding another t12k (a checkout named t12k) to run instead of this one;
    `extra`: more options of `t12k predict`."""
    cmd = [*T12K, "predict", str(trailer), "--checkpoint", str(ckpt), "--json", "--device", "cpu", *extra]
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, json.loads(out)


def _networks_s(alone: dict) -> float:
    """Seconds of the networks in a `networks_alone` result: TransNet V2, the backbones, the head."""
    return sum(v for k, v in alone.items() if k == "transnet" or k == "head" or " backbone " in k)


def networks_in_a_child(trailer: Path, ckpt: Path, inputs: Path) -> dict:
    """`networks_alone` in a fresh process, as `predict` loads them."""
    cmd = [sys.executable, __file__, "--networks-child", str(trailer), str(ckpt), str(inputs)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def same_genres(probs: dict[str, float], other: dict[str, float]) -> str:
    """Whether two predictions give the same genres: the ten in the same order, the same ones
    at 0.5 or more; and the largest difference of a probability."""
    order = sorted(probs, key=lambda g: -probs[g]) == sorted(other, key=lambda g: -other[g])
    tagged = {g for g, p in probs.items() if p >= 0.5} == {g for g, p in other.items() if p >= 0.5}
    gap = max(abs(probs[g] - other[g]) for g in probs)
    return f"genres in the same order: {order}, the same at 0.5 or more: {tagged}; largest difference {gap:.2e}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--backbone", default="shufflenet2d")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "t12k-bench-predict")
    ap.add_argument(
        "--baseline", type=Path, help="a folder holding another t12k checkout (named t12k), run before each round"
    )
    ap.add_argument("--reencode", action="store_true", help="run `predict --reencode` too and compare the genres")
    ap.add_argument("--costs", action="store_true", help="also time the one decode's parts that are not networks")
    ap.add_argument("--networks-child", nargs=3, type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.networks_child:  # in a fresh process, as `predict` runs
        print(json.dumps(networks_alone(*a.networks_child)))
        return 0
    a.cache.mkdir(parents=True, exist_ok=True)
    trailer = make_trailer(a.cache, a.seconds)
    ckpt = make_checkpoint(a.cache, a.backbone)
    print(f"trailer: {trailer} ({a.seconds:g} s, 1280x720); checkpoint: {a.backbone}; {os.cpu_count()} cores")
    best, best_cpu, res = None, None, {}
    baseline: list[tuple[float, float]] = []
    base_probs: dict = {}
    reencoded: list[tuple[float, float, dict]] = []
    inputs = a.cache / f"inputs-{trailer.stem}-{a.backbone}.pt"
    alone = networks_in_a_child(trailer, ckpt, inputs)  # records the inputs the first time
    for r in range(a.rounds):
        if a.baseline is not None:  # the other code first, in the same conditions
            wall, cpu, was = run_predict(trailer, ckpt, a.baseline)
            base_probs = was["probabilities"]
            load = os.getloadavg()[0]
            print(f"round {r + 1}, baseline {a.baseline}: {wall:.1f} s wall, {cpu:.1f} CPU s; load {load:.2f}")
            baseline.append((wall, cpu))
        wall, cpu, res = run_predict(trailer, ckpt)
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in res["seconds"].items())
        print(
            f"round {r + 1}: {wall:.1f} s wall (process), {cpu:.1f} CPU s (with ffmpeg), {res['frames']} frames, "
            f"{res['clips']} clips; {parts}; load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        best = wall if best is None else min(best, wall)
        if a.reencode:
            reencoded.append(run_predict(trailer, ckpt, extra=("--reencode",)))
            wall, cpu, _ = reencoded[-1]
            print(f"round {r + 1}, --reencode: {wall:.1f} s wall, {cpu:.1f} CPU s; load {os.getloadavg()[0]:.2f}")
        now = networks_in_a_child(trailer, ckpt, inputs)  # in the same conditions as this round
        wall = _networks_s(now)
        print(f"round {r + 1}, networks alone: {wall:.1f} s, {now['cpu']['networks']:.1f} CPU s", flush=True)
        alone = min(alone, now, key=_networks_s)
    assert best is not None
    print(f"best: {best:.1f} s from file to probabilities ({a.seconds:g} s trailer, {a.backbone}, CPU)")
    if baseline:
        same = base_probs == res["probabilities"]
        print(
            f"baseline best: {min(w for w, _ in baseline):.1f} s wall, {min(c for _, c in baseline):.1f} CPU s; "
            f"probabilities identical to this code's: {same}"
        )
    if reencoded:
        wall, cpu = min(w for w, _, _ in reencoded), min(c for _, c, _ in reencoded)
        same = same_genres(res["probabilities"], reencoded[-1][2]["probabilities"])
        print(f"--reencode best: {wall:.1f} s wall, {cpu:.1f} CPU s; {same}")
    nets = _networks_s(alone)
    nets_cpu = alone.pop("cpu")["networks"]
    parts = ", ".join(f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}" for k, v in alone.items())
    print(f"networks alone, best of {a.rounds + 1}: {nets:.1f} s ({parts})")
    print(f"ratio whole command / networks alone: {best / nets:.2f}x (goal: at most 1.2x)")
    # CPU seconds hardly move with other processes' load, wall seconds do; on a CPU that the
    # command keeps busy, its wall time is at least its CPU seconds over the cores
    print(
        f"CPU: whole command {best_cpu:.1f} CPU s (at least {best_cpu / (os.cpu_count() or 1):.1f} s wall on "
        f"{os.cpu_count()} cores), networks alone {nets_cpu:.1f} CPU s; ratio {best_cpu / nets_cpu:.2f}x"
    )
    if a.costs:
        for what, (wall, cpu) in decode_costs(trailer).items():
            print(f"alone: {what}: {wall:.1f} s wall, {cpu:.1f} CPU s")
    probs = res["probabilities"]
    print("genres: " + ", ".join(f"{g} {p:.6f}" for g, p in sorted(probs.items(), key=lambda kv: -kv[1])))
    print("probabilities: " + json.dumps(probs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
