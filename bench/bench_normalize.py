"""Re-encoding throughput of t12k's normalization next to a plain ffmpeg command, and CPU use
with several trailers queued.

    .venv/bin/python bench/bench_normalize.py [--input VIDEO] [--repeat 3] [--queue N]

1. One trailer: the work a fetch worker process does per trailer (`fetch.normalizer.normalize_job`:
   probe, ffmpeg to H.264 24 fps with the short side at most 360 px, check, checksum) and
   the same ffmpeg command (`media.normalize_command`) run as a plain process on the same
   file, alternated `--repeat` times; prints frames per second (output frames / wall
   seconds, medians) and their ratio.
2. Several trailers queued: `fetch_collection` on N copies served by a local HTTP server
   (downloads, normalizing processes, manifest), next to N plain ffmpeg commands run with
   the same number of processes at once; prints the aggregate frames per second and the CPU
   use: the CPU seconds of the run's own processes over (wall seconds x cores), and every
   core's busy share of the whole machine (/proc/stat, so other users' load shows too).

The input defaults to /work/shared/media/bbb-trailer.mp4 (55 s, 1280x720, 24 fps).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from t12k.pipeline import fetch, media
from t12k.pipeline.fetch import download, normalizer  # noqa: F401  (fetch.download, fetch.normalizer)

DEFAULT_INPUT = "/work/shared/media/bbb-trailer.mp4"


def _cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for descendants (ffmpeg, worker processes)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _proc_stat() -> list[tuple[int, int]]:
    """(busy, total) jiffies of every core, from /proc/stat ([] elsewhere)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return []
    out = []
    for ln in lines:
        if ln.startswith("cpu") and ln[3:4].isdigit():
            v = [int(x) for x in ln.split()[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0)
            out.append((sum(v[:8]) - idle, sum(v[:8])))
    return out


class _Sampler:
    """Per-core busy shares of the machine, sampled every `period` seconds while running."""

    def __init__(self, period: float = 0.5):
        self.period, self.samples, self._stop = period, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        prev = _proc_stat()
        while not self._stop.wait(self.period):
            cur = _proc_stat()
            self.samples.append([(b1 - b0) / max(1, t1 - t0) for (b0, t0), (b1, t1) in zip(prev, cur)])
            prev = cur

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def text(self) -> str:
        if not self.samples:
            return "per-core busy share: not available (no /proc/stat)"
        cores = len(self.samples[0])
        means = [statistics.mean(s[c] for s in self.samples) for c in range(cores)]
        all_busy = sum(min(s) >= 0.9 for s in self.samples) / len(self.samples)
        return (
            f"machine, per core busy: {', '.join(f'cpu{c} {100 * m:.0f}%' for c, m in enumerate(means))}; "
            f"all cores >= 90% busy in {100 * all_busy:.0f}% of {len(self.samples)} samples"
        )


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process tree) of fn()."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _cpu_seconds() - c0


def bench_one(src: Path, work: Path, repeat: int, ffmpeg: str) -> None:
    info = media.probe(src)
    width, height = media.target_size(info.width, info.height, 360, info.sar)
    frames = round(info.duration * 24)
    cores = os.cpu_count() or 1
    settings = {
        "fps": 24,
        "max_short_side": 360,
        "keep_audio": False,
        "threads": None,
        "ffmpeg": ffmpeg,
        "enforce_quality": False,
        "quality_seconds": list(fetch.QUALITY_SECONDS),
        "quality_min_lines": fetch.QUALITY_MIN_LINES,
    }
    cmd = media.normalize_command(ffmpeg, src, work / "plain.mp4", (width, height))  # what normalize runs
    print(
        f"input: {src} ({info.width}x{info.height}, {info.fps:.3f} fps, {info.duration:.2f} s, {info.codec}); "
        f"output {width}x{height}, 24 fps, {frames} frames; {cores} cores; ffmpeg {ffmpeg}"
    )
    print("plain ffmpeg: " + " ".join(cmd))
    t12k_runs, plain_runs, t12k_cpu, plain_cpu = [], [], [], []
    for k in range(repeat):

        def t12k_job():
            answer = fetch.normalizer.normalize_job(
                {"src": str(src), "dst": str(work / "t12k.mp4"), "url": str(src), **settings}, lambda: False
            )
            assert answer["status"] == "ok", answer
            assert answer["fields"]["frames"] == frames, answer

        def plain_job():
            subprocess.run(cmd, check=True)

        sides = (("t12k ", t12k_job, t12k_runs, t12k_cpu), ("plain", plain_job, plain_runs, plain_cpu))
        for name, job, runs, cpus in sides[:: 1 if k % 2 == 0 else -1]:  # alternate who goes first
            wall, cpu = _timed(job)
            runs.append(wall)
            cpus.append(cpu)
            print(
                f"  run {k + 1} {name}: {wall:6.2f} s, {frames / wall:7.1f} frames/s, "
                f"CPU {cpu:6.2f} s = {100 * cpu / (wall * cores):3.0f}% of {cores} cores"
            )
    assert media.probe(work / "plain.mp4").num_frames == frames
    t12k_fps, plain_fps = frames / statistics.median(t12k_runs), frames / statistics.median(plain_runs)
    t12k_eff, plain_eff = frames / statistics.median(t12k_cpu), frames / statistics.median(plain_cpu)
    print(
        f"one trailer (medians of {repeat}): t12k {t12k_fps:.1f} frames/s, plain ffmpeg {plain_fps:.1f} frames/s, "
        f"ratio t12k/plain {t12k_fps / plain_fps:.3f}; per CPU second: t12k {t12k_eff:.1f} frames, plain "
        f"{plain_eff:.1f} frames, ratio {t12k_eff / plain_eff:.3f}"
    )


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # yt-dlp hangs up once it has seen the headers: not an error


