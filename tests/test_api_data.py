"""The public API's data side: `t12k.open_features`, `t12k.TrailerDataset`, the lazy names of
`import t12k`, the docstring examples and the README's "From Python" code.

One small labelled corpus is made once: 20 trailers of 12 to 64 clips, an image store written
by t12k (FeatureStore, F = 1024, as shufflenet2d) and a video store written by hand with plain
zarr in the published Trailers12k layout (F = 512), and an mtgc.csv whose three splits each
hold 14 train, 2 validation and 4 test trailers. References: what FeatureStore and the zarr
API read, what the csv says (read here with the csv module), and the lines `t12k train`
prints for the same bad input.
"""

from __future__ import annotations

import csv
import doctest
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from test_divita import write_published_store

import t12k
from t12k import GENRES
from t12k.cli import main
from t12k.divita import dataset as dataset_module
from t12k.errors import T12kError
from t12k.storage import MTGC, FeatureStore, ShotStore, write_mtgc
from t12k.storage import featuremap as featuremap_module

README = Path(__file__).resolve().parent.parent / "README.md"
FI, FV = 1024, 512
IMAGE = "features/trailers_i_shufflenet_fpc24.zarr"
VIDEO = "features/trailers_k_r2plus1d_fps24_fpc24.zarr"
SETTINGS = {"backbone": "shufflenet2d", "weights": "none", "strategy": "shot", "fpc": 24}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _subset_code(i: int, split: int) -> int:
    """0 train, 1 validation, 2 test: 7, 1 and 2 of every 10 trailers, differently per split."""
    r = (i + 3 * split) % 10
    return 0 if r < 7 else 1 if r == 7 else 2


def make_corpus(root: Path) -> dict:
    rng = np.random.default_rng(21)
    ids = [f"tt{i:07d}" for i in range(20)]
    lengths = [12 + (7 * i) % 53 for i in range(20)]  # 12 .. 64 clips, some shorter than a snippet
    labels = np.zeros((20, len(GENRES)), np.int8)
    for i in range(20):
        labels[i, rng.choice(len(GENRES), size=1 + i % 3, replace=False)] = 1
    image = [rng.normal(size=(n, FI)).astype(np.float32) for n in lengths]
    video = [rng.normal(size=(n, FV)).astype(np.float32) for n in lengths]
    store = FeatureStore.create_or_append(
        root / IMAGE, SETTINGS, {"num_features": FI}, info={"t12k_version": t12k.__version__}
    )
    for mid, feats in zip(ids, image):
        n = len(feats)
        store.write_features(mid, feats, np.stack([np.arange(n) * 24, np.arange(n) * 24 + 23, np.arange(n) * 24], 1))
    write_published_store(root / VIDEO, ids, video, FV)
    splits = np.array([[_subset_code(i, s) for s in range(3)] for i in range(20)], np.int8)
    write_mtgc(root / "mtgc.csv", MTGC(ids, labels, splits))
    return {
        "root": root,
        "ids": ids,
        "image": dict(zip(ids, image)),
        "video": dict(zip(ids, video)),
        "image_store": root / IMAGE,
        "video_store": root / VIDEO,
        "mtgc": root / "mtgc.csv",
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("api_data"))


