"""3D ShuffleNetV2 1.0x of Efficient-3DCNNs (Köpüklü et al., "Resource Efficient 3D
Convolutional Neural Networks", ICCVW 2019), written here so that its Kinetics checkpoint
loads as it is.

Parameter names are those of github.com/okankop/Efficient-3DCNNs `models/shufflenetv2.py`
(`conv1.0`, `features.{i}.banch1|banch2.{j}` - "banch" sic -, `conv_last.0`,
`classifier.1`), so `kinetics_shufflenetv2_1.0x_RGB_16_best.pth` (a dict whose
`state_dict` keys carry DataParallel's `module.` prefix) loads after dropping the prefix.
Architecture as there: conv 3x3x3 stride (1,2,2) to 24 channels, max-pool 3x3x3 stride 2 (time
too), stages of 4, 8, 4 inverted-residual blocks (116, 232, 464 channels; the first block of
a stage has stride 2 in time and space, the others split the channels in half and transform
one half) with a 2-group channel shuffle after each, a 1x1x1 conv to 1024, global average
pooling (any T, H, W), dropout 0.2 and a linear classifier (600 classes).

Pretraining: Kinetics-600. The repository's Kinetics annotations are
`annotation_Kinetics/kinetics-600_{train,val}.csv`, `run-kinetics.sh` passes
`--n_classes 600`, `ShuffleNetV2(num_classes=600)` is the model default and
`calculate_FLOP.py` builds every model with 600 classes; the paper reports Kinetics-600.

Input convention, from the code that trained the checkpoint (`main.py` with `opts.py`
defaults; `results/opts.json`, a Kinetics run of the same code, records the same values):

- channel order BGR: `datasets/kinetics.py` `video_loader` reads frames with
  `cv2.VideoCapture` and wraps them with `Image.fromarray(frame)` without `cvtColor`, so the
  "RGB" PIL images hold BGR bytes (the `pil_loader` there is never called for Kinetics; the
  maintainer confirms BGR for the Jester models in issue #25). The network therefore takes
  BGR: `ShuffleNet3D` reverses the channels of its RGB input first (`bgr=True`), so its input
  is RGB like every torchvision model's and the preprocessing below stays torchvision's;
- value range 0..255: `ToTensor(opt.norm_value)` with `--norm_value` default 1
  (`opts.py`: "If 1, range of inputs is [0-255]");
- mean: ActivityNet's (114.7748, 107.7354, 99.4750) in the tensor's channel order, i.e.
  B, G, R (`--mean_dataset` default `activitynet`, `mean.get_mean(1, 'activitynet')`);
  no std division (`--std_norm` default off, so `main.py` uses `Normalize(opt.mean, [1, 1, 1])`);
- spatial: validation/test use `Scale(112)` (short side to 112, PIL bilinear, which
  antialiases when shrinking) then `CenterCrop(112)`; clips of 16 frames in training.

Hence `transforms()`: torchvision's `VideoClassification` preset (same class and
attributes) with resize 112 (short side, bilinear, antialiased), centre crop 112, and in
0..1 units on RGB input mean = (99.4750, 107.7354, 114.7748) / 255, std = 1/255, which
gives exactly RGB - mean in 0..255; the network's channel reversal then feeds B - 114.7748,
G - 107.7354, R - 99.4750 as in training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nnf
from torch import nn
from torchvision.models import Weights, WeightsEnum
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms._presets import VideoClassification

STAGE_REPEATS = (4, 8, 4)
STAGE_CHANNELS = {
    0.25: (24, 32, 64, 128, 1024),
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 224, 488, 976, 2048),
}
ACTIVITYNET_MEAN_BGR = (114.7748, 107.7354, 99.4750)  # Efficient-3DCNNs mean.py, 0..255, tensor order (B, G, R)
CHECKPOINT = "kinetics_shufflenetv2_1.0x_RGB_16_best.pth"
PRETRAINED_URL = "https://drive.google.com/open?id=1eggpkmy_zjb62Xra6kQviLa67vzP_FR8"  # the README's link


def _pw(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
    """Pointwise conv + BN (+ ReLU)."""
    return [nn.Conv3d(cin, cout, 1, bias=False), nn.BatchNorm3d(cout)] + ([nn.ReLU(inplace=True)] if relu else [])


def _dw(c: int, stride: int) -> list[nn.Module]:
    """Depthwise 3x3x3 conv + BN, no ReLU."""
    return [nn.Conv3d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm3d(c)]


class InvertedResidual3d(nn.Module):
    """ShuffleNetV2 unit. Stride 1: the second half of the channels goes through `banch2`,
    the first half passes. Stride 2: `banch1` and `banch2` both see the whole input."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride == 2:
            self.banch1 = nn.Sequential(*_dw(cin, 2), *_pw(cin, half))
        self.banch2 = nn.Sequential(*_pw(cin if stride == 2 else half, half), *_dw(half, stride), *_pw(half, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, work = x.chunk(2, dim=1)
            out = torch.cat((keep, self.banch2(work)), 1)
        else:
            out = torch.cat((self.banch1(x), self.banch2(x)), 1)
        n, c, t, h, w = out.shape  # shuffle: interleave the two halves' channels
        return out.view(n, 2, c // 2, t, h, w).transpose(1, 2).reshape(n, c, t, h, w)


class ShuffleNet3D(nn.Module):
    """(B, 3, T, H, W) RGB, normalized by `transforms()` -> (B, num_classes) logits, or
    the 1024 pooled features once `classifier` is replaced by Identity."""

    def __init__(self, num_classes: int = 600, width_mult: float = 1.0, bgr: bool = True):
        super().__init__()
        stem, *stages, last = STAGE_CHANNELS[width_mult]
        self.bgr = bgr  # the weights were trained on BGR frames (OpenCV), see the module docstring
        self.conv1 = nn.Sequential(
            nn.Conv3d(3, stem, 3, (1, 2, 2), 1, bias=False), nn.BatchNorm3d(stem), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        blocks, cin = [], stem
        for repeats, cout in zip(STAGE_REPEATS, stages):
            for i in range(repeats):
                blocks.append(InvertedResidual3d(cin, cout, 2 if i == 0 else 1))
                cin = cout
        self.features = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(*_pw(cin, last))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        x = self.conv_last(self.features(self.maxpool(self.conv1(x))))
        return self.classifier(nnf.adaptive_avg_pool3d(x, 1).flatten(1))


class AntialiasedVideoClassification(VideoClassification):
    """torchvision's video preset (same attributes, plus `antialias`) whose resize
    antialiases as PIL's does; torchvision's own hard-codes antialias=False."""

    def __init__(self, *, antialias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.antialias = antialias

    def forward(self, vid: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, 3, H, W) or (T, 3, H, W) -> float (B, 3, T, h, w) or (3, T, h, w)."""
        single = vid.ndim < 5
        if single:
            vid = vid.unsqueeze(0)
        n, t, c, h, w = vid.shape
        x = F.resize(
            vid.reshape(-1, c, h, w), self.resize_size, interpolation=self.interpolation, antialias=self.antialias
        )
        x = F.normalize(F.convert_image_dtype(F.center_crop(x, self.crop_size), torch.float), self.mean, self.std)
        x = x.view(n, t, c, *self.crop_size).permute(0, 2, 1, 3, 4)
        return x.squeeze(0) if single else x

    def __repr__(self) -> str:
        return super().__repr__()[:-2] + f"\n    antialias={self.antialias}\n)"


def shufflenet3d_transforms() -> AntialiasedVideoClassification:
    """Efficient-3DCNNs' test preprocessing as a torchvision video preset (module docstring)."""
    mean_rgb = ACTIVITYNET_MEAN_BGR[::-1]
    return AntialiasedVideoClassification(
        crop_size=(112, 112),
        resize_size=(112,),
        mean=tuple(m / 255 for m in mean_rgb),
        std=(1 / 255,) * 3,
        interpolation=InterpolationMode.BILINEAR,
    )


class ShuffleNet3D_Weights(WeightsEnum):
    """Weight sets in torchvision's form, so that the registry treats this network like
    torchvision's own. The Google Drive folder cannot be downloaded here: pass the file."""

    KINETICS600_V1 = Weights(
        url=PRETRAINED_URL,
        transforms=shufflenet3d_transforms,
        meta={
            "num_params": 1914180,  # with the 600-class classifier (1299180 without)
            "_ops": 0.187,  # GMACs (convs + linear) per 16x112x112 clip, as torchvision counts `_ops`
            "min_size": (1, 1),
            "categories": None,
            "recipe": "https://github.com/okankop/Efficient-3DCNNs",
            "_file": CHECKPOINT,
            "_docs": "Efficient-3DCNNs ShuffleNetV2 1.0x trained on Kinetics-600 (16-frame 112x112 clips).",
        },
    )


def shufflenet3d_v2_x1_0(num_classes: int = 600) -> ShuffleNet3D:
    """The 1.0x network with Efficient-3DCNNs' Kinetics-600 classifier shape."""
    return ShuffleNet3D(num_classes=num_classes, width_mult=1.0)


__all__ = ["ShuffleNet3D", "ShuffleNet3D_Weights", "shufflenet3d_v2_x1_0", "shufflenet3d_transforms"]
