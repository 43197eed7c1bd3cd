"""Tests of t12k.divita: model shapes, snippet sampling, metrics, training, checkpoints.

Small synthetic stores (F = 16 and 24, ~100 trailers of 6..75 clips) whose features carry a
learnable genre signal (a per-genre mean shift plus noise); one store is written with the
t12k FeatureStore API, the other by hand with the plain zarr format 2 API, as the published
Trailers12k stores are.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import torch
import zarr
from sklearn.metrics import auc, precision_recall_curve

from t12k import GENRES
from t12k.divita import (
    AGGREGATIONS,
    DIViTA,
    TrainConfig,
    compute_metrics,
    load_model,
    load_table,
    load_trailers,
    pr_auc,
    predict_features,
    train,
)
from t12k.divita.data import TrailerFeatures, eval_index, mean_by_owner, table_from_arrays
from t12k.divita.train import evaluate
from t12k.errors import T12kError
from t12k.storage import MTGC, FeatureStore, read_mtgc, write_mtgc
from t12k.storage.mtgc import stratified_splits

FI, FV = 16, 24


pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---- synthetic data ------------------------------------------------------------------------


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    y = np.zeros((n, len(GENRES)), np.int8)
    for i in range(n):
        k = rng.integers(1, 4)
        y[i, rng.choice(len(GENRES), size=k, replace=False)] = 1
    return y


def _features(rng, labels, lengths, nf, signal=0.3):
    w = rng.normal(0, 1, (len(GENRES), nf)) * signal
    return [(labels[i] @ w)[None, :] + rng.normal(0, 1, (n, nf)) for i, n in enumerate(lengths)]


def write_published_store(path: Path, ids, arrays, nf: int) -> None:
    """A store as the published ones: plain zarr format 2, attrs num_features, one float32 array per id."""
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs["num_features"] = nf
    for mid, a in zip(ids, arrays):
        arr = g.create_array(
            mid, shape=a.shape, dtype="float32", chunks=(64, nf), compressors=numcodecs.Blosc(cname="lz4", clevel=5)
        )
        arr[...] = a.astype(np.float32)


def write_t12k_store(path: Path, ids, arrays, nf: int) -> FeatureStore:
    store = FeatureStore.create_or_append(path, settings={"backbone": "synthetic"}, attrs={"num_features": nf})
    for mid, a in zip(ids, arrays):
        store.write_features(mid, a)
    return store


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("divita")
    rng = np.random.default_rng(0)
    n = 100
    ids = [f"tt{i:05d}" for i in range(n)]
    labels = _labels(rng, n)
    lengths = rng.integers(6, 76, n)
    lengths[:5] = [6, 12, 29, 30, 31]  # some shorter than a snippet
    image = _features(rng, labels, lengths, FI)
    video = _features(rng, labels, lengths, FV)
    write_t12k_store(root / "trailers_i_syn_fpc24.zarr", ids, image, FI)
    write_published_store(root / "trailers_k_syn_fps24_fpc24.zarr", ids, video, FV)
    write_mtgc(root / "mtgc.csv", MTGC(ids, labels, stratified_splits(labels, seed=0)))
    return {
        "root": root,
        "ids": ids,
        "labels": labels,
        "lengths": lengths,
        "image": image,
        "video": video,
        "image_store": root / "trailers_i_syn_fpc24.zarr",
        "video_store": root / "trailers_k_syn_fps24_fpc24.zarr",
        "mtgc": root / "mtgc.csv",
    }


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


# ---- model ---------------------------------------------------------------------------------


MODALITIES = {
    "image": (FI, None, "late"),
    "video": (None, FV, "late"),
    "early": (FI, FV, "early"),
    "late": (FI, FV, "late"),
}


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("modality", list(MODALITIES))
def test_forward_shapes(aggregation, modality):
    fi, fv, fusion = MODALITIES[modality]
    model = DIViTA(fi, fv, fusion=fusion, aggregation=aggregation)
    assert model.modality == modality
    for s in (30, 7):
        image = torch.randn(3, s, FI) if fi else None
        video = torch.randn(3, s, FV) if fv else None
        model.train()
        assert model(image, video).shape == (3, 10)
        model.eval()
        assert model(image=image, video=video).shape == (3, 10)


def test_late_fusion_averages_logits():
    model = DIViTA(FI, FV, fusion="late").eval()
    image, video = torch.randn(4, 30, FI), torch.randn(4, 30, FV)
    expected = (model.image_head(image) + model.video_head(video)) / 2
    torch.testing.assert_close(model(image, video), expected)


def test_tsfm_head_matches_reference_layout():
    model = DIViTA(FI, None, aggregation="tsfm")
    agg = model.head.aggregation
    assert agg.proj.in_features == FI and agg.proj.out_features == 128
    att = agg.block.attention
    assert att.num_heads == 4
    assert all(getattr(att, k).bias is None for k in "qkvo")
    assert agg.block.ff[0].out_features == 6 * 128 and agg.block.dropout.p == 0.25
    assert DIViTA(FI, None, aggregation="gru").head.aggregation.out_features == 115
    assert DIViTA(FI, None, aggregation="conv").head.aggregation.out_features == 128


def test_model_input_errors():
    with pytest.raises(ValueError):
        DIViTA(None, None)
    with pytest.raises(ValueError):
        DIViTA(FI, None, aggregation="lstm")
    model = DIViTA(FI, FV, fusion="late")
    with pytest.raises(ValueError, match="video"):
        model(torch.randn(2, 30, FI), None)
    with pytest.raises(ValueError):
        model(torch.randn(2, 30, FI + 1), torch.randn(2, 30, FV))


# ---- snippets ------------------------------------------------------------------------------


def _ramp_arrays(lengths, nf=4):
    """Clip j of trailer i has every feature equal to 1000*(i+1) + j + 1 (never 0)."""
    return [
        np.full((n, nf), 0.0, np.float32) + (1000 * (i + 1) + np.arange(n) + 1)[:, None] for i, n in enumerate(lengths)
    ]


def test_train_snippets_pad_short_trailers():
    lengths = [5, 30, 47, 0]
    arrays = _ramp_arrays(lengths)
    data = load_trailers_from_arrays(arrays)
    gen = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(300):
        image, video = data.train_batch(torch.arange(4), 30, gen)
        assert video is None and image.shape == (4, 30, 4) and image.dtype == torch.float32
        np.testing.assert_array_equal(image[0, :5].numpy(), arrays[0])
        assert (image[0, 5:] == 0).all()
        np.testing.assert_array_equal(image[1].numpy(), arrays[1])
        start = int(image[2, 0, 0]) - 3001
        assert 0 <= start <= 17
        np.testing.assert_array_equal(image[2].numpy(), arrays[2][start : start + 30])
        assert (image[3] == 0).all()
        starts.add(start)
    assert starts == set(range(18))  # uniform over [0, n - S], both ends included


def load_trailers_from_arrays(image_arrays, video_arrays=None):
    ids = [f"m{i}" for i in range(len(image_arrays))]
    image = table_from_arrays(image_arrays, ids)
    video = table_from_arrays(video_arrays, ids) if video_arrays is not None else None
    return TrailerFeatures(ids, image, video)


def test_eval_snippets_cover_every_clip_once():
    lengths = [1, 29, 30, 31, 60, 61, 0]
    arrays = _ramp_arrays(lengths)
    data = load_trailers_from_arrays(arrays)
    snippets = data.eval_snippets(torch.arange(len(lengths)), 30)
    counts = torch.bincount(snippets.owner, minlength=len(lengths)).tolist()
    assert counts == [max(1, math.ceil(n / 30)) for n in lengths] == [1, 1, 1, 2, 2, 3, 1]
    image, _ = data.gather(snippets.index)
    assert image.shape == (sum(counts), 30, 4)
    for t, n in enumerate(lengths):
        mine = image[snippets.owner == t].reshape(-1, 4).numpy()
        np.testing.assert_array_equal(mine[:n], arrays[t])
        assert (mine[n:] == 0).all()  # only the last snippet is padded, with zeros
    # a subset of rows, in another order, maps owners to positions in that subset
    index, owner = eval_index(data.offsets[[5, 0]], data.lengths[[5, 0]], data.pad_row, 30)
    assert owner.tolist() == [0, 0, 0, 1]


def test_mean_by_owner():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    out = mean_by_owner(values, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0], [10.0, 0.0]]))


def test_load_both_store_formats(dataset):
    ids = dataset["ids"][:7]
    img = load_table(dataset["image_store"], ids)
    vid = load_table(dataset["video_store"], ids, dtype="float16")
    assert img.feats.dtype == torch.float32 and vid.feats.dtype == torch.float16
    assert img.num_features == FI and vid.num_features == FV
    assert img.attrs["num_features"] == FI and img.attrs["t12k"]["backbone"] == "synthetic"
    assert vid.attrs == {"num_features": FV}
    assert img.lengths.tolist() == vid.lengths.tolist() == list(dataset["lengths"][:7])
    for i in range(7):
        o, n = int(img.offsets[i]), int(img.lengths[i])
        np.testing.assert_allclose(img.feats[o : o + n].numpy(), dataset["image"][i], rtol=1e-6)
        np.testing.assert_allclose(vid.feats[o : o + n].float().numpy(), dataset["video"][i], rtol=2e-3, atol=2e-3)
    assert (img.feats[-1] == 0).all()
    data = load_trailers(ids, dataset["image_store"], dataset["video_store"], dtype="float16")
    image, video = data.train_batch(torch.arange(7), 30, torch.Generator().manual_seed(1))
    assert image.dtype == video.dtype == torch.float32
    assert image.shape == (7, 30, FI) and video.shape == (7, 30, FV)


def test_missing_id_is_named(dataset):
    with pytest.raises(T12kError, match=r"'ghost'.*trailers_k_syn_fps24_fpc24\.zarr.*extract"):
        load_trailers(dataset["ids"][:3] + ["ghost"], None, dataset["video_store"])
    with pytest.raises(T12kError, match="'ghost'"):
        load_trailers(["ghost"], dataset["image_store"], None)


def test_clip_count_mismatch(dataset, tmp_path):
    ids = dataset["ids"][:4]
    video = [a.copy() for a in dataset["video"][:4]]
    video[2] = video[2][:-1]
    write_published_store(tmp_path / "short.zarr", ids, video, FV)
    with pytest.raises(T12kError, match=f"'{ids[2]}'.*same clip plan"):
        load_trailers(ids, dataset["image_store"], tmp_path / "short.zarr")


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


# ---- metrics -------------------------------------------------------------------------------


def test_pr_auc_by_hand():
    # points (recall, precision): (0, 1) (.5, 1) (.5, .5) (1, 2/3): trapezoids .5*1 + .5*(2/3+.5)/2
    assert pr_auc([1, 0, 1], [0.9, 0.5, 0.2]) == pytest.approx(19 / 24)
    assert pr_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)
    assert math.isnan(pr_auc([0, 0, 0], [0.1, 0.5, 0.3]))


def test_metrics_by_hand():
    y = np.zeros((2, 10), int)
    y[0, 0] = 1
    y[1, 1] = 1
    p = np.full((2, 10), 0.1)
    p[:, 0] = [0.8, 0.3]  # action ranked perfectly: 1
    p[:, 1] = [0.6, 0.4]  # adventure: points (0,1) (0,0) (1,.5): area .25
    m = compute_metrics(y, p)
    assert m["per_genre"]["action"] == pytest.approx(1.0)
    assert m["per_genre"]["adventure"] == pytest.approx(0.25)
    assert all(math.isnan(m["per_genre"][g]) for g in GENRES[2:])
    assert m["mAP"] == pytest.approx((1 + 0.25) / 10)  # genres without positives count 0
    assert m["wAP"] == pytest.approx((1 * 1 + 0.25 * 1) / 2)
    assert m["sAP"] == pytest.approx(1.0)  # each trailer's own genre is its top score
    # flattened: .8 P, .6 N, .4 P, .3 N, 16 x .1 N -> same curve as the pr_auc hand case
    assert m["muAP"] == pytest.approx(19 / 24)


def test_perfect_ranking_is_one():
    rng = np.random.default_rng(3)
    y = _labels(rng, 40)
    m = compute_metrics(y, y * 0.5 + 0.25 + rng.uniform(0, 0.1, y.shape))
    for k in ("muAP", "mAP", "wAP", "sAP"):
        assert m[k] == pytest.approx(1.0)


def test_metrics_match_sklearn_calls():
    rng = np.random.default_rng(4)
    y = _labels(rng, 60)
    p = rng.uniform(size=y.shape)

    def area(t, s):
        pre, rec, _ = precision_recall_curve(t, s)
        return auc(rec, pre)

    m = compute_metrics(y, p)
    genre = [area(y[:, j], p[:, j]) for j in range(10)]
    assert m["muAP"] == pytest.approx(area(y.ravel(), p.ravel()))
    assert m["mAP"] == pytest.approx(np.mean(genre))
    assert m["wAP"] == pytest.approx(np.average(genre, weights=y.sum(0) / y.sum()))
    assert m["sAP"] == pytest.approx(np.mean([area(t, s) for t, s in zip(y, p)]))
    assert [m["per_genre"][g] for g in GENRES] == pytest.approx(genre)


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
    assert list(hist[0]) == ["epoch", "train_loss", "val_loss", "val_muAP", "lr"]
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


def test_ctt_head_is_convolution_through_time_with_max_pooling():
    """The ctt aggregation against a hand-written convolution through time: every window of
    k clips (zero-padded at both ends) dotted with each filter, ReLU, max over time, then
    the dense layer, for each window size."""
    torch.manual_seed(0)
    model = DIViTA(FI, None, aggregation="ctt").eval()
    agg = model.head.aggregation
    assert [c.kernel_size[0] for c in agg.convs] == [3, 5, 7]
    assert all(c.out_channels == 256 and c.in_channels == FI for c in agg.convs)
    x = torch.randn(2, 30, FI)
    xb = model.head.bn(x.transpose(1, 2))  # (B, F, S)
    pooled = []
    for conv in agg.convs:
        k = conv.kernel_size[0]
        padded = torch.nn.functional.pad(xb, (k // 2, k // 2))
        windows = padded.unfold(2, k, 1)  # (B, F, S, k)
        out = torch.einsum("bfsk,ofk->bos", windows, conv.weight) + conv.bias[None, :, None]
        assert out.shape == (2, 256, 30)  # one output per clip position
        pooled.append(out.clamp(min=0).max(2).values)
    hidden = torch.relu(agg.dense(torch.cat(pooled, 1)))
    torch.testing.assert_close(model(x, None), model.head.classifier(hidden), rtol=1e-4, atol=1e-5)
    # max through time: the order of the snippet's clips matters only inside each window,
    # so reversing the clips gives the same result as reversing every filter in time
    flipped = DIViTA(FI, None, aggregation="ctt").eval()
    flipped.load_state_dict(model.state_dict())
    for conv in flipped.head.aggregation.convs:
        conv.weight.data = conv.weight.data.flip(2)
    torch.testing.assert_close(flipped(x.flip(1), None), model(x, None), rtol=1e-4, atol=1e-5)


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
