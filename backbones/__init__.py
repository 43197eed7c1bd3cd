"""The frozen backbones of Trailers12k: a registry in the manner of torchvision's weights API.

A `BackboneSpec` carries what extraction needs: kind (2D frame or 3D clip), pretraining,
the builder and weight set (whose own `transforms()` are the preprocessing: resize, crop,
interpolation, mean/std), feature size and the published store name. Five networks are
torchvision's; `shufflenet3d` (Efficient-3DCNNs' 3D ShuffleNetV2) is written here with a
weight set in torchvision's form (`backbones/shufflenet3d.py`).
`load_backbone(key, weights)` returns the network with its classifier removed, frozen, and
a description of the weights actually used.

Weights: ``"default"`` = the spec's pretrained set, through torchvision's own download
(cached in $TORCH_HOME), or, for weights that cannot be downloaded here (`weights_source`),
an error saying where to get the file; a path = a local state dict or checkpoint (e.g. the
same .pth, downloaded elsewhere); ``"none"`` = random initialisation with a fixed seed,
identical in every process (for tests and offline demos).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t12k.errors import T12kError, first_line
from t12k.storage.checksum import file_digest

WEIGHTS_SEED = 0


class Kind(StrEnum):
    """What a backbone sees of a clip; the value is the one stores, tables and logs show."""

    IMAGE = "2d"  # one representative frame per clip
    VIDEO = "3d"  # every (sub-sampled) frame of the clip


@dataclass(frozen=True)
class BackboneSpec:
    key: str
    kind: Kind
    pretraining: str
    model_name: str  # torchvision.models.get_model name, or the name of `builder`'s network
    weights_name: str  # weight set (enum member name) used by "default"
    head_attr: str  # classifier attribute replaced by Identity
    num_features: int
    store_prefix: str  # i (ImageNet), k (Kinetics), ik (ImageNet + Kinetics)
    store_stem: str  # published store name part
    # A network outside torchvision: "module:function" building it and "module:Class" of its
    # weight sets (a torchvision WeightsEnum), imported when first used; None: torchvision's.
    builder: str | None = None
    weights_class: str | None = None
    weights_source: str | None = None  # where to get "default" by hand when it cannot be downloaded here
    # What the network itself expects, after `transforms()` (which always gives RGB in [0, 1]
    # minus mean over std): shufflenet3d flips to BGR inside its first layer.
    channel_order: str = "RGB"
    value_range: str = "[0, 1], then (x - mean) / std"

    @property
    def weights_enum(self) -> Any:
        """The "default" weight set: url, `transforms()` and `meta` (num_params, _ops)."""
        if self.weights_class is not None:
            return _import(self.weights_class)[self.weights_name]
        from torchvision.models import get_model_weights

        return get_model_weights(self.model_name)[self.weights_name]

    def build(self) -> nn.Module:
        """The network with its classifier, default-initialised, no weights loaded."""
        if self.builder is not None:
            return _import(self.builder)()
        from torchvision.models import get_model

        return get_model(self.model_name, weights=None)

    def transforms(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The weight set's own preprocessing; used for every weights choice, `none` too.

        2D: uint8 (B, 3, H, W) -> float (B, 3, 224, 224). 3D: uint8 (B, T, 3, H, W) ->
        float (B, 3, T, h, w).
        """
        return self.weights_enum.transforms()

    def preprocessing(self) -> dict[str, Any]:
        """Everything that turns decoded frames into this network's input, in one place."""
        t: Any = self.transforms()  # a torchvision preset: resize_size, crop_size, mean, std, ...
        w = self.weights_enum
        return {
            "kind": self.kind,
            "pretraining": self.pretraining,
            "resize": list(t.resize_size),
            "crop": list(t.crop_size),
            "interpolation": t.interpolation.value,
            "antialias": bool(
                getattr(t, "antialias", False) if self.kind == Kind.VIDEO else (t.antialias is not False)
            ),
            "mean": [round(float(m), 6) for m in t.mean],
            "std": [round(float(v), 6) for v in t.std],
            "channel_order": self.channel_order,
            "value_range": self.value_range,
            "features": self.num_features,
            "weights": self.weights_source or getattr(w, "url", ""),
        }

    def store_name(self, fpc: int = 24, fps: int = 24, strategy: str = "shot") -> str:
        """`trailers_i_shufflenet_fpc24.zarr`, `trailers_k_r2plus1d_fps24_fpc24.zarr`, ...;
        Seq-f stores get a `_seq` suffix (the published stores are all Shot-f)."""
        name = f"trailers_{self.store_prefix}_{self.store_stem}"
        if self.kind == Kind.VIDEO:
            name += f"_fps{fps}"
        name += f"_fpc{fpc}"
        if strategy != "shot":
            name += f"_{strategy}"
        return name + ".zarr"


