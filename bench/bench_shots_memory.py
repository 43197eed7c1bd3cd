"""Peak memory of the shots stage against video length: it should be flat.

Makes synthetic videos of the given lengths (ffmpeg's lavfi `testsrc`, 24 fps, small, H.264;
cached in a temporary folder, so a second run only measures), then runs the shots stage
(`detect_shots`, CPU) on each in a fresh Python process and reads that process's peak
resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`: the Python process alone,
not its ffmpeg). Prints each peak, the frames per second, and the ratio of the longest
video's peak to the shortest's.

    .venv/bin/python bench/bench_shots_memory.py [--minutes 10 120] [--size 64x36] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from t12k.pipeline.media import ffmpeg_exe

# Runs in the fresh process: the shots stage on one video, then its peak RSS and timing as JSON.
CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
from t12k.pipeline.shots_command import detect_shots
from t12k.storage import ShotStore

folder = Path(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    summary = detect_shots(folder, Path(tmp) / "shots.zarr", device="cpu", progress=False)
    seconds = time.perf_counter() - t0
    assert summary.ok, summary.text()
    store = ShotStore.open(Path(tmp) / "shots.zarr")
    (mid,) = store.ids()
    frames, shots = len(store.predictions(mid)), len(store.shots(mid))
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"frames": frames, "shots": shots, "seconds": seconds, "peak_mib": peak_kib / 1024}))
"""


def make_video(folder: Path, minutes: float, size: str) -> Path:
    """A `minutes`-long 24 fps test-pattern video at `size`, alone in its own folder (made once)."""
    out = folder / f"{minutes:g}min-{size}" / "synthetic.mp4"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(".synthetic.part.mp4")
    src = f"testsrc=size={size}:rate=24:duration={minutes * 60:g}"
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", src]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(part)]
    subprocess.run(cmd, check=True)
    part.rename(out)
    return out


def measure(video: Path) -> dict:
    """The shots stage on `video` in a fresh process: its peak RSS, frames, shots and seconds."""
    res = subprocess.run([sys.executable, "-c", CHILD, str(video.parent)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the shots stage failed on {video}:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 120], help="video lengths to measure")
    ap.add_argument("--size", default="64x36", help="WxH of the synthetic videos")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "t12k-bench-shots-memory")
    a = ap.parse_args()
    results = {}
    for minutes in a.minutes:
        t0 = time.perf_counter()
        video = make_video(a.cache, minutes, a.size)
        made = time.perf_counter() - t0
        r = results[minutes] = measure(video)
        print(
            f"{minutes:g} min ({r['frames']} frames, {r['shots']} shots): peak RSS {r['peak_mib']:.0f} MiB, "
            f"shots stage {r['seconds']:.1f} s ({r['frames'] / r['seconds']:.0f} frames/s); video made in {made:.1f} s",
            flush=True,
        )
    if len(results) > 1:
        lo, hi = min(results), max(results)
        ratio = results[hi]["peak_mib"] / results[lo]["peak_mib"]
        print(f"peak RSS {hi:g} min / {lo:g} min: {ratio:.3f}")


if __name__ == "__main__":
    main()