def bench_queue(src: Path, work: Path, n: int, processes: int, ffmpeg: str) -> None:
    info = media.probe(src)
    width, height = media.target_size(info.width, info.height, 360, info.sar)
    frames = round(info.duration * 24) * n
    cores = os.cpu_count() or 1
    www = work / "www"
    www.mkdir()
    shutil.copy(src, www / "q0.mp4")
    for k in range(1, n):
        os.link(www / "q0.mp4", www / f"q{k}.mp4")
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    items = [fetch.FetchItem(f"q{k}", f"{url}/q{k}.mp4") for k in range(n)]
    fetch.download.warm_up_yt_dlp()
    print(f"\n{n} trailers queued, {processes} normalizing processes, {cores} cores:")

    with _Sampler() as sampler:
        wall, cpu = _timed(
            lambda: fetch.fetch_collection(
                items, work / "videos", workers=2, normalize_workers=processes, progress=False
            )
        )
    summary_ok = all((work / "videos" / f"q{k}.mp4").is_file() for k in range(n))
    assert summary_ok, "some trailers failed; see the manifest"
    t12k_fps, t12k_eff = frames / wall, frames / cpu
    print(
        f"  t12k fetch_collection: {wall:6.2f} s, {t12k_fps:7.1f} frames/s, CPU {cpu:6.2f} s = "
        f"{100 * cpu / (wall * cores):3.0f}% of {cores} cores"
    )
    print(f"    {sampler.text()}")

    def plain_parallel():
        queue = [
            media.normalize_command(ffmpeg, www / f"q{k}.mp4", work / f"plain{k}.mp4", (width, height))
            for k in range(n)
        ]
        running: list[subprocess.Popen] = []
        while queue or running:
            while queue and len(running) < processes:
                running.append(subprocess.Popen(queue.pop(0)))
            running[0].wait()
            running = [p for p in running if p.poll() is None]

    with _Sampler() as sampler:
        wall, cpu = _timed(plain_parallel)
    plain_fps, plain_eff = frames / wall, frames / cpu
    print(
        f"  plain ffmpeg, {processes} at once: {wall:6.2f} s, {plain_fps:7.1f} frames/s, CPU {cpu:6.2f} s = "
        f"{100 * cpu / (wall * cores):3.0f}% of {cores} cores"
    )
    print(f"    {sampler.text()}")
    print(
        f"queued ({n} trailers): t12k {t12k_fps:.1f} frames/s, plain ffmpeg {plain_fps:.1f} frames/s, "
        f"ratio t12k/plain {t12k_fps / plain_fps:.3f}; per CPU second: t12k {t12k_eff:.1f} frames, plain "
        f"{plain_eff:.1f} frames, ratio {t12k_eff / plain_eff:.3f}"
    )
    httpd.shutdown()
    httpd.server_close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=DEFAULT_INPUT, help="video to normalize")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side for the one-trailer comparison")
    ap.add_argument("--queue", type=int, default=None, help="trailers queued (default: 2 x normalizing processes)")
    ap.add_argument(
        "--normalize-workers",
        type=int,
        default=None,
        help="normalizing processes (default: t12k's default for this machine)",
    )
    ap.add_argument("--skip-one", action="store_true", help="only the queued benchmark")
    a = ap.parse_args()
    src = Path(a.input)
    if not src.is_file():
        print(f"input {src} not found; pass --input VIDEO", file=sys.stderr)
        return 2
    processes = a.normalize_workers or fetch.default_normalize_workers()
    ffmpeg = media.ffmpeg_exe()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="t12k-bench-") as tmp:
        work = Path(tmp)
        if not a.skip_one:
            bench_one(src, work, a.repeat, ffmpeg)
        bench_queue(src, work, a.queue or 2 * processes, processes, ffmpeg)
    if load:
        after = os.getloadavg()
        print(
            f"machine load average (1 min) {load[0]:.1f} before, {after[0]:.1f} after, on {os.cpu_count()} cores: "
            f"other users' work slows both sides alike; compare the ratios, and the per-CPU-second ones when "
            f"the machine is shared"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