_SPECS = [
    BackboneSpec(
        "shufflenet2d", Kind.IMAGE, "ImageNet-1k", "shufflenet_v2_x1_0", "IMAGENET1K_V1", "fc", 1024, "i", "shufflenet"
    ),
    BackboneSpec("resnet", Kind.IMAGE, "ImageNet-1k", "resnet50", "IMAGENET1K_V1", "fc", 2048, "i", "resnet"),
    BackboneSpec("swin2d", Kind.IMAGE, "ImageNet-1k", "swin_t", "IMAGENET1K_V1", "head", 768, "i", "swin"),
    BackboneSpec(
        "shufflenet3d",
        Kind.VIDEO,
        "Kinetics-600",
        "shufflenet3d_v2_x1_0",
        "KINETICS600_V1",
        "classifier",
        1024,
        "k",
        "shufflenet",
        builder="t12k.backbones.shufflenet3d:shufflenet3d_v2_x1_0",
        weights_class="t12k.backbones.shufflenet3d:ShuffleNet3D_Weights",
        weights_source="kinetics_shufflenetv2_1.0x_RGB_16_best.pth from the pretrained models linked in "
        "the Efficient-3DCNNs README, "
        "https://drive.google.com/open?id=1eggpkmy_zjb62Xra6kQviLa67vzP_FR8",
        channel_order="BGR (the RGB input is flipped in the network's first step)",
        value_range="[0, 255] minus the ActivityNet mean (the preset's mean/255, std 1/255)",
    ),
    BackboneSpec("r2plus1d", Kind.VIDEO, "Kinetics-400", "r2plus1d_18", "KINETICS400_V1", "fc", 512, "k", "r2plus1d"),
    BackboneSpec(
        "swin3d", Kind.VIDEO, "ImageNet-1k + Kinetics-400", "swin3d_t", "KINETICS400_V1", "head", 768, "ik", "swin"
    ),
]
REGISTRY: dict[str, BackboneSpec] = {s.key: s for s in _SPECS}


def _import(target: str) -> Any:
    """`package.module:name` -> that object."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def get_spec(key: str) -> BackboneSpec:
    try:
        return REGISTRY[key]
    except KeyError:
        raise T12kError(f"unknown backbone {key!r}; choose from {', '.join(REGISTRY)}") from None


def parse_backbones(text: str) -> list[BackboneSpec]:
    """`shufflenet2d,resnet` or `all` -> specs (unknown names raise T12kError)."""
    keys = list(REGISTRY) if text.strip() == "all" else [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise T12kError("no backbone given; pass --backbone with one of " + ", ".join(REGISTRY))
    return [get_spec(k) for k in dict.fromkeys(keys)]


def _clean_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError("not a state dict")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def _he_init_convs(model: nn.Module) -> None:
    """He (fan-in) initialisation of every convolution.

    PyTorch's default convolution init shrinks activations layer after layer: a random
    ShuffleNet's features come out around 1e-6, below BatchNorm's epsilon, so a head
    trained on them sees nothing. With He init they keep a usable scale (std ~1 across
    inputs), and random-weight features stay informative for tests and offline demos.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def weights_identity(key: str, weights: str = "default") -> str:
    """What fixes the parameters `load_backbone(key, weights)` gives, without building the
    network: the seed, the named weight set, or the file's sha256 (the key of converted forms
    of the network, `pipeline.extract.openvino`)."""
    spec = get_spec(key)
    if weights == "none":
        return f"none:seed{WEIGHTS_SEED}"
    if weights == "default":
        return f"default:{spec.weights_class or spec.model_name}.{spec.weights_name}"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise T12kError(f"weights file {path} not found; pass --weights default, none or an existing .pth file")
    return f"file:{path.name}:sha256:{file_digest(path)}"


