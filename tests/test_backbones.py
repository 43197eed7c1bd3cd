"""Every registered backbone: stored features equal the backbone applied by hand to the
clip's frames preprocessed by the spec's own transforms (random weights),
and one decode feeding several backbones gives the stores each makes alone."""

import numpy as np
import pytest
import torch
import zarr
from conftest import shot_frames, write_h264

from t12k.backbones import REGISTRY, load_backbone
from t12k.pipeline.extract import extract_features
from t12k.pipeline.media import iter_frames
from t12k.storage import FeatureStore, ShotStore


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One 24 fps trailer of two shots (30 and 20 frames) and its shots store, written by
    hand so that the test does not depend on the detector."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "videos").mkdir()
    write_h264(root / "videos" / "t1.mp4", shot_frames([30, 20], size=(96, 64), seed=5))
    store = ShotStore.create_or_append(root / "shots.zarr", {"detector": "transnetv2", "threshold": 0.5})
    store.write_shots("t1", np.array([[0, 29], [30, 49]]), np.zeros(50, np.float32))
    return root


def _by_hand(key, frames, clips, fps=24):
    spec = REGISTRY[key]
    model, _ = load_backbone(key, "none")
    transform = spec.transforms()
    if spec.kind == "2d":
        x = torch.stack([torch.from_numpy(frames[r].copy()).permute(2, 0, 1) for r in clips[:, 2]])
    else:
        step = 24 // fps
        black = np.zeros_like(frames[0])
        x = torch.stack(
            [
                torch.from_numpy(
                    np.stack([frames[i] if i <= last else black for i in range(first, first + 24, step)])
                ).permute(0, 3, 1, 2)
                for first, last, _ in clips
            ]
        )
    with torch.no_grad():
        return model(transform(x)).numpy()


@pytest.mark.parametrize("key", list(REGISTRY))
def test_stored_features_equal_the_backbone_by_hand(tiny, tmp_path, key):
    spec = REGISTRY[key]
    summary = extract_features(
        tiny / "videos",
        tiny / "shots.zarr",
        tmp_path,
        backbones=key,
        weights="none",
        device="cpu",
        runtime="torch",  # the store's path; each runtime against the backbone: test_cpu_path.py
        progress=False,
        log=lambda m: None,
    )
    assert summary.ok
    path = tmp_path / spec.store_name()
    z = zarr.open(str(path), mode="r")
    assert z.attrs["num_features"] == spec.num_features
    store = FeatureStore.open(path)
    feats, clips = store.read("t1"), store.read("t1", "clips")
    assert feats.shape == (3, spec.num_features)  # 30 -> 24 + 6 padded, 20 -> 20 padded
    assert clips[:, :2].tolist() == [[0, 23], [24, 29], [30, 49]]
    frames = list(iter_frames(tiny / "videos" / "t1.mp4"))
    np.testing.assert_allclose(feats, _by_hand(key, frames, clips), atol=1e-4, rtol=1e-4)


def test_3d_frame_rate_subsamples_every_kth_frame(tiny, tmp_path):
    extract_features(
        tiny / "videos",
        tiny / "shots.zarr",
        tmp_path,
        backbones="r2plus1d",
        weights="none",
        fps=8,
        device="cpu",
        runtime="torch",
        progress=False,
        log=lambda m: None,
    )
    store = FeatureStore.open(tmp_path / "trailers_k_r2plus1d_fps8_fpc24.zarr")
    frames = list(iter_frames(tiny / "videos" / "t1.mp4"))
    np.testing.assert_allclose(
        store.read("t1"), _by_hand("r2plus1d", frames, store.read("t1", "clips"), fps=8), atol=1e-4, rtol=1e-4
    )


def test_one_decode_many_backbones_equals_each_alone(tiny, tmp_path):
    both = tmp_path / "both"
    extract_features(
        tiny / "videos",
        tiny / "shots.zarr",
        both,
        backbones="shufflenet2d,r2plus1d",
        weights="none",
        device="cpu",
        progress=False,
        log=lambda m: None,
    )
    for key in ("shufflenet2d", "r2plus1d"):
        alone = tmp_path / key
        extract_features(
            tiny / "videos",
            tiny / "shots.zarr",
            alone,
            backbones=key,
            weights="none",
            device="cpu",
            progress=False,
            log=lambda m: None,
        )
        name = REGISTRY[key].store_name()
        a, b = FeatureStore.open(both / name), FeatureStore.open(alone / name)
        np.testing.assert_array_equal(a.read("t1"), b.read("t1"))
        np.testing.assert_array_equal(a.read("t1", "clips"), b.read("t1", "clips"))
        assert (a.read("t1", "clips")[:, 2] >= 0).all() == (REGISTRY[key].kind == "2d")
