import numpy as np
import pytest
import zarr

from t12k.errors import T12kError
from t12k.storage import MTGC, FeatureStore, ShotStore, read_mtgc, write_mtgc
from t12k.storage.mtgc import stratified_splits

SETTINGS = {"backbone": "shufflenet2d", "weights": "none", "strategy": "shot", "fpc": 24}


@pytest.mark.parametrize("fmt", [2, 3])
def test_feature_store_round_trip_in_the_published_layout(tmp_path, fmt):
    path = tmp_path / "trailers_i_shufflenet_fpc24.zarr"
    store = FeatureStore.create_or_append(path, SETTINGS, {"num_features": 8}, zarr_format=fmt)
    feats = np.random.default_rng(0).normal(size=(37, 8)).astype(np.float32)
    clips = np.arange(37 * 3, dtype=np.int32).reshape(37, 3)
    store.write_features("m1", feats, clips)
    # as the reference trainer reads it
    z = zarr.open(str(path), mode="r")
    assert z.attrs["num_features"] == 8
    assert z["m1"].dtype == np.float32 and z["m1"].shape == (37, 8)
    np.testing.assert_array_equal(z["m1"][5:35], feats[5:35])
    if fmt == 2:
        assert (path / ".zgroup").is_file() and (path / "m1" / ".zarray").is_file()
    again = FeatureStore.open(path)
    assert again.ids() == ["m1"] and again.num_features == 8
    np.testing.assert_array_equal(again.read("m1", "clips"), clips)
    staging = tmp_path / ".trailers_i_shufflenet_fpc24.zarr.staging"
    assert [p.name for p in staging.iterdir()] == [".lock"], "staging folders must be cleaned up"


def test_store_made_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    FeatureStore.create_or_append(path, SETTINGS, {"num_features": 8})
    with pytest.raises(T12kError, match="other settings.*weights"):
        FeatureStore.create_or_append(path, {**SETTINGS, "weights": "default"}, {"num_features": 8})
    with pytest.raises(T12kError, match="num_features"):
        FeatureStore.create_or_append(path, SETTINGS, {"num_features": 16})
    with pytest.raises(T12kError, match="shots store"):
        ShotStore.create_or_append(path, {})


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    store = FeatureStore.create_or_append(tmp_path / "s.zarr", SETTINGS, {"num_features": 4})
    with pytest.raises(ValueError):
        store.write_features("m1", np.zeros((3, 5)))  # wrong width
    assert "m1" not in store and store.ids() == []
    # an array written half-way (simulated crash before the final rename) is invisible
    (tmp_path / "s.zarr" / "clips").mkdir()
    assert FeatureStore.open(tmp_path / "s.zarr").ids() == []


def test_rewriting_an_id_replaces_it_whole(tmp_path):
    store = FeatureStore.create_or_append(tmp_path / "s.zarr", SETTINGS, {"num_features": 4})
    store.write_features("m1", np.zeros((3, 4)))
    store.write_features("m1", np.ones((5, 4)), np.zeros((5, 3)))
    np.testing.assert_array_equal(store.read("m1"), np.ones((5, 4)))
    store.delete("m1")
    assert "m1" not in store and not (tmp_path / "s.zarr" / "clips" / "m1").exists()


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "", ".hidden", "clips"])
def test_unsafe_ids_are_refused(tmp_path, bad):
    store = FeatureStore.create_or_append(tmp_path / "s.zarr", SETTINGS, {"num_features": 4})
    with pytest.raises(T12kError, match="invalid trailer id"):
        store.write_features(bad, np.zeros((1, 4)))


def test_opening_wrong_things_gives_clear_errors(tmp_path):
    with pytest.raises(T12kError, match="does not exist"):
        FeatureStore.open(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(T12kError, match="not a zarr group"):
        FeatureStore.open(tmp_path / "plain")
    ShotStore.create_or_append(tmp_path / "shots.zarr", {"detector": "transnetv2"})
    with pytest.raises(T12kError, match="num_features"):
        FeatureStore.open(tmp_path / "shots.zarr")


def test_shot_store_round_trip(tmp_path):
    store = ShotStore.create_or_append(tmp_path / "shots.zarr", {"detector": "transnetv2", "threshold": 0.5})
    preds = np.linspace(0, 1, 100).astype(np.float32)
    store.write_shots("m1", np.array([[0, 49], [51, 99]]), preds)
    again = ShotStore.open(tmp_path / "shots.zarr")
    assert again.shots("m1").tolist() == [[0, 49], [51, 99]]
    assert again.predictions("m1").dtype == np.float16
    np.testing.assert_allclose(again.predictions("m1"), preds, atol=1e-3)


GENRES_HEADER = "mid,action,adventure,comedy,crime,drama,fantasy,horror,romance,sci-fi,thriller,split0,split1,split2"


def test_mtgc_round_trip_and_subsets(tmp_path):
    y = np.random.default_rng(1).integers(0, 2, (50, 10)).astype(np.int8)
    data = MTGC([f"m{i}" for i in range(50)], y, stratified_splits(y, seed=1))
    write_mtgc(tmp_path / "mtgc.csv", data)
    back = read_mtgc(tmp_path / "mtgc.csv")
    assert back.ids == data.ids
    np.testing.assert_array_equal(back.labels, y)
    ids, labels = back.subset(0, "test")
    assert 8 <= len(ids) <= 12  # 20 % of 50
    for s in range(3):
        share = np.bincount(back.splits[:, s], minlength=3) / 50
        assert np.allclose(share, [0.7, 0.1, 0.2], atol=0.05)


@pytest.mark.parametrize(
    "text,match",
    [
        ("mid,action\nm1,1\n", "lacks column"),
        (GENRES_HEADER + "\nm1,1,0,0,0,0,0,0,0,0,0,0,1\n", "line 2: 13 fields"),
        (GENRES_HEADER + "\nm1,1,0,0,0,0,0,0,0,0,2,0,1,2\n", "line 2: genre values"),
        (GENRES_HEADER + "\nm1,1,0,0,0,0,0,0,0,0,0,0,1,5\n", "line 2: split values"),
        (GENRES_HEADER + "\nm1,x,0,0,0,0,0,0,0,0,0,0,1,2\n", "line 2: .*integers"),
        (GENRES_HEADER + "\nm1,1,0,0,0,0,0,0,0,0,0,0,1,2\nm1,1,0,0,0,0,0,0,0,0,0,0,1,2\n", "line 3: duplicate"),
        ("", "empty"),
    ],
)
def test_malformed_mtgc_is_reported_with_its_line(tmp_path, text, match):
    (tmp_path / "mtgc.csv").write_text(text)
    with pytest.raises(T12kError, match=match):
        read_mtgc(tmp_path / "mtgc.csv")


def test_small_collections_get_every_subset_and_three_different_splits():
    rng = np.random.default_rng(4)
    y = np.zeros((11, 10), np.int8)
    for i in range(11):
        y[i, rng.choice(10, int(rng.integers(1, 4)), replace=False)] = 1
    splits = stratified_splits(y, seed=0)
    for s in range(3):
        assert set(splits[:, s].tolist()) == {0, 1, 2}
    assert not (np.array_equal(splits[:, 0], splits[:, 1]) and np.array_equal(splits[:, 1], splits[:, 2]))
