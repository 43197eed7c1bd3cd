"""bench/gpu_check.sh, the GPU check, where no GPU is: its dry run parses every step's options
and collects the GPU tests, a budget too small for any step skips them all cleanly, a step
past its time is killed with its whole process group, and the figures are read from the
lines the GPU tests print."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["env", "tests", "prepare", "shots", "sample", "throughput fp32", "throughput bf16", "throughput tf32"]


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def _check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict, str]:
    env = os.environ | {"PYTHON": sys.executable}
    cmd = ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--out", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    return done, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_the_dry_run_parses_every_step_and_collects_the_gpu_tests(tmp_path):
    done, got, table = _check(tmp_path / "dry", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [s["name"] for s in got["steps"]] == STEPS
    assert {s["name"]: s["status"] for s in got["steps"]} == dict.fromkeys(STEPS, "ok")
    assert got["device"] == "cpu" and got["dry_run"] is True
    assert got["steps"][0]["figures"]["torch"].split("+")[0].count(".") == 2
    collected = Path(got["steps"][1]["log"]).read_text()
    assert "tests/test_gpu.py::test_gpu_features_match_the_cpu" in collected
    assert "tests/test_gpu_shots.py::test_transnet_on_cuda_gives_the_cpu_shots" in collected
    assert "--precision tf32" not in Path(got["steps"][-1]["log"]).read_text()
    assert "precision=tf32" in Path(got["steps"][-1]["log"]).read_text()
    assert "sample_trailers=8" in Path(got["steps"][4]["log"]).read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split("|")[1].strip() for r in rows if r.split("|")[1].strip()] == STEPS


def test_a_budget_too_small_for_any_step_skips_them_all(tmp_path):
    t0 = time.perf_counter()
    done, got, table = _check(tmp_path / "none", "--budget", "5")
    assert done.returncode == 0 and time.perf_counter() - t0 < 60
    assert got["steps"][0]["status"] == "skipped (5 s left)"
    assert all(s["status"].startswith("skipped") and s["seconds"] == 0 for s in got["steps"])
    assert len(got["steps"]) == len(STEPS) and "| env | skipped" in table


def test_a_step_past_its_time_is_killed_with_its_children(tmp_path):
    gc = _driver()
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    step = gc.Step("slow one", [sys.executable, "-c", code], 60, [])
    t0 = time.perf_counter()
    r = gc.run_step(step, step.argv, 3, tmp_path)
    assert r.status == "stopped at the budget (3 s)" and r.rc is None
    assert time.perf_counter() - t0 < 30
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_figures_are_read_from_the_lines_the_gpu_tests_and_benches_print():
    gc = _driver()
    out = (
        "\nswin3d bf16 resize on workers: max|d|/max|f| 1.23e-02, min cosine 0.999912\n"
        "TransNet V2 cuda vs cpu, 8 window(s) per batch: max |d probability| 3.0e-06\n"
        "35 passed, 2 skipped in 80.1s\n"
    )
    got = gc.test_figures(out, Path("."))
    assert got["features swin3d bf16 (resize on workers) vs CPU: max|d|/max|f|"] == 1.23e-2
    assert got["features swin3d bf16 (resize on workers) vs CPU: min cosine"] == 0.999912
    assert got["shots cuda vs CPU (8 windows/batch): max |d probability|"] == 3e-6
    assert got["tests passed"] == 35 and got["tests skipped"] == 2
    shots = gc.shots_figures(
        "t12k shots stage:                     2.0 s    2520.0 frames/s (best of 1; x)\n"
        "ratio t12k / package: 3.50x (best vs best)\n",
        Path("."),
    )
    assert shots == {"t12k shots stage, frames/s": 2520.0, "t12k / package": 3.5}
