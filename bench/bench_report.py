"""Time and size of `t12k report` for N trailers.

    python bench/bench_report.py [--trailers 1000] [--seconds 30] [--distinct 8] [--video MP4] [--no-thumbs]
        [--work DIR]

Synthesizes a work folder as `t12k run` leaves it, written through the store classes rather
than by running the pipeline N times: `videos/` (N ids hard-linked to `--distinct` generated
640x360 H.264 videos of `--seconds`, with hard cuts, or `--video` looped to `--seconds` and
normalized as `t12k fetch` does, with shots drawn at random), `videos/manifest.csv` (4% failed
downloads with two reasons, 5% breaking the quality rules), `shots.zarr` (the videos' cuts,
a probability per frame), and a Shot-24 shufflenet2d feature store (random 1024-d features,
the representative frame of each clip). Then it builds the report (verify on, thumbnails on)
and prints the seconds, the report's size and files, and the per-trailer cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from t12k.pipeline.fetch.records import MANIFEST_FIELDS
from t12k.pipeline.media import probe
from t12k.pipeline.media.ffmpeg import ffmpeg_exe
from t12k.report import build_report
from t12k.shots import plan_clips
from t12k.storage import FeatureStore, Manifest, ShotStore

SIZE = (640, 360)


def write_video(path: Path, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A 24 fps video of shots 1-6 s long (a colour and a moving square each); its shots."""
    shots = random_shots(int(seconds * 24), rng)
    w, h = SIZE
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        img = np.empty((h, w, 3), np.uint8)
        for a, b in shots:
            colour = rng.integers(0, 256, 3)
            for k in range(b - a + 1):
                img[:] = colour
                x = (10 + 4 * k) % (w - 60)
                img[100:160, x : x + 60] = 255 - colour
                for pkt in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return shots


def random_shots(frames: int, rng: np.random.Generator) -> np.ndarray:
    bounds = [0]
    while bounds[-1] < frames:
        bounds.append(min(frames, bounds[-1] + int(rng.integers(24, 144))))
    return np.array([[a, b - 1] for a, b in zip(bounds[:-1], bounds[1:])], np.int32)


def normalized_copy(video: Path, path: Path, seconds: float) -> int:
    """`video` looped to `seconds`, as `t12k fetch` normalizes (H.264, 24 fps, 360p); its frames."""
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(video), "-t", f"{seconds:g}", "-an"]
    cmd += ["-vf", "scale=-2:360,fps=24", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(path)]
    subprocess.run(cmd, check=True)
    return probe(path).num_frames


def synthesize(work: Path, trailers: int, seconds: float, distinct: int, video: Path | None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    videos = work / "videos"
    (work / "src").mkdir(parents=True)
    videos.mkdir()
    sources = []
    for k in range(distinct):
        path = work / "src" / f"v{k}.mp4"
        if video is None:
            sources.append((path, write_video(path, seconds, rng)))
        else:  # real footage: its cuts are unknown, the shots are drawn at random
            sources.append((path, random_shots(normalized_copy(video, path, seconds), rng)))
    manifest = Manifest(videos / "manifest.csv", MANIFEST_FIELDS)
    shots_store = ShotStore.create_or_append(
        work / "shots.zarr", {"detector": "transnetv2", "threshold": 0.5, "input_size": [48, 27]}
    )
    settings = {"backbone": "shufflenet2d", "weights": "none (random He init, seed 0)", "strategy": "shot"}
    settings |= {"fpc": 24, "fps": 24, "frame_selection": "histogram"}
    feats = FeatureStore.create_or_append(
        work / "features" / "trailers_i_shufflenet_fpc24.zarr", settings, {"num_features": 1024}
    )
    for i in range(trailers):
        mid = f"tt{i:07d}"
        if rng.random() < 0.04:
            kind = "not-found" if rng.random() < 0.7 else "unavailable"
            manifest.record(mid, "failed", f"{kind}: the synthesized failure {i % 7}", error=kind)
            continue
        src, shots = sources[i % distinct]
        os.link(src, videos / f"{mid}.mp4")
        frames = int(shots[-1, 1]) + 1
        low = rng.random() < 0.05
        quality = "below 480p (360p)" if low else "ok"  # (the rules see the source, here said to be 720p)
        manifest.record(
            mid,
            "ok",
            src_width=1280,
            src_height=720,
            src_fps="24.000",
            src_codec="h264",
            src_duration=f"{frames / 24:.3f}",
            quality=quality,
            duration=f"{frames / 24:.3f}",
            frames=frames,
            bytes=src.stat().st_size,
        )
        preds = rng.random(frames).astype(np.float32) * 0.05
        preds[shots[:-1, 1]] = 0.9
        shots_store.write_shots(mid, shots, preds)
        plan = plan_clips(shots, frames)
        clips = np.c_[plan.spans, (plan.spans[:, 0] + plan.spans[:, 1]) // 2].astype(np.int32)
        feats.write_features(mid, rng.standard_normal((len(clips), 1024)).astype(np.float32), clips)
    manifest.compact()
    shutil.rmtree(work / "src", ignore_errors=True)  # the ids' hard links keep the videos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trailers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each generated video")
    ap.add_argument("--distinct", type=int, default=8, help="distinct videos the ids are hard-linked to")
    ap.add_argument(
        "--video",
        type=Path,
        help="real footage to loop and normalize (e.g. bbb-trailer.mp4) "
        "instead of generated shots; --distinct copies of it",
    )
    ap.add_argument("--work", type=Path, help="keep the work folder here (default: a temporary one)")
    ap.add_argument("--no-thumbs", action="store_true")
    a = ap.parse_args()
    tmp = None if a.work else tempfile.mkdtemp(prefix="t12k-bench-report-")
    work = a.work or Path(tmp or ".") / "work"
    try:
        if not (work / "videos" / "manifest.csv").is_file():
            t0 = time.perf_counter()
            synthesize(work, a.trailers, a.seconds, a.distinct, a.video)
            what = f"{a.video.name} looped" if a.video else "generated shots"
            print(
                f"synthesized {a.trailers} trailers ({a.seconds:g} s of {what}, 360p) in "
                f"{time.perf_counter() - t0:.0f} s"
            )
        out = work.parent / "report"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        summary = build_report(work, out, thumbs=not a.no_thumbs)
        seconds = time.perf_counter() - t0
        files = sum(len(f) for _, _, f in os.walk(out))
        index_kb = (out / "index.html").stat().st_size / 1e3
        print(
            f"report of {summary.trailers} trailers: {seconds:.1f} s ({1e3 * seconds / summary.trailers:.0f} ms "
            f"per trailer) on {os.cpu_count()} CPUs, {summary.bytes / 1e6:.1f} MB in {files} files; index.html "
            f"{index_kb:.0f} KB; thumbnails {'off' if a.no_thumbs else 'on'}; {summary.index}"
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
