"""How fast the command line answers: `t12k --help`, `t12k extract --help`, a bad option and
`t12k backbones`, each as a fresh process, and whether it imported PyTorch.

    .venv/bin/python bench/bench_startup.py [--runs 7] [--command "run --help" ...]

Each command runs `--runs` times as the `t12k` console script beside this Python (the wall
time of the whole process, start to exit, as a user waits for it); the bench prints the best
and the median seconds. One more run of each goes through a wrapper that calls
`t12k.startup.program` (what the console script runs) and reports the heavy modules loaded at
exit (torch, torchvision, zarr, numpy). No test asserts a time; tests/test_startup_imports.py
asserts that no such command imports torch.

`--exit`: how long a command that ran a network takes to end. On a 4 s cut of the shared
trailer, `t12k shots` and `t12k extract --backbones shufflenet2d` (fresh stores each run) run
alternately as the console script runs them (`t12k.startup.console`: exit handlers, then
`os._exit`) and as a plain `sys.exit(program())` (the interpreter's whole teardown); printed:
each one's median wall seconds and the difference, which is what the teardown costs.

    .venv/bin/python bench/bench_startup.py --exit [--runs 5]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ("--help", "extract --help", "extract --no-such-option", "backbones")
HEAVY = ("torch", "torchvision", "zarr", "numpy")
DEADLINE = 120.0  # seconds one process may take
WRAPPER = """
import sys
from t12k.startup import program
sys.argv = ["t12k", *sys.argv[1:]]
try:
    program()
except SystemExit:
    pass
print("HEAVY", *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr)
"""


def _script() -> list[str]:
    """The `t12k` console script of this environment, else `python -m t12k.cli` (same parser)."""
    script = Path(sys.executable).parent / "t12k"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "t12k.cli"]


def wall_seconds(args: list[str]) -> float:
    """Seconds from the start of a fresh `t12k ARGS` to its exit."""
    start = time.perf_counter()
    subprocess.run(_script() + args, capture_output=True, timeout=DEADLINE)
    return time.perf_counter() - start


def heavy_modules(args: list[str]) -> list[str]:
    """The heavy modules loaded by the time `t12k ARGS` exits."""
    code = WRAPPER.format(heavy=HEAVY)
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=DEADLINE)
    line = next((ln for ln in res.stderr.splitlines() if ln.startswith("HEAVY")), "HEAVY ?")
    return line.split()[1:]


PLAIN_EXIT = "import sys; from t12k.startup import program; sys.argv = ['t12k', *sys.argv[1:]]; sys.exit(program())"
TRAILER = Path(__file__).resolve().parents[2] / "shared" / "media" / "bbb-trailer.mp4"


def bench_exit(runs: int) -> None:
    """`--exit`: the console script's end against the interpreter's whole teardown."""
    from t12k.pipeline.media import ffmpeg_exe

    work = Path(tempfile.mkdtemp(prefix="t12k-bench-exit-"))
    try:
        (work / "v").mkdir()
        cut = [ffmpeg_exe(), "-v", "error", "-i", str(TRAILER), "-t", "4", "-c", "copy", str(work / "v" / "t.mp4")]
        subprocess.run(cut, check=True, timeout=DEADLINE)
        shots = ["shots", "--videos", str(work / "v"), "--store", str(work / "s.zarr"), "--device", "cpu", "--quiet"]
        subprocess.run([sys.executable, "-m", "t12k.cli", *shots], check=True, timeout=DEADLINE)
        extract = ["extract", "--videos", str(work / "v"), "--shots", str(work / "s.zarr"), "--out", str(work / "f")]
        extract += ["--backbone", "shufflenet2d", "--weights", "none", "--device", "cpu", "--quiet"]
        print(f"{'command':<10} {'console s':>10} {'sys.exit s':>11} {'teardown s':>11}   (medians of {runs})")
        for name, args in (("shots", shots), ("extract", extract)):
            times: dict[str, list[float]] = {"console": [], "plain": []}
            for _ in range(runs):
                for how, cmd in (("console", ["-m", "t12k.cli"]), ("plain", ["-c", PLAIN_EXIT])):
                    shutil.rmtree(work / ("s.zarr" if name == "shots" else "f"), ignore_errors=True)
                    start = time.perf_counter()
                    subprocess.run([sys.executable, *cmd, *args], check=True, capture_output=True, timeout=DEADLINE)
                    times[how].append(time.perf_counter() - start)
            c, p = statistics.median(times["console"]), statistics.median(times["plain"])
            print(f"{name:<10} {c:>10.2f} {p:>11.2f} {p - c:>11.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh processes per command")
    ap.add_argument("--command", action="append", help="a t12k command line to time (repeatable; default: the four)")
    ap.add_argument("--exit", action="store_true", help="the end of a command that ran a network (see above)")
    a = ap.parse_args()
    if a.exit:
        bench_exit(a.runs)
        return
    print(f"{'command':<30} {'best s':>7} {'median s':>9}  torch  also loaded")
    for command in a.command or COMMANDS:
        args = shlex.split(command)
        times = [wall_seconds(args) for _ in range(a.runs)]
        heavy = heavy_modules(args)
        others = ", ".join(m for m in heavy if m != "torch") or "-"
        torch = "yes" if "torch" in heavy else "no"
        print(f"t12k {command:<25} {min(times):>7.2f} {statistics.median(times):>9.2f}  {torch:<5}  {others}")


if __name__ == "__main__":
    main()
