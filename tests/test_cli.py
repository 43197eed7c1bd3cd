"""The command line: help, the two entry points, training on a published-layout store, and
one-line errors for the mistakes users make."""

import subprocess
import sys
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from t12k import GENRES
from t12k.cli import COMMANDS as CLI_COMMANDS
from t12k.cli import build_parser, main
from t12k.storage import MTGC, write_mtgc
from t12k.storage.mtgc import stratified_splits

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = list(CLI_COMMANDS)  # every command: its help, and help on each of its options


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_option_has_help(cmd):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[cmd]
    for action in sub._actions:
        if action.dest != "help":
            assert action.help and len(action.help) > 10, f"{cmd} {action.option_strings or action.dest}"


def test_console_script_and_python_cli_py_are_the_same():
    t12k = Path(sys.executable).parent / "t12k"
    a = subprocess.run([str(t12k), "--help"], capture_output=True, text=True, check=True).stdout
    b = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert a == b and "extract" in a


def test_the_program_imports_its_modules_with_the_collector_paused_then_frozen(tmp_path):
    """`t12k` (startup.program) imports the modules of the command it runs inside
    `settled_imports`: the collector is back on afterwards and those objects are frozen."""
    argv = ["t12k", "extract", "--videos", str(tmp_path), "--out", str(tmp_path / "f"), "--quiet"]
    code = (
        f"import gc, sys; from t12k.startup import program; sys.argv = {argv!r}; code = program(); "
        "print(code, gc.isenabled(), gc.get_freeze_count(), 'torch' in sys.modules, file=sys.stderr)"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    code, enabled, frozen, torch_loaded = err.splitlines()[-1].split()
    assert (code, enabled, torch_loaded) == ("2", "True", "True")  # no videos: a usage error, after the imports
    assert int(frozen) > 100_000  # PyTorch's and the pipeline's objects, never scanned again


def test_settled_imports_pause_the_collector_and_freeze_what_the_block_made():
    import gc

    from t12k.startup import settled_imports

    before = gc.get_freeze_count()
    try:
        with settled_imports():
            paused = not gc.isenabled()
            made = [[i] for i in range(1000)]  # lists are tracked by the collector
        assert paused and gc.isenabled() and len(made) == 1000
        assert gc.get_freeze_count() >= before + 1000
    finally:
        gc.unfreeze()  # this test process's objects go back to the collector


def _published_store(path: Path, ids, rng, num_features=24, labels=None):
    """A store written by hand with the plain zarr format-2 API, as the published ones."""
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs["num_features"] = num_features
    for i, mid in enumerate(ids):
        n = int(rng.integers(20, 80))
        x = rng.normal(size=(n, num_features)).astype(np.float32)
        x[:, :10] += 1.5 * labels[i]  # a learnable genre signal
        a = g.create_array(
            mid, shape=x.shape, dtype="float32", chunks=(64, num_features), compressors=numcodecs.Blosc()
        )
        a[:] = x


def test_train_on_a_hand_written_published_store(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ids = [f"{i}" for i in range(60)]
    y = (rng.random((60, 10)) < 0.3).astype(np.int8)
    write_mtgc(tmp_path / "mtgc.csv", MTGC(ids, y, stratified_splits(y, seed=0)))
    _published_store(tmp_path / "trailers_i_swin_fpc24.zarr", ids, rng, labels=y)
    code = main(
        [
            "train",
            "--image-store",
            str(tmp_path / "trailers_i_swin_fpc24.zarr"),
            "--labels",
            str(tmp_path / "mtgc.csv"),
            "--out",
            str(tmp_path / "run"),
            "--max-epochs",
            "8",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("test"))
    values = dict(zip(line.split()[3::2], map(float, line.split()[4::2])))
    assert set(values) == {"muAP", "mAP", "wAP", "sAP"}
    assert values["muAP"] > 100 * y.mean() + 10  # well above a constant predictor (label density)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_folder(capsys, tmp_path):
    err = _error(capsys, ["shots", "--videos", str(tmp_path / "nope"), "--store", str(tmp_path / "s.zarr")])
    assert "videos folder" in err and "does not exist" in err
    assert not (tmp_path / "s.zarr").exists()


def test_empty_folder(capsys, tmp_path):
    err = _error(capsys, ["shots", "--videos", str(tmp_path), "--store", str(tmp_path / "s.zarr")])
    assert "no videos" in err and "t12k fetch" in err


def test_unknown_backbone(capsys, tmp_path):
    err = _error(capsys, ["extract", "--backbone", "vgg16", "--videos", str(tmp_path)])
    assert "unknown backbone 'vgg16'" in err and "shufflenet2d" in err


def test_wrong_store_kind(capsys, tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"")
    _published_store(tmp_path / "f.zarr", ["a"], np.random.default_rng(0), labels=np.zeros((1, 10)))
    err = _error(
        capsys, ["extract", "--videos", str(tmp_path), "--shots", str(tmp_path / "nope.zarr"), "--weights", "none"]
    )
    assert "nope.zarr does not exist" in err
    err = _error(
        capsys, ["extract", "--videos", str(tmp_path), "--shots", str(tmp_path / "f.zarr"), "--weights", "none"]
    )
    assert "is a feature store, not a shots store" in err


def test_malformed_mtgc(capsys, tmp_path):
    _published_store(tmp_path / "f.zarr", ["a"], np.random.default_rng(0), labels=np.zeros((1, 10)))
    (tmp_path / "mtgc.csv").write_text("mid," + ",".join(GENRES) + "\n")
    err = _error(
        capsys,
        [
            "train",
            "--image-store",
            str(tmp_path / "f.zarr"),
            "--labels",
            str(tmp_path / "mtgc.csv"),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert "lacks column(s) split0" in err
    (tmp_path / "mtgc.csv").write_text("mid," + ",".join(GENRES) + ",split0,split1,split2\n1,1,0\n")
    err = _error(
        capsys,
        [
            "train",
            "--image-store",
            str(tmp_path / "f.zarr"),
            "--labels",
            str(tmp_path / "mtgc.csv"),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert "line 2" in err


def test_missing_checkpoint(capsys, tmp_path):
    err = _error(capsys, ["predict", str(tmp_path / "x.mp4"), "--checkpoint", str(tmp_path / "none.pt")])
    assert "checkpoint" in err and "not found" in err
