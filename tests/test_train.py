"""Tests of t12k.divita training: the protocol learns, the run files, checkpoints, early stopping,
every head, resuming, and `t12k train`; on the synthetic stores of test_divita.py."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_divita import FI, FV, make_dataset

from t12k import GENRES
from t12k.divita import TrainConfig, compute_metrics, load_model, load_trailers, pr_auc, predict_features, train
from t12k.divita.train import evaluate
from t12k.errors import T12kError
from t12k.storage import MTGC, read_mtgc, write_mtgc

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("divita"))


@pytest.fixture(scope="module")
def trained(dataset):
    out = dataset["root"] / "run"
    cfg = TrainConfig(
        image_store=dataset["image_store"],
        video_store=dataset["video_store"],
        labels=dataset["mtgc"],
        split=0,
        out_dir=out,
        lr=2e-3,
        batch_size=16,
        max_epochs=8,
        stop_patience=20,
        device="cpu",
        seed=0,
    )
    return cfg, train(cfg, progress=False)


def test_train_errors_clearly(dataset, tmp_path):
    m = read_mtgc(dataset["mtgc"])
    extra = MTGC(m.ids + ["missing01"], np.vstack([m.labels, m.labels[:1]]), np.vstack([m.splits, m.splits[:1]]))
    write_mtgc(tmp_path / "mtgc.csv", extra)
    cfg = TrainConfig(
        image_store=dataset["image_store"],
        labels=tmp_path / "mtgc.csv",
        out_dir=tmp_path / "run",
        max_epochs=1,
        device="cpu",
    )
    with pytest.raises(T12kError, match="'missing01'"):
        train(cfg, progress=False)
    with pytest.raises(T12kError, match="no feature store"):
        train(TrainConfig(labels=dataset["mtgc"], out_dir=tmp_path / "r2"), progress=False)


# ---- training and checkpoints --------------------------------------------------------------


def test_training_learns(dataset, trained):
    cfg, result = trained
    m = read_mtgc(dataset["mtgc"])
    _, y_test = m.subset(0, "test")
    rng = np.random.default_rng(0)
    chance = np.mean([pr_auc(y_test, rng.uniform(size=y_test.shape)) for _ in range(50)])
    constant = pr_auc(y_test, np.zeros(y_test.shape))  # (1 + label density) / 2
    assert chance == pytest.approx(y_test.mean(), abs=0.1)
    muap = result.test["muAP"]
    assert muap > chance + 0.3, (muap, chance)
    assert muap > constant + 0.1, (muap, constant)
    assert result.test["mAP"] > chance + 0.2
    assert 1 <= result.best_epoch <= result.epochs_run <= cfg.max_epochs
    assert result.epochs_run == cfg.max_epochs or result.epochs_run == result.best_epoch + cfg.stop_patience
    # history decreases overall
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_run_files(trained):
    cfg, result = trained
    out = Path(cfg.out_dir)
    with open(out / "history.csv", newline="") as fh:
        hist = list(csv.DictReader(fh))
    assert len(hist) == result.epochs_run
    assert list(hist[0]) == ["epoch", "train_loss", "val_loss", "val_muAP", "lr", "train_muAP"]
    # the running train μAP: the training outputs of each epoch against their labels
    assert all(0 < float(h["train_muAP"]) <= 1 for h in hist)
    assert [round(float(h["train_muAP"]), 6) for h in hist] == [round(h["train_muAP"], 6) for h in result.history]
    with open(out / "metrics.csv", newline="") as fh:
        rows = {r["subset"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"val", "test"}
    assert float(rows["test"]["muAP"]) == pytest.approx(100 * result.test["muAP"], abs=0.006)
    assert set(GENRES) <= set(rows["test"])
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == result.best_epoch
    assert ckpt["genres"] == list(GENRES)
    assert ckpt["image_features"] == FI and ckpt["video_features"] == FV
    assert ckpt["config"]["split"] == 0 and ckpt["config"]["aggregation"] == "tsfm"
    assert ckpt["stores"]["image"]["attrs"]["num_features"] == FI
    assert ckpt["stores"]["image"]["attrs"]["t12k"]["kind"] == "features"
    assert ckpt["stores"]["video"]["attrs"] == {"num_features": FV}
    assert {"optimizer", "scheduler", "model"} <= set(ckpt)


def test_checkpoint_round_trip(dataset, trained):
    cfg, result = trained
    model, info = load_model(Path(cfg.out_dir) / "checkpoint.pt")
    assert info["epoch"] == result.best_epoch and info["genres"] == list(GENRES)
    assert not model.training
    m = read_mtgc(dataset["mtgc"])
    test_ids, y_test = m.subset(0, "test")
    data = load_trailers(test_ids, dataset["image_store"], dataset["video_store"])
    _, probs = evaluate(model, data, torch.arange(len(test_ids)), y_test, 30, torch.device("cpu"))
    # the reloaded best state reproduces the run's test metrics
    assert compute_metrics(y_test, probs)["muAP"] == pytest.approx(result.test["muAP"], abs=1e-6)
    row = {mid: i for i, mid in enumerate(dataset["ids"])}
    for k in (0, 1, len(test_ids) - 1):
        i = row[test_ids[k]]
        one = predict_features(model, dataset["image"][i], dataset["video"][i], snippet=30)
        assert one.shape == (10,)
        np.testing.assert_allclose(one, probs[k], atol=1e-5)
    with pytest.raises(T12kError, match="video features"):
        predict_features(model, dataset["image"][0], None)
    with pytest.raises(T12kError, match=r"expects \(clips, 16\)"):
        predict_features(model, dataset["video"][0], dataset["video"][0])
    with pytest.raises(T12kError, match="same clip plan"):
        predict_features(model, dataset["image"][0], dataset["video"][0][:-1])


def test_bad_checkpoints(tmp_path):
    with pytest.raises(T12kError, match=r"nope\.pt not found.*checkpoint\.pt"):
        load_model(tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(T12kError, match=r"notes\.pt is not a t12k checkpoint"):
        load_model(text)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(T12kError, match=r"other\.pt is not a t12k checkpoint"):
        load_model(other)


def test_early_stopping_and_scheduler(dataset, tmp_path):
    # a large learning rate overfits this small set quickly: validation loss stops improving
    cfg = TrainConfig(
        image_store=dataset["image_store"],
        labels=dataset["mtgc"],
        out_dir=tmp_path / "run",
        aggregation="conv",
        lr=0.05,
        batch_size=64,
        max_epochs=40,
        stop_patience=2,
        scheduler_patience=0,
        device="cpu",
        seed=3,
    )
    result = train(cfg, progress=False)
    assert result.epochs_run == result.best_epoch + cfg.stop_patience < cfg.max_epochs
    losses = [h["val_loss"] for h in result.history]
    assert min(losses) == losses[result.best_epoch - 1]
    assert all(x >= losses[result.best_epoch - 1] for x in losses[result.best_epoch :])
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] < lrs[0]  # patience 0: cut after a bad epoch
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == result.best_epoch


@pytest.mark.parametrize(
    "aggregation,fusion,modal",
    [("gru", "early", "both"), ("savg", "late", "video"), ("ctt", "early", "both"), ("conv", "late", "image")],
)
def test_other_heads_train(dataset, tmp_path, aggregation, fusion, modal):
    cfg = TrainConfig(
        image_store=dataset["image_store"] if modal != "video" else None,
        video_store=dataset["video_store"] if modal != "image" else None,
        labels=dataset["mtgc"],
        split=1,
        out_dir=tmp_path / "run",
        aggregation=aggregation,
        fusion=fusion,
        lr=2e-3,
        batch_size=32,
        max_epochs=2,
        stop_patience=1,
        device="cpu",
        feature_dtype="float16",
    )
    result = train(cfg, progress=False)
    assert 1 <= result.epochs_run <= 2
    assert 0 <= result.test["muAP"] <= 1
    model, info = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.modality == (modal if modal != "both" else fusion) and model.aggregation == aggregation


# ---- CTT-MMC-A baseline ------------------------------------------------------------------


def test_ctt_baseline_trains_and_reloads(dataset, tmp_path):
    cfg = TrainConfig(
        image_store=dataset["image_store"],
        labels=dataset["mtgc"],
        out_dir=tmp_path / "run",
        aggregation="ctt",
        lr=1e-3,
        batch_size=32,
        max_epochs=3,
        device="cpu",
    )
    result = train(cfg, progress=False)
    model, info = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.aggregation == info["aggregation"] == "ctt" and model.modality == "image"
    assert 0 <= result.test["muAP"] <= 1


# ---- resuming ----------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _resume_cfg(dataset, out, **kw):
    base = dict(
        image_store=dataset["image_store"],
        labels=dataset["mtgc"],
        split=2,
        out_dir=out,
        aggregation="tsfm",
        lr=1e-2,
        batch_size=16,
        max_epochs=6,
        stop_patience=20,
        scheduler_patience=0,
        device="cpu",
        seed=5,
    )
    return TrainConfig(**{**base, **kw})


def _same_run(a, b, out_a: Path, out_b: Path):
    assert [h["epoch"] for h in a.history] == [h["epoch"] for h in b.history]
    for key in ("train_loss", "val_loss", "val_muAP", "lr"):
        assert [h[key] for h in a.history] == [h[key] for h in b.history], key
    assert a.best_epoch == b.best_epoch and a.epochs_run == b.epochs_run
    assert a.test["muAP"] == b.test["muAP"] and a.val["mAP"] == b.val["mAP"]
    ca = torch.load(out_a / "checkpoint.pt", weights_only=True)
    cb = torch.load(out_b / "checkpoint.pt", weights_only=True)
    assert ca["epoch"] == cb["epoch"]
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    assert (out_a / "history.csv").read_text() == (out_b / "history.csv").read_text()
    assert (out_a / "predictions.csv").read_text() == (out_b / "predictions.csv").read_text()


def test_resume_after_an_interruption_gives_the_uninterrupted_result(dataset, tmp_path):
    full = train(_resume_cfg(dataset, tmp_path / "full"), progress=False)
    assert any(h["lr"] < 1e-2 for h in full.history)  # the scheduler acted: its state matters

    def stop_at_3(rec):
        if rec["epoch"] == 3:
            raise _Stop

    cfg = _resume_cfg(dataset, tmp_path / "cut")
    with pytest.raises(_Stop):
        train(cfg, progress=False, on_epoch=stop_at_3)
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and {"model", "optimizer", "scheduler", "rng", "config", "stores"} <= set(state)
    assert not (tmp_path / "cut" / "metrics.csv").exists()
    seen = []
    resumed = train(cfg, progress=False, resume=True, on_epoch=lambda r: seen.append(r["epoch"]))
    assert seen == [4, 5, 6]
    _same_run(full, resumed, tmp_path / "full", tmp_path / "cut")


def test_resume_extends_a_finished_run(dataset, tmp_path):
    full = train(_resume_cfg(dataset, tmp_path / "full", max_epochs=5), progress=False)
    train(_resume_cfg(dataset, tmp_path / "ext", max_epochs=2), progress=False)
    extended = train(_resume_cfg(dataset, tmp_path / "ext", max_epochs=5), progress=False, resume=True)
    _same_run(full, extended, tmp_path / "full", tmp_path / "ext")


def test_resume_refuses_other_settings(dataset, tmp_path):
    train(_resume_cfg(dataset, tmp_path / "run", max_epochs=1), progress=False)
    with pytest.raises(T12kError, match=r"lr=0\.01.*lr=0\.001.*without --resume"):
        train(_resume_cfg(dataset, tmp_path / "run", lr=1e-3), progress=False, resume=True)
    with pytest.raises(T12kError, match="nothing to resume.*without --resume"):
        train(_resume_cfg(dataset, tmp_path / "empty"), progress=False, resume=True)


def test_cli_train_resume(dataset, tmp_path, capsys):
    from t12k.cli import main

    args = [
        "train",
        "--image-store",
        str(dataset["image_store"]),
        "--labels",
        str(dataset["mtgc"]),
        "--out",
        str(tmp_path / "run"),
        "--aggregation",
        "savg",
        "--device",
        "cpu",
        "--quiet",
        "--num-threads",
        "1",
        "--lr",
        "0.01",
    ]
    assert main(args + ["--max-epochs", "1"]) == 0
    assert main(args + ["--max-epochs", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "of 2;" in out
    with open(tmp_path / "run" / "history.csv", newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]
    assert main(args + ["--max-epochs", "2", "--resume", "--seed", "9"]) == 2
    assert "seed=0" in capsys.readouterr().err


# ---- one training per run folder, and no silent overwrite -----------------------------------


def _train_args(dataset, out: Path, *more: str) -> list[str]:
    return [
        "train",
        "--image-store",
        str(dataset["image_store"]),
        "--labels",
        str(dataset["mtgc"]),
        "--out",
        str(out),
        "--aggregation",
        "savg",
        "--device",
        "cpu",
        "--quiet",
        "--num-threads",
        "1",
        "--max-epochs",
        "1",
        *more,
    ]


def _busy(folder: Path, pid: int) -> str:
    return f"run folder {folder} is in use by another training (pid {pid}); wait for it or pass another --out"


def test_a_second_training_into_a_run_folder_in_use_is_refused_at_once(dataset, tmp_path):
    cfg = _resume_cfg(dataset, tmp_path / "run", max_epochs=2)
    refused = []

    def second_run(rec):  # another training into the same folder while this one holds it
        if rec["epoch"] == 1:
            with pytest.raises(T12kError) as err:
                train(cfg, progress=False)
            refused.append(str(err.value))

    result = train(cfg, progress=False, on_epoch=second_run)
    assert refused == [_busy(tmp_path / "run", os.getpid())]
    with open(tmp_path / "run" / "history.csv", newline="") as fh:  # the first run's history alone
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]
    assert result.epochs_run == 2 and not list((tmp_path / "run").glob("*tmp*"))


def test_cli_train_refuses_a_run_folder_another_process_holds(dataset, tmp_path):
    from t12k.divita.runfiles import folder_lock
    from t12k.divita.train import LOCK_NAME

    run = tmp_path / "run"
    run.mkdir()
    with folder_lock(run, LOCK_NAME, "run folder", "training"):
        proc = subprocess.run(
            [sys.executable, "-m", "t12k.cli", *_train_args(dataset, run)], capture_output=True, text=True, timeout=600
        )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"t12k train: error: {_busy(run, os.getpid())}"
    assert [p.name for p in run.iterdir()] == [LOCK_NAME]  # nothing of a run written


def test_two_writers_of_one_file_do_not_share_a_temporary_file(tmp_path, monkeypatch):
    from t12k.divita.checkpoint import save_atomic

    path, real_save, written = tmp_path / "checkpoint.pt", torch.save, []

    def save(obj, f):
        real_save(obj, f)
        written.append(Path(f))
        if len(written) == 1:  # another writer saves the same file before this one moves its own
            save_atomic({"n": 2}, path)

    monkeypatch.setattr(torch, "save", save)
    save_atomic({"n": 1}, path)
    assert written[0] != written[1] and written[0].parent == path.parent
    assert torch.load(path, weights_only=True) == {"n": 1}

    def fail(obj, f):  # a write that breaks half way (a full disk, say)
        Path(f).write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="No space"):
        save_atomic({"n": 3}, path)
    assert torch.load(path, weights_only=True) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_a_run_folder_holding_a_run_is_not_replaced_without_overwrite(dataset, tmp_path, capsys):
    from t12k.cli import main

    run = tmp_path / "run"
    assert main(_train_args(dataset, run)) == 0
    before = (run / "checkpoint.pt").read_bytes()
    assert main(_train_args(dataset, run, "--seed", "9")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"t12k train: error: run folder {run} already holds a training run (checkpoint.pt); pass --resume to "
        "continue it, --overwrite to replace it, or another --out"
    ]
    assert (run / "checkpoint.pt").read_bytes() == before
    assert main(_train_args(dataset, run, "--seed", "9", "--overwrite")) == 0
    assert (run / "checkpoint.pt").read_bytes() != before
    cfg = _resume_cfg(dataset, run, seed=9, max_epochs=3)
    with pytest.raises(T12kError, match=r"^pass --resume .* or --overwrite to replace it, not both$"):
        train(cfg, progress=False, resume=True, overwrite=True)

    def stop(rec):
        raise _Stop

    # --overwrite starts again: the old run's files go first, so none stays beside the new run's
    with pytest.raises(_Stop):
        train(cfg, progress=False, overwrite=True, on_epoch=stop)
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "checkpoint.pt",
        "history.csv",
        "last.pt",
    ]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["config"]["seed"] == 9
    # a stopped run (last.pt) is a run too
    with pytest.raises(T12kError, match="already holds a training run"):
        train(cfg, progress=False)
    assert train(cfg, progress=False, resume=True).epochs_run == 3


def test_a_run_folder_that_is_a_file_is_refused(dataset, tmp_path):
    (tmp_path / "run").write_text("notes")
    with pytest.raises(T12kError, match=r"run folder .*run is a file; pass another --out$"):
        train(_resume_cfg(dataset, tmp_path / "run"), progress=False)
