"""Peak memory of the shots stage against video length: it should be flat.

Makes synthetic videos of the given lengths (ffmpeg's lavfi `testsrc`, 24 fps, small, H.264;
cached in a temporary folder, so a second run only measures), then runs the shots stage
(`detect_shots`, CPU) on each in a fresh Python process and reads that process's peak
resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`: the Python process alone,
not its ffmpeg), and the peak of the sum of the resident sets of its process tree (ffmpeg
included, sampled every 20 ms: `measure_process`, which bench_shots_speed.py uses too).
Prints each peak, the frames per second, and the ratio of the longest video's peak to the
shortest's.

    .venv/bin/python bench/bench_shots_memory.py [--minutes 10 120] [--size 64x36] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
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


@dataclass
class Measured:
    """A child process's wall time, its own peak RSS (its VmHWM, the kernel's high-water mark
    since its exec, read until it exits) and the peak sum of its process tree's RSS, ffmpeg
    included (sampled). Not ru_maxrss: for a child started by vfork (Python's subprocess),
    Linux counts the parent's peak into the child's at exec, so a large parent shows."""

    seconds: float
    hwm_mib: float
    tree_mib: float
    stdout: str


def _tree_rss(root: int) -> tuple[int, int]:
    """Bytes resident in `root` and its descendants now (0 for those that just ended), and
    `root`'s high-water mark."""
    total, todo, page, hwm = 0, [root], os.sysconf("SC_PAGE_SIZE"), 0
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
            if pid == root:
                with open(f"/proc/{pid}/status") as f:
                    hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError, StopIteration):
            continue
    return total, hwm


def measure_process(cmd: list[str], env: dict | None = None, timeout: float = 3600) -> Measured:
    """Run `cmd` to its end (raising SystemExit with its stderr if it fails) and measure it:
    wall time from start to exit, its peak RSS and the peak RSS of its tree (every 20 ms)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        peak, hwm, done = [0], [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                total, high = _tree_rss(proc.pid)
                peak[0], hwm[0] = max(peak[0], total), max(hwm[0], high)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, proc.kill)  # a deadline for a run that hangs
        timer.start()
        proc.wait()
        seconds = time.perf_counter() - t0
        timer.cancel()
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode(errors='replace')}")
        return Measured(seconds, hwm[0] / 2**20, peak[0] / 2**20, out.read().decode())


def measure(video: Path) -> dict:
    """The shots stage on `video` in a fresh process: its peak RSS, frames, shots and seconds."""
    m = measure_process([sys.executable, "-c", CHILD, str(video.parent)])
    return json.loads(m.stdout.strip().splitlines()[-1]) | {"tree_mib": m.tree_mib}


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
            f"{minutes:g} min ({r['frames']} frames, {r['shots']} shots): peak RSS {r['peak_mib']:.0f} MiB "
            f"(with ffmpeg {r['tree_mib']:.0f} MiB), "
            f"shots stage {r['seconds']:.1f} s ({r['frames'] / r['seconds']:.0f} frames/s); video made in {made:.1f} s",
            flush=True,
        )
    if len(results) > 1:
        lo, hi = min(results), max(results)
        ratio = results[hi]["peak_mib"] / results[lo]["peak_mib"]
        print(f"peak RSS {hi:g} min / {lo:g} min: {ratio:.3f}")


if __name__ == "__main__":
    main()
