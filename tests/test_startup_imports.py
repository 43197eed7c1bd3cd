"""The command line starts at once: help, usage errors and `t12k backbones` import no PyTorch.

Each case runs `t12k.startup.program` (what the console script runs) in a fresh process through a wrapper
that reports, at exit, the heavy modules loaded. No test here asserts a time
(`bench/bench_startup.py` prints them).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from t12k.cli import COMMANDS

WRAPPER = """
import sys
from t12k.startup import program
sys.argv = ["t12k", *sys.argv[1:]]
try:
    code = program()
except SystemExit as exc:
    code = exc.code
print("EXIT", code, *[m for m in ("torch", "torchvision", "zarr", "numpy") if m in sys.modules], file=sys.stderr)
"""


def _run(*args: str) -> tuple[str, set[str], subprocess.CompletedProcess]:
    res = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, timeout=120)
    code, *loaded = res.stderr.splitlines()[-1].split()[1:]
    return code, set(loaded), res


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["--no-such-option"], ["no-such-command"], ["backbones"]],
    ids=" ".join,
)
def test_top_level_answers_without_torch_zarr_or_numpy(args):
    code, loaded, res = _run(*args)
    assert code == ("0" if args[0] in ("--help", "--version", "backbones") else "2"), res.stderr
    assert not loaded, f"t12k {' '.join(args)} imported {loaded}"
    if args == ["backbones"]:
        assert res.stdout.splitlines()[1].startswith("shufflenet2d") and "trailers_i_resnet_fpc24.zarr" in res.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_and_bad_options_answer_without_torch(command):
    code, loaded, res = _run(command, "--help")
    assert code == "0" and res.stdout.startswith(f"usage: t12k {command}"), res.stderr
    assert not loaded & {"torch", "torchvision"}, f"t12k {command} --help imported {loaded}"
    code, loaded, res = _run(command, "--no-such-option")
    assert code == "2" and "error:" in res.stderr, res.stderr
    assert not loaded & {"torch", "torchvision"}, f"t12k {command} --no-such-option imported {loaded}"


def test_the_train_settings_name_the_registries_they_offer():
    """divita/config.py holds the choices of --aggregation, --fusion and --feature-dtype without
    torch: the names of the registries in divita.model and divita.data."""
    from t12k.divita import config
    from t12k.divita.data import FEATURE_DTYPES
    from t12k.divita.model import AGGREGATIONS, FUSIONS

    assert config.AGGREGATIONS == tuple(AGGREGATIONS)
    assert config.FUSIONS == tuple(FUSIONS)
    assert config.FEATURE_DTYPES == tuple(FEATURE_DTYPES)


DECODE_FIRST = """
import sys
import t12k.pipeline.shot_frames as sf
seen = []
start = sf.FrameReader.__init__
def reader(self, path):
    seen.append("torch" in sys.modules)
    start(self, path)
sf.FrameReader.__init__ = reader
from t12k.startup import program
sys.argv = ["t12k", *sys.argv[1:]]
code = program()
print("READERS", code, *seen, "torch" in sys.modules, file=sys.stderr)
"""


def test_t12k_shots_decodes_its_first_trailers_while_it_imports_torch(three_videos, tmp_path):
    """`t12k shots` starts ffmpeg on the first two trailers before PyTorch is imported (1.3 s,
    then TransNet V2 is built), so that their frames are decoded by then; the shots come out
    as they do otherwise (tests/test_shots.py checks them)."""
    args = ["shots", "--videos", str(three_videos), "--store", str(tmp_path / "s.zarr"), "--device", "cpu", "--quiet"]
    res = subprocess.run([sys.executable, "-c", DECODE_FIRST, *args], capture_output=True, text=True, timeout=300)
    code, *seen, torch_at_end = res.stderr.splitlines()[-1].split()[1:]
    assert code == "0", res.stderr
    assert seen[:2] == ["False", "False"]  # the first trailer's reader and the one ahead
    assert torch_at_end == "True"  # then the detector was built


def test_predict_loads_the_head_without_scikit_learn():
    """`t12k predict` imports what it needs (`needs`: the checkpoint's loader, the backbones,
    TransNet V2) without scikit-learn and the SciPy and pandas it brings: they serve only the
    metrics of training (about 1 s of every predict's start)."""
    from t12k._cli_options import ABOUT

    needs = ABOUT["predict"][2]
    assert needs
    script = f"import importlib, sys; [importlib.import_module(m) for m in {needs!r}]; "
    script += "print(*sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'scipy', 'pandas'}))"
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["torch"]
