"""The backbone registry without PyTorch: `Kind`, `BackboneSpec`, `REGISTRY` and the lookups.

Everything here is plain data, so the command line lists backbones, offers them as choices
and checks `--backbone` without importing torch; networks are built and loaded in
`backbones.loading`, which imports torch (a spec's `build`, `transforms` and `weights_enum`
import it when called).

Backbones from other packages: a package installed beside t12k declares its backbones in the
entry-point group ``t12k.backbones``. The entry point's object is a `BackboneSpec`, a list of
them, or a callable (no arguments) returning either; name the entry point after the spec's
key. For example, in the plugin's ``pyproject.toml``::

    [project.entry-points."t12k.backbones"]
    tinynet = "tinyplugin:SPEC"

where ``tinyplugin.SPEC = BackboneSpec("tinynet", Kind.IMAGE, "none", "tinynet", "DEFAULT",
"fc", 16, "i", "tinynet", builder="tinyplugin:build", weights_class="tinyplugin:Weights")``:
`builder` builds the network with its classifier (attribute `head_attr`, replaced by Identity),
`weights_class` is a torchvision `WeightsEnum` whose `weights_name` member gives the
preprocessing (`transforms()`) and the "default" weights (its url). The entry points are read
on the first use of `REGISTRY`, once per process. A plugin that cannot be loaded never breaks
the built-ins: `t12k backbones` reports it on one line, and asking for it by name raises
T12kError with that line. `register_backbone(spec)` adds a spec from code, to this process's
registry only: Ray actors and other processes of a run see the backbones of the entry points,
so a backbone meant for `t12k run --engine ray` is declared there. Keep the module the entry
point names light (no torch at import): `t12k --help` and `t12k backbones` read it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from t12k.errors import T12kError, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn

ENTRY_POINT_GROUP = "t12k.backbones"
WEIGHTS_SEED = 0
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TARGET = re.compile(r"[\w.]+:[\w.]+")


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
    # Size and cost as the weight set's meta reports them (num_params, _ops), for the table
    # `t12k backbones` prints without torch; None: not known (shown as -).
    num_params: int | None = None
    gflops: float | None = None

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


def check_spec(spec: Any) -> BackboneSpec:
    """`spec` if it is a usable `BackboneSpec`; otherwise T12kError saying what is wrong."""
    if not isinstance(spec, BackboneSpec):
        raise T12kError(f"a backbone must be a t12k.backbones.BackboneSpec, not {type(spec).__name__}")
    problems = []
    if not isinstance(spec.key, str) or not _KEY.fullmatch(spec.key):
        problems.append("its key must be letters, digits, '_', '.' or '-'")
    if spec.kind not in tuple(Kind):
        problems.append(f"its kind must be one of {', '.join(Kind)}")
    if not isinstance(spec.num_features, int) or spec.num_features < 1:
        problems.append("its num_features must be a positive integer")
    for name in ("store_prefix", "store_stem", "head_attr", "weights_name", "model_name"):
        if not isinstance(getattr(spec, name), str) or not _KEY.fullmatch(getattr(spec, name)):
            problems.append(f"its {name} must be a non-empty name")
    for name in ("builder", "weights_class"):
        value = getattr(spec, name)
        if value is not None and not _TARGET.fullmatch(value):
            problems.append(f"its {name} must be 'module:name'")
    if spec.builder is not None and spec.weights_class is None:
        problems.append("a network outside torchvision (builder) needs its weights_class (preprocessing)")
    if problems:
        raise T12kError(f"backbone {spec.key!r} cannot be registered: {'; '.join(problems)}")
    return spec


class Registry(Mapping[str, BackboneSpec]):
    """The backbones by key: the built-in ones, those of the installed plugins (the entry-point
    group `group`, read on first use, once) and those registered from code."""

    def __init__(self, specs: Iterable[BackboneSpec], group: str | None = ENTRY_POINT_GROUP) -> None:
        self._specs = {s.key: s for s in specs}
        self._group = group
        self._done = group is None
        self._loading = False
        self._failed: dict[str, str] = {}  # plugin entry point name -> why it cannot be used
        self._lock = threading.RLock()

    def _load(self) -> dict[str, BackboneSpec]:
        if not self._done:
            with self._lock:  # another thread waits for the plugins; this one re-enters from a plugin
                if not self._done and not self._loading:
                    self._loading = True
                    try:
                        self._load_plugins()
                    finally:
                        self._done, self._loading = True, False
        return self._specs

    def _load_plugins(self) -> None:
        from importlib.metadata import entry_points

        assert self._group is not None
        for ep in entry_points(group=self._group):
            try:
                obj = ep.load()
                if callable(obj) and not isinstance(obj, BackboneSpec):
                    obj = obj()
                for spec in [obj] if isinstance(obj, BackboneSpec) else list(obj):
                    self.register(spec)
            except Exception as exc:  # a broken plugin is reported, never breaks the others
                self._failed[ep.name] = f"backbone plugin {ep.name!r} ({ep.value}) cannot be loaded: {first_line(exc)}"

    def register(self, spec: BackboneSpec) -> BackboneSpec:
        """Add `spec`; T12kError for a key already registered with another spec."""
        check_spec(spec)
        specs = self._load()
        with self._lock:
            known = specs.get(spec.key)
            if known is not None and known != spec:
                raise T12kError(f"backbone {spec.key!r} is already registered with another spec; choose another key")
            specs[spec.key] = spec
            self._failed.pop(spec.key, None)
        return spec

    @property
    def failures(self) -> dict[str, str]:
        """Plugins that could not be loaded: entry point name -> one line saying why."""
        self._load()
        return dict(self._failed)

    def __getitem__(self, key: str) -> BackboneSpec:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._load()))

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"Registry({', '.join(self)})"


_SPECS = [
    BackboneSpec(
        "shufflenet2d",
        Kind.IMAGE,
        "ImageNet-1k",
        "shufflenet_v2_x1_0",
        "IMAGENET1K_V1",
        "fc",
        1024,
        "i",
        "shufflenet",
        num_params=2278604,
        gflops=0.145,
    ),
    BackboneSpec(
        "resnet",
        Kind.IMAGE,
        "ImageNet-1k",
        "resnet50",
        "IMAGENET1K_V1",
        "fc",
        2048,
        "i",
        "resnet",
        num_params=25557032,
        gflops=4.089,
    ),
    BackboneSpec(
        "swin2d",
        Kind.IMAGE,
        "ImageNet-1k",
        "swin_t",
        "IMAGENET1K_V1",
        "head",
        768,
        "i",
        "swin",
        num_params=28288354,
        gflops=4.491,
    ),
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
        num_params=1914180,
        gflops=0.187,
    ),
    BackboneSpec(
        "r2plus1d",
        Kind.VIDEO,
        "Kinetics-400",
        "r2plus1d_18",
        "KINETICS400_V1",
        "fc",
        512,
        "k",
        "r2plus1d",
        num_params=31505325,
        gflops=40.519,
    ),
    BackboneSpec(
        "swin3d",
        Kind.VIDEO,
        "ImageNet-1k + Kinetics-400",
        "swin3d_t",
        "KINETICS400_V1",
        "head",
        768,
        "ik",
        "swin",
        num_params=28158070,
        gflops=43.882,
    ),
]
BUILTIN = tuple(s.key for s in _SPECS)
REGISTRY = Registry(_SPECS)


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Make `spec` a backbone of this process (`--backbone`, the API, the tables); returns it.

    Registering a key again is a no-op for the same spec and a T12kError for another one.
    """
    return REGISTRY.register(spec)