def _csv_subsets(path: Path) -> dict[tuple[int, str], list[tuple[str, list[float]]]]:
    """(split, subset) -> [(mid, labels)] in file order, read with the csv module."""
    names = {"0": "train", "1": "validation", "2": "test"}
    out: dict[tuple[int, str], list[tuple[str, list[float]]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for s in range(3):
                out.setdefault((s, names[row[f"split{s}"]]), []).append((row["mid"], [float(row[g]) for g in GENRES]))
    return out


def _train_error(capsys, tmp_path: Path, *args: str) -> str:
    """The error `t12k train` prints for these arguments, without its "t12k train: error: " prefix."""
    code = main(["train", "--quiet", "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err.removeprefix("t12k train: error: ")


# ---- open_features -----------------------------------------------------------------------------


def test_open_features_on_a_t12k_store(corpus):
    feats = t12k.open_features(corpus["image_store"])
    store = FeatureStore.open(corpus["image_store"])
    assert list(feats) == store.ids() == corpus["ids"] and len(feats) == 20  # no "clips" companion among them
    assert (feats.num_features, feats.path) == (FI, corpus["image_store"])
    assert feats.settings == store.settings and feats.settings["backbone"] == "shufflenet2d"
    for mid in corpus["ids"]:
        got = feats[mid]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, store.read(mid))
        np.testing.assert_array_equal(got, corpus["image"][mid])
    assert "tt0000003" in feats and "clips" not in feats and "tt9" not in feats and 3 not in feats
    assert feats.get("tt9") is None and dict(feats.items()).keys() == set(corpus["ids"])
    with pytest.raises(KeyError):
        feats["clips"]
    with pytest.raises(T12kError, match=r"^id 'tt9' is not in feature store .*; list its ids"):
        feats["tt9"]
    with pytest.raises(TypeError):
        feats["tt0000000"] = np.zeros((1, FI), np.float32)  # read-only
    assert feats != t12k.open_features(corpus["image_store"]) and feats == feats  # not compared array by array


def test_open_features_on_a_published_store(corpus):
    feats = t12k.open_features(corpus["video_store"])
    z = zarr.open(str(corpus["video_store"]), mode="r")
    assert dict(z.attrs) == {"num_features": FV}  # the published layout: no t12k attributes
    assert feats.settings == {} and feats.num_features == FV and list(feats) == corpus["ids"]
    for mid in corpus["ids"]:
        np.testing.assert_array_equal(feats[mid], np.asarray(z[mid][:]))
        np.testing.assert_array_equal(feats[mid], corpus["video"][mid])


def test_open_features_errors_are_the_lines_train_prints(corpus, tmp_path, capsys):
    shots = tmp_path / "shots.zarr"
    ShotStore.create_or_append(shots, {"detector": "transnetv2"})
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(corpus["image_store"], damaged)
    os.remove(damaged / "tt0000005" / "0.0")
    labels = str(corpus["mtgc"])
    for path in (tmp_path / "missing.zarr", shots):
        with pytest.raises(T12kError) as exc:
            t12k.open_features(path)
        assert str(exc.value) == _train_error(capsys, tmp_path, "--image-store", str(path), "--labels", labels)
    feats = t12k.open_features(damaged)
    np.testing.assert_array_equal(feats["tt0000004"], corpus["image"]["tt0000004"])  # the others still read
    with pytest.raises(T12kError) as exc:
        feats["tt0000005"]
    message = str(exc.value)
    assert message.startswith(f"store {damaged}, trailer tt0000005: damaged (chunk file 0.0 is missing)")
    assert message == _train_error(capsys, tmp_path, "--image-store", str(damaged), "--labels", labels)


# ---- TrailerDataset ----------------------------------------------------------------------------


def test_dataset_subsets_are_the_csv_splits_with_the_stores_features(corpus):
    expected = _csv_subsets(corpus["mtgc"])
    stores = {"image_store": corpus["image_store"], "video_store": corpus["video_store"]}
    for split in range(3):
        for subset in ("train", "validation", "test"):
            data = t12k.TrailerDataset(corpus["mtgc"], split, subset, **stores)
            want = expected[(split, subset)]
            assert len(data) == len(want) == {"train": 14, "validation": 2, "test": 4}[subset]
            assert data.ids == [mid for mid, _ in want]
            np.testing.assert_array_equal(data.labels, np.array([y for _, y in want], np.float32))
    data = t12k.TrailerDataset(corpus["mtgc"], 1, "test", **stores)
    assert data.num_features == {"image": FI, "video": FV}
    for i, (mid, y) in enumerate(expected[(1, "test")]):
        features, target = data[i]
        assert features.keys() == {"image", "video"} and target.dtype == torch.float32
        np.testing.assert_array_equal(features["image"].numpy(), corpus["image"][mid])
        np.testing.assert_array_equal(features["video"].numpy(), corpus["video"][mid])
        np.testing.assert_array_equal(target.numpy(), y)
    assert data[-1][0]["image"].shape == data[len(data) - 1][0]["image"].shape
    with pytest.raises(IndexError):
        data[len(data)]
    val = t12k.TrailerDataset(corpus["mtgc"], 2, "val", video_store=corpus["video_store"])
    assert val.ids == [mid for mid, _ in expected[(2, "validation")]] and val.num_features == {"video": FV}
    assert val[0][0].keys() == {"video"}


def test_snippets_are_30_adjacent_clips_of_the_trailer(corpus):
    torch.manual_seed(0)
    data = t12k.TrailerDataset(
        corpus["mtgc"], 0, "train", image_store=corpus["image_store"], video_store=corpus["video_store"], snippet=30
    )
    starts: dict[str, set[int]] = {}
    for _ in range(8):
        for i, mid in enumerate(data.ids):
            features, _ = data[i]
            image, video = features["image"].numpy(), features["video"].numpy()
            assert image.shape == (30, FI) and video.shape == (30, FV)
            full_i, full_v = corpus["image"][mid], corpus["video"][mid]
            n = len(full_i)
            if n < 30:  # the whole trailer, then zeros, as the reference pads
                np.testing.assert_array_equal(image[:n], full_i)
                assert not image[n:].any() and not video[n:].any()
                start = 0
            else:
                matches = [s for s in range(n - 29) if np.array_equal(image, full_i[s : s + 30])]
                assert len(matches) == 1, mid
                start = matches[0]
            np.testing.assert_array_equal(video[: min(n, 30)], full_v[start : start + 30])  # same window
            starts.setdefault(mid, set()).add(start)
    assert starts["tt0000000"] == {0}  # 12 clips
    assert len(starts["tt0000006"]) > 1  # 54 clips: 25 possible starts, drawn anew


def test_dataset_batches_with_a_dataloader(corpus):
    data = t12k.TrailerDataset(corpus["mtgc"], 0, "train", image_store=corpus["image_store"], snippet=30)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 4, 2]
    features, targets = batches[0]
    assert features.keys() == {"image"} and features["image"].shape == (4, 30, FI)
    np.testing.assert_array_equal(torch.cat([y for _, y in batches]).numpy(), data.labels)
    # in worker processes too (each draws its own snippets); the workers end with the iteration
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, timeout=60)
    batches = list(loader)
    assert [tuple(x["image"].shape) for x, _ in batches] == [(4, 30, FI)] * 3 + [(2, 30, FI)]
    np.testing.assert_array_equal(torch.cat([y for _, y in batches]).numpy(), data.labels)


def test_dataset_errors(corpus, tmp_path, capsys):
    labels, image = corpus["mtgc"], corpus["image_store"]
    cases = {
        "subset 'dev' does not exist; use train, validation or test": (labels, 0, "dev"),
        "split 3 does not exist; use 0, 1 or 2": (labels, 3, "train"),
        "split -1 does not exist; use 0, 1 or 2": (labels, -1, "test"),
    }
    for message, args in cases.items():
        with pytest.raises(T12kError) as exc:
            t12k.TrailerDataset(*args, image_store=image)
        assert str(exc.value) == message
    with pytest.raises(T12kError, match="^no feature store given"):
        t12k.TrailerDataset(labels, 0, "train")
    with pytest.raises(T12kError, match=r"^snippet 0 is not a number of clips"):
        t12k.TrailerDataset(labels, 0, "train", image_store=image, snippet=0)
    # a labelled id that is not in the store: the line `t12k train` prints
    more = tmp_path / "mtgc.csv"
    rows = Path(labels).read_text().splitlines()
    more.write_text("\n".join([*rows, "tt9999999," + ",".join(["1"] * 10) + ",0,0,0"]) + "\n")
    with pytest.raises(T12kError) as exc:
        t12k.TrailerDataset(more, 0, "train", image_store=image)
    assert "'tt9999999' of the labels is not in feature store" in str(exc.value)
    assert str(exc.value) == _train_error(capsys, tmp_path, "--image-store", str(image), "--labels", str(more))


# ---- the README's code, the docstring examples, the package's names -----------------------------


def _readme_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_from_python_runs(corpus, monkeypatch):
    """The README's open_features and training code, run as written in a folder that holds its
    files (the last three blocks, of detect_shots, extract_features and predict, of t12k.run and
    of t12k.Pipeline, need videos: tests/test_api_video.py, tests/test_api_run.py and
    tests/test_pipeline.py run those)."""
    blocks = _readme_blocks()
    assert len(blocks) == 5 and "t12k.detect_shots(" in blocks[2] and "t12k.predict(" in blocks[2]
    assert "t12k.run(" in blocks[3] and "t12k.Pipeline(" in blocks[4]
    monkeypatch.chdir(corpus["root"])
    torch.manual_seed(0)
    scope: dict = {}
    for block in blocks[:2]:
        exec(compile(block, str(README), "exec"), scope)
    assert scope["feats"].num_features == FI
    probs = scope["probs"]
    test_ids = [mid for mid, _ in _csv_subsets(corpus["mtgc"])[(0, "test")]]
    assert list(probs) == test_ids
    assert all(p.shape == (10,) and ((p >= 0) & (p <= 1)).all() for p in probs.values())
    assert torch.isfinite(scope["loss"])


def test_docstring_examples(corpus, monkeypatch):
    monkeypatch.chdir(corpus["root"])
    globs = {"store": IMAGE, "published": VIDEO, "labels": "mtgc.csv"}
    torch.manual_seed(0)
    for module in (featuremap_module, dataset_module):
        result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 3 and result.failed == 0, module.__name__


def test_import_t12k_stays_light():
    code = (
        "import sys, t12k; heavy = [m for m in ('torch', 'zarr', 'numpy', 't12k.storage') if m in sys.modules]; "
        "t12k.T12kError; t12k.open_features; assert 'torch' not in sys.modules; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


OTHERS = {  # names written beside this part of the API: tested once their module has them
    "detect_shots": "t12k.pipeline.api",
    "extract_features": "t12k.pipeline.api",
    "predict": "t12k.pipeline.api",
    "Shots": "t12k.pipeline.api",
    "Features": "t12k.pipeline.api",
    "register_backbone": "t12k.backbones",
    "run": "t12k.pipeline.run.call",
    "Pipeline": "t12k.pipeline.composed",
    "Stage": "t12k.pipeline.stage",
    "Resources": "t12k.pipeline.stage",
    "Outcome": "t12k.pipeline.stage",
}


def test_package_names():
    from t12k.divita.dataset import TrailerDataset
    from t12k.storage.featuremap import open_features

    assert (t12k.T12kError, t12k.open_features, t12k.TrailerDataset) == (T12kError, open_features, TrailerDataset)
    assert set(t12k.__all__) == {"GENRES", "__version__", "T12kError", "open_features", "TrailerDataset", *OTHERS}
    assert set(t12k.__all__) <= set(dir(t12k)) and t12k.GENRES == GENRES
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        t12k.nope  # noqa: B018


def test_readme_names_the_attributes_of_shots_and_features():
    if importlib.util.find_spec("t12k.pipeline.api") is None:
        pytest.skip("t12k.pipeline.api is not written yet")
    block = _readme_blocks()[2]
    for name, attrs in (("Shots", ("scenes", "probabilities")), ("Features", ("features", "clips"))):
        fields = getattr(importlib.import_module("t12k.pipeline.api"), name).__dataclass_fields__
        for attr in attrs:
            assert f".{attr} " in block and attr in fields, (name, attr)


@pytest.mark.parametrize("name", list(OTHERS))
def test_package_names_of_the_other_parts(name):
    module = OTHERS[name]
    if importlib.util.find_spec(module) is None or not hasattr(importlib.import_module(module), name):
        pytest.skip(f"{module}.{name} is not written yet")
    assert getattr(t12k, name) is getattr(importlib.import_module(module), name)
