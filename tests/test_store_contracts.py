"""The stores' contracts held on every store, with checksums or without (issue 20, items 1 and 3):
shots int32 (n, 2), 0 <= start <= end < frames, sorted, apart; features float32 (clips,
num_features), every chunk file there, every value finite. `verify`, every read (`read`,
`shots`, `load_table`), `extract`, `run`'s feature stage and `train` hold them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from t12k.cli import main as cli_main
from t12k.divita.data import load_table
from t12k.errors import T12kError
from t12k.storage import MTGC, FeatureStore, ShotStore, verify_store, write_mtgc
from t12k.storage.mtgc import stratified_splits

NF = 6


# ---- shots ---------------------------------------------------------------------------------

BAD_SHOTS = {  # id: (shots as some other writer left them, frames, the reason's words)
    "f64": (np.arange(15, dtype=np.float64).reshape(5, 3), 20, "dtype float64 shape (5, 3), but shots are int32"),
    "flat": (np.array([1, 2, 3, 4], np.int32), 20, "dtype int32 shape (4,), but shots are int32 (shots, 2)"),
    "inverted": (np.array([[10, 5], [6, 500]], np.int32), 600, "shot 0 [10, 5] ends before it starts"),
    "overlap": (np.array([[0, 10], [5, 19]], np.int32), 20, "shot 1 [5, 19] starts before the previous shot ends"),
    "negative": (np.array([[-3, 10]], np.int32), 20, "shot 0 [-3, 10] starts before frame 0"),
    "past": (np.array([[0, 9], [10, 20]], np.int32), 20, "shot 1 [10, 20] ends past the last of its 20 frames"),
}


def _plain_shots_store(path: Path, arrays: dict[str, tuple[np.ndarray, int]]) -> None:
    """A shots store as an older t12k (no checksums) or plain zarr leaves it."""
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs["t12k"] = {"kind": "shots", "detector": "transnetv2", "threshold": 0.5}
    preds = g.create_group("predictions")
    for mid, (shots, frames) in arrays.items():
        g.create_array(mid, data=shots, chunks=shots.shape)
        preds.create_array(mid, data=np.zeros(frames, np.float16), chunks=(4096,))


def test_shots_that_break_the_contract_are_damage_without_checksums(tmp_path, capsys):
    """verify said "all sound"; `shots` gave them to the planner (the (4,) array as two shots)."""
    path = tmp_path / "shots.zarr"
    _plain_shots_store(
        path, {"ok": (np.array([[0, 9], [11, 19]], np.int32), 20)} | {m: v[:2] for m, v in BAD_SHOTS.items()}
    )
    report = verify_store(path)
    assert (report.trailers, report.checksummed, sorted(report.damaged)) == (7, 0, sorted(BAD_SHOTS))
    for mid, (_, _, reason) in BAD_SHOTS.items():
        assert reason in report.damaged[mid], mid
    assert "7 record no checksum" in report.lines()[0] and "contracts checked" in report.lines()[0]
    store = ShotStore.open(path)
    np.testing.assert_array_equal(store.shots("ok"), [[0, 9], [11, 19]])
    message = (
        rf"^store {path}, trailer inverted: damaged \(shot 0 \[10, 5\] ends before it starts\); "
        rf"run `t12k verify {path}` and re-run `t12k shots` into it"
    )
    with pytest.raises(T12kError, match=message):
        store.shots("inverted")
    with pytest.raises(T12kError, match=r"trailer flat: damaged \(dtype int32 shape \(4,\)"):
        store.trailer("flat")
    assert store.is_done("ok") and not any(store.is_done(m) for m in BAD_SHOTS)
    assert cli_main(["verify", str(path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "shots store, 7 trailers, 6 damaged" in out and "  inverted: shot 0 [10, 5] ends before it starts" in out


def test_a_missing_predictions_chunk_of_an_old_store_is_still_read_as_zeros(tmp_path):
    """Companions of stores without checksums keep zarr's meaning: older t12k versions (and zarr 3
    by default) did not write a chunk equal to the fill value, as predictions of a still stretch are."""
    path = tmp_path / "shots.zarr"
    _plain_shots_store(path, {"a": (np.array([[0, 9999]], np.int32), 10000)})
    assert not (path / "predictions" / "a" / "0").exists()  # all zeros: zarr wrote no file
    assert verify_store(path).ok
    shots, predictions = ShotStore.open(path).trailer("a")
    assert len(predictions) == 10000 and not predictions.any() and shots.tolist() == [[0, 9999]]


def test_write_shots_refuses_shots_that_break_the_contract(tmp_path):
    store = ShotStore.create_or_append(tmp_path / "shots.zarr", {"detector": "transnetv2"})
    with pytest.raises(ValueError, match=r"shot 0 \[0, 10\] ends past the last of its 10 frames"):
        store.write_shots("a", np.array([[0, 10]]), np.zeros(10))
    assert "a" not in store
    store.write_shots("a", np.array([[0, 9]]), np.zeros(10))
    assert store.is_done("a")


# ---- features ------------------------------------------------------------------------------


def _labels(tmp_path: Path, ids: list[str]) -> Path:
    rng = np.random.default_rng(1)
    labels = np.zeros((len(ids), 10), np.int8)
    labels[np.arange(len(ids)), rng.integers(0, 10, len(ids))] = 1
    write_mtgc(tmp_path / "mtgc.csv", MTGC(ids, labels, stratified_splits(labels, seed=0)))
    return tmp_path / "mtgc.csv"


def _train(store: Path, labels: Path, out: Path) -> int:
    args = ["train", "--image-store", str(store), "--labels", str(labels), "--out", str(out)]
    return cli_main(args + ["--device", "cpu", "--quiet", "--max-epochs", "1"])


def test_nonfinite_features_are_damage_and_refused_before_training(tmp_path, capsys):
    """Written through the store's own writer (checksums agree): verify said "all sound" and
    train ran an epoch, then ended in scikit-learn's `ValueError: Input contains NaN.`"""
    path = tmp_path / "trailers_i_syn_fpc24.zarr"
    store = FeatureStore.create_or_append(path, {"backbone": "synthetic"}, {"num_features": NF})
    rng = np.random.default_rng(0)
    ids = [f"t{i:02d}" for i in range(20)]
    bad = {"t03": np.nan, "t07": np.inf, "t08": -np.inf, "t11": np.nan, "t12": np.nan, "t15": np.nan, "t19": np.inf}
    for mid in ids:
        feats = rng.random((8, NF), np.float32)
        if mid in bad:
            feats[[2, 5], 1] = bad[mid]
        store.write(mid, feats)  # the raw commit: write_features would refuse them
    report = verify_store(path)
    assert report.checksummed == 20 and sorted(report.damaged) == sorted(bad)
    assert report.damaged["t07"] == "NaN or Inf in 2 of 8 clips (first: clip 2)"
    with pytest.raises(T12kError, match=r"trailer t03: damaged \(NaN or Inf in 2 of 8 clips"):
        store.read("t03")
    message = (
        rf"^store {path}: features of 7 trailer\(s\) hold NaN or Inf \(t03, t07, t08, t11, t12 and 2 more\); "
        rf"run `t12k verify {path}`"
    )
    with pytest.raises(T12kError, match=message):
        load_table(path, ids)
    with pytest.raises(T12kError, match=r"hold NaN or Inf \(or values float16 cannot hold.*\(t19\)"):
        load_table(path, ["t00", "t19"], dtype="float16")
    assert len(load_table(path, ["t00", "t01"]).ids) == 2
    out = tmp_path / "run"
    assert _train(path, _labels(tmp_path, ids), out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"store {path}: features of 7 trailer(s) hold NaN or Inf" in err
    assert not (out / "history.csv").exists() and not (out / "checkpoint.pt").exists()


def test_write_features_never_writes_nonfinite_features(tmp_path):
    store = FeatureStore.create_or_append(tmp_path / "s.zarr", {"backbone": "synthetic"}, {"num_features": NF})
    feats = np.ones((5, NF), np.float32)
    feats[4, 0] = np.nan
    with pytest.raises(
        T12kError, match=r"^features of m1 for store .* hold NaN or Inf in 1 of 5 clips \(first: clip 4\)"
    ):
        store.write_features("m1", feats)
    assert "m1" not in store and store.ids() == []


def _plain_feature_store(path: Path, fmt: int, data: dict[str, np.ndarray], **kw) -> None:
    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    g.attrs["num_features"] = NF
    for mid, x in data.items():
        g.create_array(mid, shape=x.shape, dtype=x.dtype, chunks=(10, NF), **kw)[...] = x


@pytest.mark.parametrize("fmt", [2, 3])
def test_a_deleted_chunk_of_a_store_without_checksums_is_damage(tmp_path, fmt, capsys):
    """verify said "all sound" and training read zeros there: the shape says which chunk files exist."""
    path = tmp_path / "trailers_i_pub_fpc24.zarr"
    rng = np.random.default_rng(2)
    ids = [f"p{i:02d}" for i in range(20)]
    _plain_feature_store(path, fmt, {mid: rng.random((40, NF)).astype(np.float32) for mid in ids})
    assert verify_store(path).ok and len(load_table(path, ids).ids) == 20
    (path / "p05" / ("c/1/0" if fmt == 3 else "1.0")).unlink()
    chunk = "c/1/0" if fmt == 3 else "1.0"
    assert verify_store(path).damaged == {"p05": f"chunk file {chunk} is missing"}
    message = rf"^store {path}, trailer p05: damaged \(chunk file {chunk} is missing\)"
    with pytest.raises(T12kError, match=message):
        load_table(path, ids)
    with pytest.raises(T12kError, match=message):
        FeatureStore.open(path).read("p05")
    assert _train(path, _labels(tmp_path, ids), tmp_path / "run") == 2
    assert "trailer p05: damaged (chunk file" in capsys.readouterr().err


def test_a_deleted_chunk_of_a_layout_read_with_zarr_is_damage(tmp_path):
    """An array with a filter is read with the zarr API, which fills a missing chunk too."""
    path = tmp_path / "s.zarr"
    x = np.random.default_rng(3).random((40, NF)).astype(np.float32)
    _plain_feature_store(path, 2, {"d": x}, filters=[numcodecs.Delta("<f4")], compressors=None)
    np.testing.assert_array_equal(load_table(path, ["d"]).feats[:40].numpy(), zarr.open_array(path / "d")[...])
    (path / "d" / "2.0").unlink()
    assert verify_store(path).damaged == {"d": "1 of its 4 chunk files are missing"}
    with pytest.raises(T12kError, match=r"trailer d: damaged \(1 of its 4 chunk files are missing\)"):
        load_table(path, ["d"])


def test_features_of_another_dtype_or_shape_are_damage(tmp_path):
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(4)
    _plain_feature_store(path, 2, {"ok": rng.random((20, NF)).astype(np.float32), "f64": rng.random((20, NF))})
    assert verify_store(path).damaged == {"f64": "dtype float64, but features are float32"}
    with pytest.raises(T12kError, match=r"trailer f64: damaged \(dtype float64, but features are float32\)"):
        load_table(path, ["ok", "f64"])
    zarr.open_group(str(path), mode="a").create_array("wide", data=np.ones((3, NF + 1), np.float32))
    assert "shape (3, 7), but the store's num_features is 6" in verify_store(path).damaged["wide"]


# ---- extract and run: a bad trailer fails with its reason, the rest goes on ------------------


@pytest.fixture
def bad_inputs(shots_store, tmp_path, monkeypatch):
    """A copy of `shots_store` without checksums whose c3 holds an inverted pair, and a backbone
    that returns NaN for the clips of b2."""
    from t12k.pipeline.extract.batches import Trailers

    path = tmp_path / "shots.zarr"
    shutil.copytree(shots_store, path)
    g = zarr.open_group(str(path), mode="a")
    g.attrs["t12k"] = {k: v for k, v in g.attrs["t12k"].items() if k != "checksums"}
    shutil.rmtree(path / "c3")
    g.create_array("c3", data=np.array([[10, 5], [6, 120]], np.int32))
    scatter = Trailers.scatter

    def nan_for_b2(self, key, owners, y):
        y, off = np.array(y, copy=True), 0
        for mid, _, take in owners:
            if mid == "b2":
                y[off : off + take, 3] = np.nan
            off += take
        scatter(self, key, owners, y)

    monkeypatch.setattr(Trailers, "scatter", nan_for_b2)
    return path


def _one_store(folder: Path) -> FeatureStore:
    (path,) = folder.glob("trailers_*.zarr")
    return FeatureStore.open(path)


def test_extract_fails_bad_shots_and_nonfinite_features_and_goes_on(three_videos, bad_inputs, tmp_path):
    """c3's inverted pair planned clips and was recorded ok; b2's NaN features were written."""
    from t12k.pipeline.extract import extract_features

    out = tmp_path / "features"
    settings = dict(backbones="shufflenet2d", weights="none", device="cpu", batch_size=8)
    summary = extract_features(three_videos, bad_inputs, out, progress=False, log=lambda *a: None, **settings)
    assert summary.done == ["a1"] and sorted(summary.failed) == ["b2", "c3"]
    assert summary.failed["c3"].startswith(f"store {bad_inputs}, trailer c3: damaged (shot 0 [10, 5] ends before")
    assert (
        "features of b2 for store" in summary.failed["b2"] and "hold NaN or Inf in 6 of 6 clips" in summary.failed["b2"]
    )
    store = _one_store(out)
    assert store.ids() == ["a1"] and verify_store(store.path).ok
    rows = (out / "extract.manifest.csv").read_text()
    assert "NaN or Inf" in rows and "ends before it starts" in rows


def test_run_feature_stage_fails_bad_shots_and_nonfinite_features(three_videos, bad_inputs, tmp_path):
    from t12k.pipeline.extract import ExtractConfig
    from t12k.pipeline.run.stages import Features

    config = ExtractConfig(backbones="shufflenet2d", weights="none", device="cpu", batch_size=8, workers=1)
    stage = Features(tmp_path / "features", bad_inputs, config)
    outcomes = stage([(m, str(three_videos / f"{m}.mp4")) for m in ("a1", "b2", "c3")])
    assert [o.status for o in outcomes] == ["ok", "failed", "failed"]
    assert "hold NaN or Inf in 6 of 6 clips" in outcomes[1].reason
    assert "trailer c3: damaged (shot 0 [10, 5] ends before it starts)" in outcomes[2].reason
    assert _one_store(tmp_path / "features").ids() == ["a1"]
