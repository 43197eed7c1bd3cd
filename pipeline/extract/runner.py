"""One frozen backbone ready to run: weights, split transforms and device-side settings."""

from __future__ import annotations

import numpy as np
import torch

from t12k.backbones import BackboneSpec, Kind, load_backbone
from t12k.backbones.device import PRECISIONS, check_precision, device_math
from t12k.pipeline.extract.device_io import is_cuda
from t12k.pipeline.extract.transforms import apply_geometry, split_transforms


class BackboneRunner:
    """One frozen backbone: its weights, its transforms split in geometry + normalization,
    and the device-side settings (precision, channels-last)."""

    def __init__(
        self,
        spec: BackboneSpec,
        weights: str,
        device: str | torch.device,
        batch_size: int = 32,
        precision: str = "fp32",
        channels_last: bool | None = None,
    ):
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.precision = check_precision(precision)
        self.model, self.weights_used = load_backbone(spec.key, weights, device)
        self.geometry, self.normalize = split_transforms(spec)
        if channels_last is None:  # convolutional nets on a GPU
            channels_last = is_cuda(device) and not spec.model_name.startswith("swin")
        self.channels_last = channels_last
        if channels_last:
            fmt = torch.channels_last if spec.kind == Kind.IMAGE else torch.channels_last_3d
            self.model = self.model.to(memory_format=fmt)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features float32 (N, F), left on the device, of geometry-transformed uint8 inputs
        (2D (N, 3, h, w), 3D (N, T, 3, h, w)). On a GPU this only queues the work."""
        x = self.normalize(x.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
        dtype = PRECISIONS[self.precision]
        with torch.autocast(device_type=torch.device(self.device).type, dtype=dtype, enabled=dtype is not None):
            y = self.model(x)
        return y.float()

    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Features float32 (len(inputs), F) of raw 2D frames (H, W, 3) or 3D clips (T, H, W, 3)."""
        out = []
        for b in range(0, len(inputs), self.batch_size):
            x = apply_geometry(self.geometry, torch.from_numpy(np.stack(inputs[b : b + self.batch_size])))
            with device_math(self.device, self.precision):
                out.append(self.forward(x).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.spec.num_features), np.float32)
