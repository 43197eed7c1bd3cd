"""Wrong inputs given on the command line get one line naming the thing and the fix, exit
status 2, and leave nothing behind: an unknown --device in shots, extract and predict, an
--fpc of 0, a CSV saved with a byte-order mark, checkpoints and stores of the wrong kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_divita import make_dataset

from t12k.cli import main
from t12k.divita import TrainConfig, train
from t12k.storage import ShotStore

pytestmark = pytest.mark.usefixtures("torch_one_thread")

BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def checkpoint(dataset) -> Path:
    out = dataset["root"] / "run"
    cfg = TrainConfig(
        image_store=dataset["image_store"], labels=dataset["mtgc"], out_dir=out, max_epochs=1, device="cpu"
    )
    train(cfg, progress=False)
    return out / "checkpoint.pt"


def _one_line_error(capsys, args: list[str]) -> str:
    """The error `t12k ARGS` prints: one line, exit status 2."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_an_unknown_device_is_one_line_in_shots_extract_and_predict(
    capsys, tmp_path, three_videos, shots_store, checkpoint
):
    expected = "--device 'banana' is not a device; use auto, cpu, cuda or cuda:N"
    shots = ["shots", "--videos", str(three_videos), "--store", str(tmp_path / "s.zarr"), "--device", "banana"]
    assert _one_line_error(capsys, shots) == f"t12k shots: error: {expected}"
    extract = ["extract", "--videos", str(three_videos), "--shots", str(shots_store), "--out", str(tmp_path / "f")]
    err = _one_line_error(capsys, extract + ["--weights", "none", "--device", "banana"])
    assert err == f"t12k extract: error: {expected}"
    predict = ["predict", str(three_videos / "a1.mp4"), "--checkpoint", str(checkpoint), "--device", "banana"]
    assert _one_line_error(capsys, predict) == f"t12k predict: error: {expected}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no feature folder


def test_extract_with_fpc_0_creates_no_store(capsys, tmp_path, three_videos, shots_store):
    args = ["extract", "--videos", str(three_videos), "--shots", str(shots_store), "--out", str(tmp_path / "f")]
    err = _one_line_error(capsys, args + ["--weights", "none", "--device", "cpu", "--fpc", "0"])
    assert err == "t12k extract: error: --fpc must be at least 1; got 0"
    assert not (tmp_path / "f").exists()


def test_train_reads_an_mtgc_csv_with_a_byte_order_mark(capsys, tmp_path, dataset):
    labels = tmp_path / "mtgc.csv"
    labels.write_bytes(BOM + dataset["mtgc"].read_bytes())
    args = ["train", "--image-store", str(dataset["image_store"]), "--labels", str(labels)]
    assert main(args + ["--out", str(tmp_path / "run"), "--max-epochs", "1", "--device", "cpu", "--quiet"]) == 0
    assert "test       (split 0): muAP" in capsys.readouterr().out


def test_predict_refuses_what_is_not_a_checkpoint(capsys, tmp_path, three_videos, checkpoint):
    fix = "pass the checkpoint.pt of a `t12k train` run folder"

    def error(path: Path) -> str:
        args = ["predict", str(three_videos / "a1.mp4"), "--checkpoint", str(path), "--device", "cpu"]
        return _one_line_error(capsys, args).removeprefix("t12k predict: error: ")

    run = checkpoint.parent
    assert error(run) == f"checkpoint {run} is a folder; pass {checkpoint}"
    assert error(tmp_path) == f"checkpoint {tmp_path} is a folder, not a checkpoint; {fix}"
    assert error(run / "last.pt") == (
        f"{run / 'last.pt'} is the state `t12k train --resume` continues from, not the best model; {fix}"
    )
    err = error(run / "history.csv")
    assert err.startswith(f"{run / 'history.csv'} is not a t12k checkpoint (") and err.endswith(fix)
    assert error(tmp_path / "nope.pt") == f"checkpoint {tmp_path / 'nope.pt'} not found; {fix}"


@pytest.mark.parametrize("kind", ["shots store", "plain folder", "file", "missing"])
def test_train_and_experiment_refuse_a_store_of_the_wrong_kind(capsys, tmp_path, dataset, kind):
    path = {
        "shots store": tmp_path / "shots.zarr",
        "plain folder": tmp_path / "plain",
        "file": tmp_path / "notes.zarr",
        "missing": tmp_path / "nope.zarr",
    }[kind]
    if kind == "shots store":
        store = ShotStore.create_or_append(path, {"detector": "transnetv2", "threshold": 0.5})
        store.write_shots(dataset["ids"][0], np.array([[0, 9]]), np.zeros(10, np.float32))
    elif kind == "plain folder":
        path.mkdir()
    elif kind == "file":
        path.write_text("notes")
    expected = {
        "shots store": f"{path} has no attrs['num_features']: it is not a feature store",
        "plain folder": f"{path} is not a zarr group (no .zgroup or zarr.json); point to a features store",
        "file": f"{path} is not a zarr group",
        "missing": f"store {path} does not exist",
    }[kind]
    train_args = ["train", "--image-store", str(path), "--labels", str(dataset["mtgc"]), "--out", str(tmp_path / "r")]
    assert expected in _one_line_error(capsys, train_args + ["--device", "cpu"])
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps({"configs": [{"name": "A", "image_store": str(path)}]}))
    args = ["experiment", str(configs), "--labels", str(dataset["mtgc"]), "--out", str(tmp_path / "e"), "--quiet"]
    assert expected in _one_line_error(capsys, args)
    assert not (tmp_path / "e").exists()
