"""How fast the command line answers: `t12k --help`, `t12k extract --help`, a bad option and
`t12k backbones`, each as a fresh process, and whether it imported PyTorch.

    .venv/bin/python bench/bench_startup.py [--runs 7] [--command "run --help" ...]

Each command runs `--runs` times as the `t12k` console script beside this Python (the wall
time of the whole process, start to exit, as a user waits for it); the bench prints the best
and the median seconds. One more run of each goes through a wrapper that calls
`t12k.startup.program` (what the console script runs) and reports the heavy modules loaded at
exit (torch, torchvision, zarr, numpy). No test asserts a time; tests/test_startup_imports.py
asserts that no such command imports torch.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh processes per command")
    ap.add_argument("--command", action="append", help="a t12k command line to time (repeatable; default: the four)")
    a = ap.parse_args()
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
