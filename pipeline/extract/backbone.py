"""One frozen backbone ready to run: weights, split transforms and device-side settings.

On a CPU the network runs in one of two runtimes, float32 both: PyTorch (convolutional nets in
channels-last memory format, which oneDNN runs several times faster than PyTorch's default
layout for ShuffleNet's depthwise and grouped convolutions) or OpenVINO, a runtime made for
CPUs (optional: `pip install openvino`), which fuses the whole graph and runs the Swin
transformers and ResNet about twice as fast again (`bench/bench_extract_cpu.py`). The OpenVINO
form of a network is converted once and kept in a cache folder, keyed by its weights
(`openvino.py`), so a later run only loads it: without building the PyTorch network or
importing torchvision.

Batches are cut on a CPU into micro-batches sized from the network's input (`micro_batch`):
a CPU gains nothing from a large batch, and a 3D network's activations grow with it (32 clips
of R(2+1)D need gigabytes).
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import torch

from t12k.backbones import BackboneSpec, Kind, load_backbone
from t12k.device import PRECISIONS, check_precision, device_math
from t12k.errors import T12kError
from t12k.pipeline.extract.config import RUNTIMES
from t12k.pipeline.extract.openvino import OpenVINOForms, OpenVINONet
from t12k.pipeline.extract.transforms import apply_geometry, clip_shape, split_transforms

# Clips per forward pass on a CPU: at most CPU_MICRO_CLIPS, and no more than CPU_MICRO_BYTES of
# float32 input (R(2+1)D and ShuffleNet 3D: 4 clips of 24x112x112, Swin 3D: 1 of 24x224x224).
# A CPU runs these as fast as larger batches (`bench/bench_extract_cpu.py`), and activations
# grow with the batch: Swin 2D in OpenVINO takes 650 MB more at 32 clips than at 8.
CPU_MICRO_CLIPS = 8
CPU_MICRO_BYTES = 16 << 20


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(runtime: str, device: str | torch.device, precision: str) -> str:
    """`torch` or `openvino`. `auto`: OpenVINO for fp32 on a CPU when it is installed."""
    if runtime not in RUNTIMES:
        raise T12kError(f"--runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    cpu = torch.device(device).type == "cpu"
    if runtime == "auto":
        return "openvino" if cpu and precision == "fp32" and openvino_installed() else "torch"
    if runtime == "openvino":
        if not cpu:
            raise T12kError(f"--runtime openvino runs on the CPU, not {device}; use --device cpu or --runtime torch")
        if precision != "fp32":
            raise T12kError(f"--runtime openvino computes in fp32, not {precision}; use --precision fp32")
        if not openvino_installed():
            raise T12kError("--runtime openvino needs the openvino package: pip install openvino; or --runtime torch")
    return runtime


def micro_batch(clip_shape: tuple[int, ...], batch_size: int) -> int:
    """Clips per forward pass on a CPU for clips of `clip_shape` (see CPU_MICRO_CLIPS)."""
    per_clip = 4 * int(np.prod(clip_shape))
    return max(1, min(batch_size, CPU_MICRO_CLIPS, CPU_MICRO_BYTES // per_clip))


class BackboneRunner:
    """One frozen backbone: its weights, its transforms split in geometry + normalization,
    and the device-side settings (precision, channels-last, runtime, micro-batches)."""

    def __init__(
        self,
        spec: BackboneSpec,
        weights: str,
        device: str | torch.device,
        batch_size: int = 32,
        precision: str = "fp32",
        channels_last: bool | None = None,
        runtime: str = "auto",
    ):
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.precision = check_precision(precision)
        self.runtime = resolve_runtime(runtime, device, self.precision)
        self.weights = weights
        self.openvino = OpenVINOForms(spec, weights) if self.runtime == "openvino" else None
        known = self.openvino.known() if self.openvino is not None else None
        self.model: torch.nn.Module | None = None
        if known is not None:  # converted before: neither the PyTorch network nor torchvision
            self.weights_used, self.geometry, self.normalize = known
        else:
            self.model, self.weights_used = load_backbone(spec.key, weights, device)
            self.geometry, self.normalize = split_transforms(spec)
        if channels_last is None:  # convolutional nets (oneDNN on a CPU, cuDNN on a GPU)
            channels_last = self.runtime == "torch" and not spec.model_name.startswith("swin")
        self.channels_last = channels_last
        if channels_last and self.model is not None:
            fmt = torch.channels_last if spec.kind == Kind.IMAGE else torch.channels_last_3d
            self.model = self.model.to(memory_format=fmt)
        self.cpu = torch.device(device).type == "cpu"
        self.nets: dict[tuple[int, ...], OpenVINONet] = {}  # per clip shape, made by `prepare` or the first batch
        self._making = threading.Lock()

    def prepare(self, frames: int) -> None:
        """Make the network for clips of `frames` frames ready before the first batch comes
        (OpenVINO: find or convert it, read and compile it); nothing for PyTorch."""
        if self.openvino is not None:
            shape = clip_shape(self.geometry, frames)
            self._net(shape if self.spec.kind == Kind.IMAGE else (shape[1], shape[0], *shape[2:]))

    def _net(self, shape: tuple[int, ...]) -> OpenVINONet:
        """The OpenVINO network for normalized inputs of `shape` (one per shape, made once)."""
        assert self.openvino is not None
        with self._making:
            if shape not in self.nets:
                facts = (self.weights_used, self.geometry, self.normalize)
                self.nets[shape] = self.openvino.net(shape, self._network, facts)
                self.model = None  # its weights live on in OpenVINO's form (reloaded if a new shape comes)
            return self.nets[shape]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """The network on normalized float inputs."""
        if self.openvino is not None:
            return self._net(tuple(x.shape[1:]))(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
        dtype = PRECISIONS[self.precision]
        assert self.model is not None  # let go only for OpenVINO, which returned above
        with torch.autocast(device_type=torch.device(self.device).type, dtype=dtype, enabled=dtype is not None):
            return self.model(x).float()

    def _network(self) -> torch.nn.Module:
        """The PyTorch network, built again if it was let go."""
        return self.model if self.model is not None else load_backbone(self.spec.key, self.weights)[0]

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features float32 (N, F), left on the device, of geometry-transformed uint8 inputs
        (2D (N, 3, h, w), 3D (N, T, 3, h, w)). On a GPU this only queues the work; on a CPU
        the batch runs in micro-batches, each normalized only when its turn comes."""
        x = x.to(self.device, non_blocking=True)
        if not self.cpu or len(x) == 0:
            return self._run(self.normalize(x))
        step = micro_batch(tuple(x.shape[1:]), len(x))
        return torch.cat([self._run(self.normalize(x[i : i + step])) for i in range(0, len(x), step)])

    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Features float32 (len(inputs), F) of raw 2D frames (H, W, 3) or 3D clips (T, H, W, 3)."""
        out = []
        for b in range(0, len(inputs), self.batch_size):
            x = apply_geometry(self.geometry, torch.from_numpy(np.stack(inputs[b : b + self.batch_size])))
            with device_math(self.device, self.precision):
                out.append(self.forward(x).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.spec.num_features), np.float32)
