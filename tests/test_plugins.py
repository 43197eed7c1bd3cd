"""Backbones from other packages: the entry-point group `t12k.backbones` and `register_backbone`.

A tiny plugin package is "installed" as a dist-info folder on a temporary path (PYTHONPATH of a
fresh `t12k` process, so importlib.metadata finds its entry points there and nowhere else).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from t12k.backbones import BUILTIN, REGISTRY, BackboneSpec, Kind, Registry, get_spec, register_backbone
from t12k.backbones import spec as spec_module
from t12k.errors import T12kError

T12K = str(Path(sys.executable).parent / "t12k")

# The spec lives in a module without torch, so listing the plugin's backbone costs nothing;
# the network and its weight set (preprocessing) in another, imported when the network is built.
PLUGIN_INIT = """
from t12k.backbones import BackboneSpec, Kind

CLASH = BackboneSpec("resnet", Kind.IMAGE, "none", "tinynet", "DEFAULT", "fc", 8, "i", "clash")


def specs():
    return [
        BackboneSpec(
            "tinynet", Kind.IMAGE, "nothing (random)", "tinynet", "DEFAULT", "fc", 8, "i", "tinynet",
            builder="tinyplugin.net:build", weights_class="tinyplugin.net:TinyWeights",
        )
    ]
"""
PLUGIN_NET = """
from functools import partial

from torch import nn
from torchvision.models import Weights, WeightsEnum
from torchvision.transforms._presets import ImageClassification


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.features(x))


def build():
    return TinyNet()


class TinyWeights(WeightsEnum):
    DEFAULT = Weights(
        url="https://example.invalid/tinynet.pth",
        transforms=partial(ImageClassification, crop_size=32, resize_size=36),
        meta={"num_params": 277, "_ops": 0.0},
    )
"""
ENTRY_POINTS = """
[t12k.backbones]
tinynet = tinyplugin:specs
brokennet = tinyplugin_missing:SPEC
resnet = tinyplugin:CLASH
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "tinyplugin").mkdir()
    (root / "tinyplugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN_INIT))
    (root / "tinyplugin" / "net.py").write_text(textwrap.dedent(PLUGIN_NET))
    info = root / "tinyplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def _t12k(plugin_path: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    cmd = [sys.executable, "-c", code] if code else [T12K, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_the_plugin_is_listed_and_broken_plugins_are_reported(plugin_path):
    code = (
        "import sys; from t12k.cli import main; status = main(['backbones']); "
        "print('torch imported:', 'torch' in sys.modules); sys.exit(status)"
    )
    res = _t12k(plugin_path, code=code)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[1 : 1 + len(BUILTIN) + 1]] == [*BUILTIN, "tinynet"]
    tiny = next(ln for ln in lines if ln.startswith("tinynet"))
    assert tiny.split() == ["tinynet", "2d", "nothing", "(random)", "8", "-", "-", "trailers_i_tinynet_fpc24.zarr"]
    resnet = next(ln for ln in lines if ln.startswith("resnet"))
    assert "trailers_i_resnet_fpc24.zarr" in resnet  # the built-in, not the clashing plugin
    assert any("backbone plugin 'brokennet' (tinyplugin_missing:SPEC) cannot be loaded" in ln for ln in lines)
    assert any("plugin 'resnet'" in ln and "already registered" in ln for ln in lines)
    assert lines[-1] == "torch imported: False"
    asked = _t12k(plugin_path, "extract", "--backbone", "brokennet", "--videos", str(plugin_path))
    assert asked.returncode == 2
    assert "backbone plugin 'brokennet' (tinyplugin_missing:SPEC) cannot be loaded: No module named" in asked.stderr


def test_extract_with_a_plugin_backbone(plugin_path, three_videos, shots_store, tmp_path, monkeypatch):
    """`t12k extract --backbone tinynet` writes the store of the plugin's network: its features
    are the network (random, seed 0) applied by hand to each clip's representative frame."""
    out = tmp_path / "features"
    res = _t12k(
        plugin_path,
        *("extract", "--backbone", "tinynet", "--weights", "none", "--videos", str(three_videos)),
        *("--shots", str(shots_store), "--out", str(out), "--ids", "c3", "--device", "cpu", "--quiet"),
    )
    assert res.returncode == 0, res.stderr
    from t12k.backbones import load_backbone
    from t12k.pipeline.media import iter_frames
    from t12k.storage import FeatureStore

    store = FeatureStore.open(out / "trailers_i_tinynet_fpc24.zarr")
    assert store.num_features == 8 and store.ids() == ["c3"]
    monkeypatch.syspath_prepend(str(plugin_path))
    from tinyplugin import specs  # noqa: I001 (the plugin's module, on the temporary path)

    (tiny,) = specs()
    monkeypatch.setattr(spec_module, "REGISTRY", Registry([*REGISTRY.values(), tiny], group=None))
    model, _ = load_backbone("tinynet", "none")
    frames = list(iter_frames(three_videos / "c3.mp4"))
    clips = store.read("c3", "clips")
    x = torch.stack([torch.from_numpy(frames[r].copy()).permute(2, 0, 1) for r in clips[:, 2]])
    with torch.no_grad():
        by_hand = model(tiny.transforms()(x)).numpy()
    assert by_hand.shape == (len(clips), 8)
    np.testing.assert_allclose(store.read("c3"), by_hand, atol=1e-5, rtol=0)


def test_register_backbone(monkeypatch):
    monkeypatch.setattr(spec_module, "REGISTRY", Registry(REGISTRY.values(), group=None))
    spec = BackboneSpec("mine", Kind.VIDEO, "x", "r2plus1d_18", "KINETICS400_V1", "fc", 512, "k", "mine")
    assert register_backbone(spec) is spec
    assert get_spec("mine") is spec and spec.store_name() == "trailers_k_mine_fps24_fpc24.zarr"
    register_backbone(BackboneSpec(**{**spec.__dict__}))  # the same spec again: nothing happens
    with pytest.raises(T12kError, match="'mine' is already registered with another spec"):
        register_backbone(BackboneSpec(**{**spec.__dict__, "num_features": 7}))
    with pytest.raises(T12kError, match="'resnet' is already registered"):
        register_backbone(BackboneSpec(**{**spec.__dict__, "key": "resnet"}))
    with pytest.raises(T12kError, match="its num_features must be a positive integer"):
        register_backbone(BackboneSpec(**{**spec.__dict__, "key": "bad", "num_features": 0}))
    with pytest.raises(T12kError, match="needs its weights_class"):
        register_backbone(BackboneSpec(**{**spec.__dict__, "key": "bad", "builder": "pkg:build"}))
    with pytest.raises(T12kError, match="must be a t12k.backbones.BackboneSpec"):
        register_backbone("resnet")  # type: ignore[arg-type]
    assert "mine" not in REGISTRY  # the process's registry is untouched


def test_built_in_table_figures_are_the_weight_sets_meta():
    for spec in REGISTRY.values():
        meta = spec.weights_enum.meta
        assert (spec.num_params, spec.gflops) == (meta["num_params"], meta["_ops"]), spec.key
