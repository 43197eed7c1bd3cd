"""shufflenet3d: Efficient-3DCNNs' checkpoint layout loads, the architecture's shape and size,
`--weights default` says where to get the file, and stored features equal the network on
frames preprocessed by hand the way Efficient-3DCNNs tested (BGR, 0..255 minus the
ActivityNet mean, short side to 112, centre crop 112)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from conftest import shot_frames, write_h264

from t12k.backbones import REGISTRY, get_spec, load_backbone
from t12k.errors import T12kError
from t12k.pipeline.extract import extract_features
from t12k.pipeline.media import iter_frames
from t12k.storage import FeatureStore, ShotStore

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def original_keys() -> dict[str, tuple[int, ...]]:
    """Key -> shape of Efficient-3DCNNs `ShuffleNetV2(num_classes=600, width_mult=1.)`, written
    from its models/shufflenetv2.py: conv1 = conv_bn (Conv3d, BN, ReLU); features = 4, 8, 4
    InvertedResidual (116, 232, 464 out), the first of a stage stride 2 with `banch1` = dw
    conv (0), BN (1), pw conv (2), BN (3), ReLU, and every block's `banch2` = pw conv (0),
    BN (1), ReLU, dw conv (3), BN (4), pw conv (5), BN (6), ReLU; conv_last = Conv3d 1x1x1 to
    1024, BN, ReLU; classifier = Dropout, Linear(1024, 600)."""
    keys: dict[str, tuple[int, ...]] = {}

    def conv(name, cout, cin_per_group, k):
        keys[f"{name}.weight"] = (cout, cin_per_group, k, k, k)

    def bn(name, c):
        keys.update({f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")})
        keys[f"{name}.num_batches_tracked"] = ()

    conv("conv1.0", 24, 3, 3)
    bn("conv1.1", 24)
    i, cin = 0, 24
    for repeats, cout in zip((4, 8, 4), (116, 232, 464)):
        half = cout // 2
        for r in range(repeats):
            p = f"features.{i}"
            if r == 0:
                conv(f"{p}.banch1.0", cin, 1, 3)
                bn(f"{p}.banch1.1", cin)
                conv(f"{p}.banch1.2", half, cin, 1)
                bn(f"{p}.banch1.3", half)
            conv(f"{p}.banch2.0", half, cin if r == 0 else half, 1)
            bn(f"{p}.banch2.1", half)
            conv(f"{p}.banch2.3", half, 1, 3)
            bn(f"{p}.banch2.4", half)
            conv(f"{p}.banch2.5", half, half, 1)
            bn(f"{p}.banch2.6", half)
            i, cin = i + 1, cout
    conv("conv_last.0", 1024, 464, 1)
    bn("conv_last.1", 1024)
    keys["classifier.1.weight"] = (600, 1024)
    keys["classifier.1.bias"] = (600,)
    return keys


def _learned(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@pytest.mark.parametrize("with_batch_counts", [True, False])
def test_efficient3dcnns_checkpoint_loads_by_path(tmp_path, with_batch_counts):
    """A checkpoint as Efficient-3DCNNs' main.py saves it (DataParallel `module.` keys under
    'state_dict', plus 'arch', 'epoch', ...) loads with every tensor where the original put it.
    Without `num_batches_tracked` (checkpoints of PyTorch < 0.4.1) it loads too."""
    gen = torch.Generator().manual_seed(1)
    state = {
        k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(shape, generator=gen))
        for k, shape in original_keys().items()
        if with_batch_counts or not k.endswith("num_batches_tracked")
    }
    for k, v in state.items():
        if k.endswith("running_var"):
            v.abs_().add_(0.5)
    path = tmp_path / "kinetics_shufflenetv2_1.0x_RGB_16_best.pth"
    torch.save(
        {
            "epoch": 40,
            "arch": "shufflenetv2",
            "state_dict": {f"module.{k}": v for k, v in state.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9}]},
            "best_prec1": 55.1,
        },
        path,
    )
    model, used = load_backbone("shufflenet3d", weights=str(path))
    assert used.startswith(f"file:{path.name}:sha256:")
    assert isinstance(model.classifier, torch.nn.Identity)
    loaded = model.state_dict()
    expected = {k: s for k, s in original_keys().items() if not k.startswith("classifier.")}
    assert {k: tuple(v.shape) for k, v in loaded.items()} == expected
    for k, v in state.items():
        if not k.startswith("classifier.") and not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(loaded[k], v, rtol=0, atol=0, msg=k)


def test_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    keys = original_keys()
    keys["conv_last.0.weight"] = (2048, 464, 1, 1, 1)  # a 2.0x-like last layer
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {f"module.{k}": torch.zeros(s) for k, s in keys.items()}}, path)
    with pytest.raises(T12kError, match="does not fit shufflenet3d"):
        load_backbone("shufflenet3d", weights=str(path))


def test_default_weights_say_where_to_get_the_checkpoint():
    with pytest.raises(T12kError) as exc:
        load_backbone("shufflenet3d", weights="default")
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1
    assert "kinetics_shufflenetv2_1.0x_RGB_16_best.pth" in msg and "--weights PATH" in msg
    assert "https://drive.google.com/open?id=1eggpkmy_zjb62Xra6kQviLa67vzP_FR8" in msg


def test_architecture_shape_and_size():
    """(B, 3, T, 112, 112) -> (B, 1024) for any T; parameters as the original's layers give:
    1,299,180 without the classifier, 1,914,180 with its 600 classes."""
    spec = get_spec("shufflenet3d")
    model, _ = load_backbone("shufflenet3d", "none")
    for t in (16, 24):
        with torch.no_grad():
            out = model(torch.randn(2, 3, t, 112, 112))
        assert out.shape == (2, 1024) and torch.isfinite(out).all() and out.std() > 0.01
    from_original = sum(
        math.prod(s) for k, s in original_keys().items() if _learned(k) and not k.startswith("classifier.")
    )
    assert from_original == 1_299_180
    assert sum(p.numel() for p in model.parameters()) == from_original
    assert spec.weights_enum.meta["num_params"] == from_original + 1024 * 600 + 600
    assert spec.num_features == 1024 and spec.pretraining == "Kinetics-600"
    assert spec.store_name() == "trailers_k_shufflenet_fps24_fpc24.zarr"


def test_transforms_are_torchvisions_video_preset():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import VideoClassification

    t = REGISTRY["shufflenet3d"].transforms()
    assert isinstance(t, VideoClassification)
    assert (t.resize_size, t.crop_size, t.interpolation) == ([112], [112, 112], InterpolationMode.BILINEAR)
    assert t.antialias is True  # as PIL's resize in Efficient-3DCNNs' Scale
    x = torch.randint(0, 256, (2, 24, 3, 130, 90), dtype=torch.uint8)
    assert t(x).shape == (2, 3, 24, 112, 112) and t(x).dtype == torch.float32


def _original_input(clip: np.ndarray) -> torch.Tensor:
    """Efficient-3DCNNs' test preprocessing, by hand, of an RGB uint8 clip (T, H, W, 3):
    Scale(112) (short side, bilinear with antialias, back to uint8), CenterCrop(112), BGR
    (its OpenCV loader), 0..255 minus the ActivityNet mean (114.7748, 107.7354, 99.4750) in
    the tensor's channel order, no std -> (3, T, 112, 112)."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    size = (112, int(112 * w / h)) if h <= w else (int(112 * h / w), 112)
    x = nnf.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).round()
    top, left = int(round((size[0] - 112) / 2.0)), int(round((size[1] - 112) / 2.0))
    x = x[:, :, top : top + 112, left : left + 112]
    x = x[:, [2, 1, 0]] - torch.tensor([114.7748, 107.7354, 99.4750]).view(1, 3, 1, 1)
    return x.permute(1, 0, 2, 3)