def load_backbone(key: str, weights: str = "default", device: str = "cpu") -> tuple[nn.Module, str]:
    """The spec's network without classifier, in eval mode with frozen parameters, and a
    string that says which weights it carries (stored in the store's attrs)."""
    spec = get_spec(key)
    if weights == "none":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(WEIGHTS_SEED)
            model = spec.build()
            _he_init_convs(model)
        used = f"none (random He init, seed {WEIGHTS_SEED})"
    elif weights == "default":
        if spec.weights_source:
            raise T12kError(
                f"the {spec.key} weights cannot be downloaded here; get {spec.weights_source} "
                "and pass --weights PATH (or --weights none)"
            )
        model = spec.build()
        try:
            state = spec.weights_enum.get_state_dict(progress=False)
        except Exception as exc:
            raise T12kError(
                f"cannot download the {spec.key} weights {spec.weights_enum.url} ({first_line(exc)[:120]}); "
                "check the network, or download that file elsewhere and pass --weights PATH, or use --weights none"
            ) from exc
        model.load_state_dict(state)
        used = f"torchvision:{type(spec.weights_enum).__name__}.{spec.weights_name}"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise T12kError(f"weights file {path} not found; pass --weights default, none or an existing .pth file")
        model = spec.build()
        try:
            state = _clean_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise T12kError(
                f"cannot read weights file {path} ({first_line(exc)[:120]}); "
                f"give a PyTorch state dict of {spec.model_name}"
            ) from exc
        head = spec.head_attr + "."
        if not any(k.startswith(head) for k in state):  # a headless state dict
            state.update({k: v for k, v in model.state_dict().items() if k.startswith(head)})
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise T12kError(
                f"weights file {path} does not fit {spec.model_name} "
                f"({first_line(exc)[:160]}); give that model's state dict"
            ) from exc
        used = f"file:{path.name}:sha256:{file_digest(path)[:16]}"
    setattr(model, spec.head_attr, nn.Identity())
    model.eval().requires_grad_(False)
    return model.to(device), used


def registry_table(details: bool = False) -> str:
    """The registered backbones as `t12k backbones` prints them; with `details`, each one's
    preprocessing too."""
    lines = [
        f"{'key':<13} {'kind':<4} {'pretraining':<27} {'features':>8} {'params':>8} {'GFLOPs':>7}  store (Shot-24)"
    ]
    for s in REGISTRY.values():
        meta = s.weights_enum.meta
        lines.append(
            f"{s.key:<13} {s.kind:<4} {s.pretraining:<27} {s.num_features:>8} {meta['num_params'] / 1e6:>7.1f}M "
            f"{meta['_ops']:>7.2f}  {s.store_name()}"
        )
    lines.append(
        "params and GFLOPs as each weight set's meta reports them (with classifier; 3D: per clip at the weights' "
        "own clip size; shufflenet3d's counted by t12k as torchvision counts, 16x112x112)"
    )
    for s in REGISTRY.values() if details else ():
        lines += ["", f"{s.key}:"] + [f"  {k:<14} {v}" for k, v in s.preprocessing().items()]
    return "\n".join(lines)


__all__ = [
    "Kind",
    "BackboneSpec",
    "REGISTRY",
    "get_spec",
    "parse_backbones",
    "load_backbone",
    "weights_identity",
    "registry_table",
]
