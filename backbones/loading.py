"""Building and loading the frozen networks (imports torch): `load_backbone`, `weights_identity`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from t12k.backbones.spec import WEIGHTS_SEED, get_spec
from t12k.errors import T12kError, first_line


def _file_digest(path: Path) -> str:
    from t12k.storage.checksum import file_digest

    return file_digest(path)


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
    return f"file:{path.name}:sha256:{_file_digest(path)}"


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
        used = f"file:{path.name}:sha256:{_file_digest(path)[:16]}"
    setattr(model, spec.head_attr, nn.Identity())
    model.eval().requires_grad_(False)
    return model.to(device), used