def _import(target: str) -> Any:
    """`package.module:name` -> that object."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def get_spec(key: str) -> BackboneSpec:
    try:
        return REGISTRY[key]
    except KeyError:
        failed = REGISTRY.failures.get(key)
        if failed:
            raise T12kError(failed) from None
        raise T12kError(f"unknown backbone {key!r}; choose from {', '.join(REGISTRY)}") from None


def parse_backbones(text: str) -> list[BackboneSpec]:
    """`shufflenet2d,resnet` or `all` -> specs (unknown names raise T12kError)."""
    keys = list(REGISTRY) if text.strip() == "all" else [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise T12kError("no backbone given; pass --backbone with one of " + ", ".join(REGISTRY))
    return [get_spec(k) for k in dict.fromkeys(keys)]


def registry_table(details: bool = False) -> str:
    """The registered backbones as `t12k backbones` prints them; with `details`, each one's
    preprocessing too (which imports torch)."""
    lines = [
        f"{'key':<13} {'kind':<4} {'pretraining':<27} {'features':>8} {'params':>8} {'GFLOPs':>7}  store (Shot-24)"
    ]
    for s in REGISTRY.values():
        params = f"{s.num_params / 1e6:>7.1f}M" if s.num_params is not None else f"{'-':>8}"
        flops = f"{s.gflops:>7.2f}" if s.gflops is not None else f"{'-':>7}"
        lines.append(
            f"{s.key:<13} {s.kind:<4} {s.pretraining:<27} {s.num_features:>8} {params} {flops}  {s.store_name()}"
        )
    lines.append(
        "params and GFLOPs as each weight set's meta reports them (with classifier; 3D: per clip at the weights' "
        "own clip size; shufflenet3d's counted by t12k as torchvision counts, 16x112x112)"
    )
    lines += REGISTRY.failures.values()
    for s in REGISTRY.values() if details else ():
        lines += ["", f"{s.key}:"] + [f"  {k:<14} {v}" for k, v in s.preprocessing().items()]
    return "\n".join(lines)
