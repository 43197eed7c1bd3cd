"""The extract stage end to end on generated trailers, with random (weights=none) backbones."""

import numpy as np
import pytest
import torch
import zarr

from t12k.backbones import get_spec, load_backbone, parse_backbones
from t12k.cli import main as cli_main
from t12k.errors import T12kError
from t12k.pipeline.media import iter_frames
from t12k.storage import FeatureStore, ShotStore


@pytest.fixture(scope="module")
def shots_store(three_videos, tmp_path_factory):
    path = tmp_path_factory.mktemp("shots") / "shots.zarr"
    assert cli_main(["shots", "--videos", str(three_videos), "--store", str(path), "--device", "cpu", "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def extracted(three_videos, shots_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    code = cli_main(
        [
            "extract",
            "--backbone",
            "shufflenet2d",
            "--weights",
            "none",
            "--videos",
            str(three_videos),
            "--shots",
            str(shots_store),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    return out


def test_shots_of_generated_videos(shots_store):
    store = ShotStore.open(shots_store)
    assert store.ids() == ["a1", "b2", "c3"]
    assert [len(store.shots(m)) for m in store.ids()] == [3, 2, 4]
    assert len(store.predictions("a1")) == 180


def test_store_is_in_the_published_layout(extracted, shots_store):
    path = extracted / "trailers_i_shufflenet_fpc24.zarr"
    z = zarr.open(str(path), mode="r")
    assert z.attrs["num_features"] == 1024
    assert (path / ".zgroup").is_file()  # zarr format 2
    shots = ShotStore.open(shots_store)
    for mid in ("a1", "b2", "c3"):
        arr = z[mid]
        assert arr.dtype == np.float32
        expected = sum(-(-(int(e) - int(s) + 1) // 24) for s, e in shots.shots(mid))
        assert arr.shape == (expected, 1024)
        assert np.isfinite(arr[:]).all()
    t = z.attrs["t12k"]
    assert t["backbone"] == "shufflenet2d" and t["weights"].startswith("none") and t["fpc"] == 24


def test_stored_features_equal_the_backbone_applied_by_hand(extracted, three_videos):
    """Feature of a clip == the backbone on its representative frame, preprocessed by the
    torchvision weights' own transforms."""
    store = FeatureStore.open(extracted / "trailers_i_shufflenet_fpc24.zarr")
    spec = get_spec("shufflenet2d")
    model, _ = load_backbone("shufflenet2d", "none")
    transform = spec.weights_enum.transforms()
    frames = list(iter_frames(three_videos / "c3.mp4"))
    clips = store.read("c3", "clips")
    feats = store.read("c3")
    assert (clips[:, 0] <= clips[:, 2]).all() and (clips[:, 2] <= clips[:, 1]).all()
    x = torch.stack([torch.from_numpy(frames[r].copy()).permute(2, 0, 1) for r in clips[:, 2]])
    with torch.no_grad():
        by_hand = model(transform(x)).numpy()
    np.testing.assert_allclose(feats, by_hand, atol=1e-4, rtol=0)


def test_rerun_skips_and_other_settings_are_refused(extracted, three_videos, shots_store, tmp_path, capsys):
    args = [
        "extract",
        "--backbone",
        "shufflenet2d",
        "--videos",
        str(three_videos),
        "--shots",
        str(shots_store),
        "--out",
        str(extracted),
        "--device",
        "cpu",
        "--quiet",
    ]
    assert cli_main(args + ["--weights", "none"]) == 0
    assert "0 done, 3 already done" in capsys.readouterr().out
    # the same store path with other weights: refused, one line, non-zero
    model, _ = load_backbone("shufflenet2d", "none")
    torch.nn.init.zeros_(model.conv1[0].weight)
    state = model.state_dict()
    torch.save(state, tmp_path / "w.pth")
    assert cli_main(args + ["--weights", str(tmp_path / "w.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings" in err and "weights" in err and len(err.splitlines()) == 1


def test_weights_from_a_local_file_are_used(tmp_path):
    model, _ = load_backbone("shufflenet2d", "none")
    full = dict(model.state_dict())  # headless state dict (fc is Identity)
    torch.save({"state_dict": {"module." + k: v for k, v in full.items()}}, tmp_path / "w.pth")
    loaded, used = load_backbone("shufflenet2d", str(tmp_path / "w.pth"))
    assert used.startswith("file:w.pth:sha256:")
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    with pytest.raises(T12kError, match="not found"):
        load_backbone("shufflenet2d", str(tmp_path / "missing.pth"))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(T12kError, match="cannot read weights"):
        load_backbone("shufflenet2d", str(tmp_path / "bad.pth"))


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(T12kError, match="unknown backbone 'vgg'.*shufflenet2d"):
        parse_backbones("shufflenet2d,vgg")
    assert [s.key for s in parse_backbones("all")][:3] == ["shufflenet2d", "resnet", "swin2d"]


def test_random_weights_are_the_same_in_every_process():
    a, _ = load_backbone("shufflenet2d", "none")
    torch.manual_seed(999)
    b, _ = load_backbone("shufflenet2d", "none")
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def test_a_corrupt_video_fails_alone(three_videos, shots_store, tmp_path, capsys):
    import shutil

    videos = tmp_path / "videos"
    shutil.copytree(three_videos, videos)
    (videos / "zz.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage, not a video")
    store = tmp_path / "shots.zarr"
    shutil.copytree(shots_store, store)
    assert cli_main(["shots", "--videos", str(videos), "--store", str(store), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "3 already done, 1 failed" in out and "zz: cannot read video" in out
    assert ShotStore.open(store).ids() == ["a1", "b2", "c3"]
    manifest = (tmp_path / "shots.manifest.csv").read_text()
    assert "zz,failed,cannot read video" in manifest


def test_predict_gives_the_trained_head_on_the_stored_features(extracted, three_videos, tmp_path, capsys, monkeypatch):
    """`t12k predict VIDEO --checkpoint` runs shots, the checkpoint's backbone with the
    store's settings, and the head: on a trailer of the collection it reproduces the head
    applied to that trailer's stored features."""
    import json

    from t12k.divita.train import load_model, predict_features
    from t12k.storage import MTGC, write_mtgc

    y = np.eye(10, dtype=np.int8)[[0, 4, 6]]
    splits = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.int8)
    write_mtgc(tmp_path / "mtgc.csv", MTGC(["a1", "b2", "c3"], y, splits))
    store = extracted / "trailers_i_shufflenet_fpc24.zarr"
    assert (
        cli_main(
            [
                "train",
                "--image-store",
                str(store),
                "--labels",
                str(tmp_path / "mtgc.csv"),
                "--out",
                str(tmp_path / "run"),
                "--max-epochs",
                "2",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    ckpt = tmp_path / "run" / "checkpoint.pt"
    assert (
        cli_main(["predict", str(three_videos / "c3.mp4"), "--checkpoint", str(ckpt), "--json", "--device", "cpu"]) == 0
    )
    res = json.loads(capsys.readouterr().out)
    steps = {"load models", "normalize", "shots and features, one decode", "of which the backbones", "head", "total"}
    assert steps <= set(res["seconds"]) and res["seconds"]["total"] >= res["seconds"]["normalize"]
    probs = np.array([res["probabilities"][g] for g in res["probabilities"]])
    assert len(probs) == 10 and ((probs > 0) & (probs < 1)).all()
    model, _ = load_model(ckpt)
    expected = predict_features(model, FeatureStore.open(store).read("c3"), None)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert res["clips"] == len(FeatureStore.open(store).read("c3"))
    # the table output names every genre
    assert cli_main(["predict", str(three_videos / "c3.mp4"), "--checkpoint", str(ckpt), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert all(g in out for g in ("action", "sci-fi", "thriller"))
    # features made with other weights than the checkpoint's stores: refused, one line
    model_b, _ = load_backbone("shufflenet2d", "none")
    torch.nn.init.zeros_(model_b.conv1[0].weight)
    torch.save(model_b.state_dict(), tmp_path / "other.pth")
    assert (
        cli_main(
            [
                "predict",
                str(three_videos / "c3.mp4"),
                "--checkpoint",
                str(ckpt),
                "--weights",
                str(tmp_path / "other.pth"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "were made with weights none" in err and "--weights" in err
    # a backbone that returns NaN: one line, no probabilities made of them
    from t12k.pipeline.extract.batches import Trailers

    scatter = Trailers.scatter
    monkeypatch.setattr(Trailers, "scatter", lambda self, key, owners, y: scatter(self, key, owners, y * np.nan))
    args = ["predict", str(three_videos / "c3.mp4"), "--checkpoint", str(ckpt), "--device", "cpu", "--json"]
    assert cli_main(args) == 2
    out, err = capsys.readouterr()
    assert not out and len(err.strip().splitlines()) == 1
    assert f"the shufflenet2d features of {three_videos / 'c3.mp4'} hold NaN or Inf in" in err


def test_default_weights_come_through_torchvision_download_cache(tmp_path, monkeypatch):
    """`--weights default` goes through torchvision's own download (load_state_dict_from_url):
    with the file already in $TORCH_HOME it is used offline; without it and without network
    the error says what to do."""
    from torchvision.models import get_model

    spec = get_spec("shufflenet2d")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(3)
    reference = get_model("shufflenet_v2_x1_0", weights=None).eval()
    torch.save(reference.state_dict(), cache / spec.weights_enum.url.rsplit("/", 1)[1])
    model, used = load_backbone("shufflenet2d", "default")
    assert used == "torchvision:ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1"
    reference.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), reference(x).numpy(), atol=1e-6)


def test_default_weights_offline_error_is_clear(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(T12kError, match="cannot download the shufflenet2d weights.*--weights PATH.*--weights none"):
        load_backbone("shufflenet2d", "default")
