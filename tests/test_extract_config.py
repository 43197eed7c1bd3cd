"""The extract settings: one dataclass from the command line into the store attributes and back
out in predict, checked up front; the backbone kind enum keeps the stored and printed values."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from t12k.backbones import REGISTRY, Kind, get_spec
from t12k.device import PRECISIONS
from t12k.errors import T12kError
from t12k.pipeline.extract import ExtractConfig, store_settings
from t12k.shots.clips import STRATEGIES


def _attrs(cfg: ExtractConfig, key: str, weights_used: str) -> dict:
    """A store's attrs as `extract_features` writes them for `cfg`."""
    runner = SimpleNamespace(spec=get_spec(key), weights_used=weights_used, precision=cfg.precision)
    settings = store_settings(runner, cfg, {"detector": "transnetv2", "threshold": 0.4})
    return json.loads(json.dumps({"num_features": 1, "t12k": {"kind": "features", **settings}}))


def test_store_settings_are_recorded_as_before():
    cfg = ExtractConfig(backbones="resnet", fpc=16, fps=12, precision="bf16")
    t = _attrs(cfg, "resnet", "none (random He init, seed 0)")["t12k"]
    assert t == {
        "kind": "features",
        "backbone": "resnet",
        "model": "resnet50",
        "weights": "none (random He init, seed 0)",
        "strategy": "shot",
        "fpc": 16,
        "fps": 24,  # a 2D store records the video's frame rate
        "frame_selection": "histogram",
        "shots": {"detector": "transnetv2", "threshold": 0.4},
        "precision": "bf16",
    }
    t3 = _attrs(dataclasses.replace(cfg, backbones="r2plus1d", strategy="seq"), "r2plus1d", "x")["t12k"]
    assert (t3["fps"], t3["frame_selection"], t3["shots"]) == (12, "all", None)


@pytest.mark.parametrize(
    "key, cfg",
    [
        ("shufflenet2d", ExtractConfig(backbones="shufflenet2d", weights="none")),
        ("swin3d", ExtractConfig(backbones="swin3d", weights="none", strategy="seq", fpc=16, fps=8, precision="tf32")),
    ],
)
def test_a_store_gives_back_the_settings_that_made_it(key, cfg):
    back = ExtractConfig.from_store(_attrs(cfg, key, "none (random He init, seed 0)"))
    assert back == cfg
    torchvision = ExtractConfig.from_store(_attrs(cfg, key, "torchvision:Some_Weights.V1"))
    assert torchvision.weights == "default"


def test_weights_from_a_file_must_be_passed_again():
    attrs = _attrs(ExtractConfig(), "shufflenet2d", "file:w.pth:sha256:0123")
    with pytest.raises(T12kError, match="made with weights file:w.pth.*--weights PATH"):
        ExtractConfig.from_store(attrs)
    assert ExtractConfig.from_store(attrs, weights="/tmp/w.pth").weights == "/tmp/w.pth"


def test_published_stores_are_recognised_by_name():
    cfg = ExtractConfig.from_store({"num_features": 512}, "trailers_k_r2plus1d_fps12_fpc16.zarr")
    assert (cfg.backbones, cfg.weights, cfg.strategy, cfg.fpc, cfg.fps) == ("r2plus1d", "default", "shot", 16, 12)
    assert ExtractConfig.from_store({}, "trailers_i_swin_fpc24.zarr").backbones == "swin2d"
    with pytest.raises(T12kError, match="cannot tell how the store"):
        ExtractConfig.from_store({}, "trailers_i_swin_fps24_fpc24.zarr")  # a 2D store has no fps


@pytest.mark.parametrize(
    "settings, option",
    [
        ({"precision": "fp8"}, "--precision"),
        ({"resize_on": "gpu"}, "--resize-on"),
        ({"strategy": "scene"}, "--strategy"),
        ({"zarr_format": 4}, "--zarr-format"),
        ({"fpc": 0}, "--fpc"),
        ({"fps": 5}, "--fps"),
        ({"batch_size": 0}, "--batch-size"),
        ({"workers": "-1"}, "--workers"),
        ({"backbones": "vgg"}, "unknown backbone"),
    ],
)
def test_settings_no_run_could_use_are_refused_up_front(settings, option):
    with pytest.raises(T12kError, match=option):
        ExtractConfig(**settings)
    with pytest.raises(T12kError, match=option):
        dataclasses.replace(ExtractConfig(), **settings)


def test_every_command_line_field_has_help_and_choices_come_from_the_registries():
    fields = {f.name: f for f in dataclasses.fields(ExtractConfig)}
    assert all(f.metadata.get("help") for f in fields.values() if f.metadata.get("cli", True))
    assert fields["precision"].metadata["choices"] == tuple(PRECISIONS)
    assert fields["strategy"].metadata["choices"] == tuple(STRATEGIES)
    assert all(key in fields["backbones"].metadata["help"] for key in REGISTRY)
    assert fields["backbones"].metadata["flag"] == "--backbone"


def test_the_kind_enum_keeps_the_stored_and_printed_values():
    assert [s.kind for s in REGISTRY.values()] == ["2d", "2d", "2d", "3d", "3d", "3d"]
    assert f"{Kind.IMAGE:<4}|{Kind.VIDEO}" == "2d  |3d" and json.dumps([Kind.VIDEO]) == '["3d"]'
    assert get_spec("resnet").preprocessing()["kind"] == "2d"
