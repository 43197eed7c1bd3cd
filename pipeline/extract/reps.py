"""2D representative frames picked on the device from the frames shipped for 3D backbones."""

from __future__ import annotations

import numpy as np
import torch

from t12k.shots import ClipPlan
from t12k.shots.clips import HIST_BINS


def covers_every_frame(plan: ClipPlan) -> bool:
    """Whether each clip's 3D frames are all its real frames (fps = video fps, e.g. Shot-24 at
    24 fps), so its 2D representative can be picked from the frames shipped for 3D."""
    spans = [np.arange(a, b + 1) for a, b in plan.spans]
    return np.array_equal(plan.frames[plan.frames >= 0], np.concatenate(spans) if spans else [])


def device_representatives(frames: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Index t of each clip's representative frame, computed where `frames` are (a GPU).

    frames uint8 (n, T, H, W, 3), real bool (n, T) (False: black padding). The same
    histograms and the same exact integer argmin as the workers' `color_counts` and
    `representative_from_counts`, so both paths pick the very same frame."""
    n, t = frames.shape[:2]
    bins = HIST_BINS
    shift = 8 - int(np.log2(bins))
    dev = frames.device
    offset = (
        torch.arange(t, device=dev)[:, None, None, None] * (3 * bins) + torch.arange(3, device=dev) * bins
    )  # (T, 1, 1, 3)
    counts = torch.stack(
        [  # one clip at a time bounds the int64 temporaries
            torch.bincount(((frames[i] >> shift).long() + offset).reshape(-1), minlength=t * 3 * bins).view(t, 3 * bins)
            for i in range(n)
        ]
    )
    counts = counts * real[..., None]
    k = real.sum(1).view(n, 1, 1)
    d = k * counts - counts.sum(1, keepdim=True)
    dist = (d * d).sum(2).masked_fill(~real, torch.iinfo(torch.int64).max)
    return dist.argmin(1)
