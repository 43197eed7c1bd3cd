"""The collection's distributions as PNG figures (matplotlib's Agg canvas, no display):
trailer durations against the paper's 60-210 s rule, shot lengths (the paper's Figure 8,
drawn by `t12k shots --report`'s own code) and clips per trailer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from t12k.pipeline.fetch.quality import QUALITY_SECONDS


def _hist(values: np.ndarray, path: Path, xlabel: str, title: str, lines: Sequence[float] = ()) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    bins = min(60, max(5, len(np.unique(values))))
    ax.hist(values, bins=bins, color="#3b6fd8")
    for x in lines:
        ax.axvline(x, color="k", lw=0.8, ls="--")
    ax.set(xlabel=xlabel, ylabel="trailers", title=title)
    fig.tight_layout()
    fig.savefig(path)
    return path


def duration_png(seconds: np.ndarray, path: Path) -> Path:
    lo, hi = QUALITY_SECONDS
    title = f"Trailer durations ({len(seconds)} trailers; dashed: the paper's {lo:g}-{hi:g} s rule)"
    return _hist(seconds, path, "seconds", title, (lo, hi))


def shots_png(lengths: np.ndarray, trailers: int, path: Path) -> Path:
    from t12k.shots.report import duration_report

    duration_report(lengths, trailers, path)
    return path


def clips_png(clips: np.ndarray, path: Path) -> Path:
    return _hist(clips, path, "clips per trailer", f"Clips per trailer ({len(clips)} trailers)")
