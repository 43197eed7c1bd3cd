"""The frozen backbones of Trailers12k: a registry in the manner of torchvision's weights API.

A `BackboneSpec` carries what extraction needs: kind (2D frame or 3D clip), pretraining,
the builder and weight set (whose own `transforms()` are the preprocessing: resize, crop,
interpolation, mean/std), feature size and the published store name. Five networks are
torchvision's; `shufflenet3d` (Efficient-3DCNNs' 3D ShuffleNetV2) is written here with a
weight set in torchvision's form (`backbones/shufflenet3d.py`). Other packages add backbones
through the entry-point group ``t12k.backbones``, code through `register_backbone`
(`backbones/spec.py` says how).
`load_backbone(key, weights)` returns the network with its classifier removed, frozen, and
a description of the weights actually used.

Weights: ``"default"`` = the spec's pretrained set, through torchvision's own download
(cached in $TORCH_HOME), or, for weights that cannot be downloaded here (`weights_source`),
an error saying where to get the file; a path = a local state dict or checkpoint (e.g. the
same .pth, downloaded elsewhere); ``"none"`` = random initialisation with a fixed seed,
identical in every process (for tests and offline demos).

The registry (`backbones/spec.py`) imports no torch, so the command line starts without it;
`load_backbone` and `weights_identity` (`backbones/loading.py`) import it when first used.
"""

from __future__ import annotations

from typing import Any

from t12k.backbones.spec import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    REGISTRY,
    WEIGHTS_SEED,
    BackboneSpec,
    Kind,
    Registry,
    get_spec,
    parse_backbones,
    register_backbone,
    registry_table,
)

_LOADING = ("load_backbone", "weights_identity", "_clean_state_dict", "_he_init_convs")


def __getattr__(name: str) -> Any:
    """The names that need torch, imported on first use (`backbones.loading`)."""
    if name in _LOADING:
        from t12k.backbones import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Kind",
    "BackboneSpec",
    "REGISTRY",
    "Registry",
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "WEIGHTS_SEED",
    "get_spec",
    "parse_backbones",
    "register_backbone",
    "load_backbone",
    "weights_identity",
    "registry_table",
]
