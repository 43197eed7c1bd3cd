"""Shot-duration statistics and the histogram of the paper's Figure 8."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass
class ShotReport:
    trailers: int
    shots: int
    mode: int  # most frequent duration, frames
    mean: float
    median: float

    def text(self) -> str:
        return (
            f"{self.shots} shots in {self.trailers} trailers: duration mode {self.mode} frames, "
            f"mean {self.mean:.1f} frames, median {self.median:.0f} frames"
        )


def shot_durations(shots: np.ndarray) -> np.ndarray:
    """Frames per shot of inclusive [start, end] shots."""
    shots = np.asarray(shots).reshape(-1, 2)
    return (shots[:, 1] - shots[:, 0] + 1).astype(np.int64)


def duration_report(
    durations: np.ndarray, trailers: int, png: str | os.PathLike | None = None, max_frames: int = 200, title: str = ""
) -> ShotReport:
    """Statistics of shot durations and, with `png`, their histogram (1-frame bins up to
    `max_frames`; longer shots are counted in the last bin)."""
    d = np.asarray(durations, np.int64)
    if d.size == 0:
        raise ValueError("no shots")
    counts = np.bincount(d)
    report = ShotReport(trailers, int(d.size), int(np.argmax(counts)), float(d.mean()), float(np.median(d)))
    if png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
        ax.hist(np.minimum(d, max_frames), bins=(np.arange(1, max_frames + 2) - 0.5).tolist(), color="#d0567a")
        ax.axvline(report.mode, color="k", lw=0.8, ls="--", label=f"mode {report.mode}")
        ax.axvline(report.mean, color="k", lw=0.8, ls=":", label=f"mean {report.mean:.1f}")
        ax.set_xlabel(f"frames per shot (24 fps; last bin: {max_frames}+)")
        ax.set_ylabel("shots")
        ax.set_title(title or f"Shot durations: {report.shots} shots, {trailers} trailers (TransNet V2)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(png)
        plt.close(fig)
    return report