@pytest.mark.parametrize("size", [(90, 130), (96, 64)])  # portrait with an odd crop offset, landscape
def test_stored_features_equal_the_network_on_frames_preprocessed_by_hand(tmp_path, size):
    root = tmp_path
    (root / "videos").mkdir()
    write_h264(root / "videos" / "t1.mp4", shot_frames([30, 20], size=size, seed=7))
    shots = ShotStore.create_or_append(root / "shots.zarr", {"detector": "transnetv2", "threshold": 0.5})
    shots.write_shots("t1", np.array([[0, 29], [30, 49]]), np.zeros(50, np.float32))
    summary = extract_features(
        root / "videos",
        root / "shots.zarr",
        root / "out",
        backbones="shufflenet3d",
        weights="none",
        device="cpu",
        progress=False,
        log=lambda m: None,
    )
    assert summary.ok
    store = FeatureStore.open(root / "out" / "trailers_k_shufflenet_fps24_fpc24.zarr")
    feats, clips = store.read("t1"), store.read("t1", "clips")
    assert feats.shape == (3, 1024) and clips[:, :2].tolist() == [[0, 23], [24, 29], [30, 49]]

    frames = list(iter_frames(root / "videos" / "t1.mp4"))
    black = np.zeros_like(frames[0])
    x = torch.stack(
        [
            _original_input(np.stack([frames[i] if i <= last else black for i in range(first, first + 24)]))
            for first, last, _ in clips
        ]
    )
    model, _ = load_backbone("shufflenet3d", "none")
    model.bgr = False  # x is already BGR, as the original network takes it
    with torch.no_grad():
        by_hand = model(x).numpy()
    np.testing.assert_allclose(feats, by_hand, atol=1e-4, rtol=1e-4)
