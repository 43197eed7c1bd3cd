"""Tests of t12k.divita: model shapes, snippet sampling, feature loading, metrics (training,
checkpoints and resuming are in test_train.py, which uses this file's synthetic stores).

Small synthetic stores (F = 16 and 24, ~100 trailers of 6..75 clips) whose features carry a
learnable genre signal (a per-genre mean shift plus noise); one store is written with the
t12k FeatureStore API, the other by hand with the plain zarr format 2 API, as the published
Trailers12k stores are.
"""

from __future__ import annotations

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
    compute_metrics,
    load_table,
    load_trailers,
    pr_auc,
)
from t12k.divita.data import TrailerFeatures, eval_index, mean_by_owner, table_from_arrays
from t12k.errors import T12kError
from t12k.storage import MTGC, FeatureStore, write_mtgc
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


def make_dataset(root: Path) -> dict:
    """The synthetic stores and labels in `root` (the `dataset` fixture of this file and test_train.py)."""
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
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("divita"))


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


# ---- metrics -------------------------------------------------------------------------------


def test_pr_auc_by_hand():
    # points (recall, precision): (0, 1) (.5, 1) (.5, .5) (1, 2/3): trapezoids .5*1 + .5*(2/3+.5)/2
    assert pr_auc([1, 0, 1], [0.9, 0.5, 0.2]) == pytest.approx(19 / 24)
    assert pr_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)
    assert pr_auc([0, 0, 0], [0.1, 0.5, 0.3]) == pytest.approx(0.5)  # no positive: as the reference's


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
    assert all(m["per_genre"][g] == pytest.approx(0.5) for g in GENRES[2:])
    assert m["no_positives"] == list(GENRES[2:])
    assert m["mAP"] == pytest.approx((1 + 0.25 + 8 * 0.5) / 10)  # genres without positives count 0.5
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
