"""A weight set's transforms split in two: the geometry (resize, centre crop) on uint8 frames,
wherever it runs, and the normalization on the model's device.

Both parts run torchvision's tensor arithmetic step for step in plain PyTorch (the same
`interpolate` call, rounding and division), so their composition gives the preset's tensor bit
for bit (tested) without importing torchvision: a decode worker, or a run whose network
OpenVINO already holds, does not pay torchvision's 1.3 s import (it pulls in torch._dynamo).
"""

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
        x = resize(x, self.resize_size, self.interpolation, self.antialias)
        h, w = self.crop_size if len(self.crop_size) == 2 else self.crop_size * 2
        top, left = int(round((x.shape[-2] - h) / 2.0)), int(round((x.shape[-1] - w) / 2.0))
        return x[..., top : top + h, left : left + w]


def clip_shape(geometry: Geometry, frames: int) -> tuple[int, ...]:
    """A clip's model input after `geometry`: 2D (3, h, w), 3D (frames, 3, h, w)."""
    h, w = geometry.crop_size if len(geometry.crop_size) == 2 else geometry.crop_size * 2
    return (3, h, w) if geometry.kind == Kind.IMAGE else (frames, 3, h, w)


def resized_size(height: int, width: int, size: tuple[int, ...]) -> tuple[int, int]:
    """(h, w) after torchvision's `resize(size)`: one number is the short side (the long one
    scaled and truncated), two are (h, w)."""
    if len(size) == 2:
        return int(size[0]), int(size[1])
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size[0] * long / short)
    return (new_long, int(size[0])) if width <= height else (int(size[0]), new_long)


def resize(x: torch.Tensor, size: tuple[int, ...], interpolation: str, antialias: bool) -> torch.Tensor:
    """torchvision's `functional.resize` of uint8 (N, C, H, W) tensors: float32, `interpolate`,
    round (bicubic clamped first), back to uint8."""
    out = resized_size(x.shape[-2], x.shape[-1], size)
    if tuple(x.shape[-2:]) == out:
        return x
    smooth = interpolation in ("bilinear", "bicubic")
    y = torch.nn.functional.interpolate(
        x.to(torch.float32),
        size=list(out),
        mode=interpolation,
        align_corners=False if smooth else None,
        antialias=antialias and smooth,
    )
    if interpolation == "bicubic":
        y = y.clamp(min=0, max=255)
    return torch.round(y).to(torch.uint8)


@dataclass(frozen=True)
class Normalize:
    """The transforms' remaining steps: to float in [0, 1], mean/std, (N, C, T, H, W) for 3D."""

    kind: Kind
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 2D (N, 3, h, w) or 3D (N, T, 3, h, w) -> float (N, 3, h, w) or (N, 3, T, h, w)."""
        if self.kind == Kind.IMAGE:
            return self._scale(x)
        n, t, c, h, w = x.shape
        return self._scale(x.reshape(n * t, c, h, w)).view(n, t, c, h, w).permute(0, 2, 1, 3, 4)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's `convert_image_dtype` to float then `normalize`, step for step."""
        mean = torch.as_tensor(self.mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        return (x.to(torch.float32) / 255.0).sub_(mean).div_(std)


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
    if min(t.resize_size) < max(t.crop_size):  # torchvision would pad; no preset does
        raise T12kError(f"backbone {spec.key}: its crop {t.crop_size} is larger than its resize {t.resize_size}")
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
