"""A weight set's transforms split in two: the geometry (resize, centre crop) on uint8 frames,
wherever it runs, and the normalization on the model's device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from t12k.backbones import BackboneSpec, Kind
from t12k.errors import T12kError

CPU_SLICE = 8  # frames resized at once on a CPU


@dataclass(frozen=True)
class Geometry:
    """Resize and centre crop of uint8 frames, as the weight set's transforms do them."""

    kind: Kind
    resize_size: tuple[int, ...]
    crop_size: tuple[int, ...]
    interpolation: str
    antialias: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> uint8 (N, 3, h, w); 3D clips come as (N * T, 3, H, W).

        On a CPU the frames go through in slices of CPU_SLICE: the resize makes float copies
        of its whole input (a chunk of 4 clips of 24 frames at 360p: 265 MB), and each frame is
        resized on its own anyway, so the result is the same."""
        if x.device.type == "cpu" and len(x) > CPU_SLICE:
            return torch.cat([self._resize_crop(x[i : i + CPU_SLICE]) for i in range(0, len(x), CPU_SLICE)])
        return self._resize_crop(x)

    def _resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        x = F.resize(
            x, list(self.resize_size), interpolation=InterpolationMode(self.interpolation), antialias=self.antialias
        )
        return F.center_crop(x, list(self.crop_size))


@dataclass(frozen=True)
class Normalize:
    """The transforms' remaining steps: to float in [0, 1], mean/std, (N, C, T, H, W) for 3D."""

    kind: Kind
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 2D (N, 3, h, w) or 3D (N, T, 3, h, w) -> float (N, 3, h, w) or (N, 3, T, h, w)."""
        from torchvision.transforms import functional as F

        if self.kind == Kind.IMAGE:
            return F.normalize(F.convert_image_dtype(x, torch.float), mean=list(self.mean), std=list(self.std))
        n, t, c, h, w = x.shape
        x = F.normalize(
            F.convert_image_dtype(x.reshape(n * t, c, h, w), torch.float), mean=list(self.mean), std=list(self.std)
        )
        return x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)


def split_transforms(spec: BackboneSpec) -> tuple[Geometry, Normalize]:
    """The spec's `transforms()` (torchvision's ImageClassification or VideoClassification
    presets) as a uint8 geometry part and a normalization part whose composition gives the
    same tensor, bit for bit (tests check this for every registered backbone)."""
    from torchvision.transforms._presets import ImageClassification, VideoClassification

    t = spec.transforms()
    if isinstance(t, ImageClassification):
        antialias = bool(t.antialias) if t.antialias is not None else True
    elif isinstance(t, VideoClassification):
        antialias = bool(getattr(t, "antialias", False))  # torchvision's video preset: False
    else:
        raise T12kError(
            f"backbone {spec.key}: transforms of type {type(t).__name__} are not supported; "
            "give the spec torchvision ImageClassification or VideoClassification transforms"
        )
    geometry = Geometry(spec.kind, tuple(t.resize_size), tuple(t.crop_size), t.interpolation.value, antialias)
    return geometry, Normalize(spec.kind, tuple(t.mean), tuple(t.std))


def apply_geometry(g: Geometry, raw: torch.Tensor) -> torch.Tensor:
    """Geometry of raw decoded inputs (2D (n, H, W, 3), 3D (n, T, H, W, 3)), on whatever device
    they are: 2D -> (n, 3, h, w), 3D -> (n, T, 3, h, w), uint8."""
    if g.kind == Kind.IMAGE:
        return g(raw.permute(0, 3, 1, 2)).contiguous()
    n, t = raw.shape[:2]
    y = g(raw.reshape(n * t, *raw.shape[2:]).permute(0, 3, 1, 2))
    return y.reshape(n, t, *y.shape[1:]).contiguous()


def group_geometries(geometries: list[Geometry]) -> tuple[list[Geometry], list[int]]:
    """The distinct geometries (backbones that share one share their inputs) and, for each
    geometry given, the index of its distinct one."""
    distinct: list[Geometry] = []
    which = []
    for g in geometries:
        if g not in distinct:
            distinct.append(g)
        which.append(distinct.index(g))
    return distinct, which
