"""The summaries of an experiment, as the reference's ``experiment.py`` writes them and as the
paper presents them: per-run and mean±std CSVs, the Table 6 markdown, and the figures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from t12k import GENRES
from t12k.divita.metrics import METRIC_NAMES
from t12k.divita.runfiles import write_csv

if TYPE_CHECKING:
    from t12k.divita.experiment import RunSpec


@dataclass
class ConfigResult:
    spec: RunSpec
    run_dirs: dict[int, Path]
    val: dict[int, dict[str, float]]  # split -> metric/genre -> value x100 (2 decimals)
    test: dict[int, dict[str, float]]
    epochs: dict[int, int]
    imagenet: bool = False
    kinetics: bool = False
    params_m: float | None = None
    gflops: float | None = None

    def subset(self, subset: str) -> dict[int, dict[str, float]]:
        """The per-split values of `subset` ('val' or 'test')."""
        return self.val if subset == "val" else self.test

    def mean_std(self, subset: str, key: str) -> tuple[float, float]:
        return mean_std([r[key] for r in self.subset(subset).values()])


def mean_std(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard deviation (ddof=1; 0 for one value, NaN for none)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    if a.size == 1:
        return float(a[0]), 0.0
    return float(a.mean()), float(a.std(ddof=1))


def format_mean_std(values: ArrayLike) -> str:
    """``mean±std`` with 2 decimals, std with ddof=1 (0 for one value), as the reference."""
    mean, std = mean_std(values)
    return f"{mean:.2f}±{std:.2f}"


def write_summaries(results: list[ConfigResult], out: Path) -> dict[str, Path]:
    """val_run.csv, tst_run.csv, val.csv, tst.csv, table.md and figures/ in `out`; their paths by name."""
    from t12k.divita.figures import write_figures

    files: dict[str, Path] = {}
    for subset, stem in (("val", "val"), ("test", "tst")):
        files[f"{stem}_run"], files[stem] = write_subset_csvs(
            results, subset, out / f"{stem}_run.csv", out / f"{stem}.csv"
        )
    files["table"] = out / "table.md"
    files["table"].write_text(markdown_table(results), encoding="utf-8")
    files.update(write_figures(results, out / "figures"))
    return files


def write_subset_csvs(results: list[ConfigResult], subset: str, per_run: Path, summary: Path) -> tuple[Path, Path]:
    """One row per configuration and split (`per_run`), and per configuration the mean±std over
    the splits of every metric and genre (`summary`), computed from the 2-decimal values."""
    keys = list(METRIC_NAMES) + list(GENRES)
    rows = [
        [r.spec.name, split, r.epochs[split], *(f"{m[k]:.2f}" for k in keys)]
        for r in results
        for split, m in r.subset(subset).items()
    ]
    write_csv(per_run, ["run", "split", "epoch", *keys], rows)
    rows = [
        [r.spec.name, len(r.test), *(format_mean_std([m[k] for m in r.subset(subset).values()]) for k in keys)]
        for r in results
    ]
    write_csv(summary, ["run", "splits", *keys], rows)
    return per_run, summary


def top_config(results: list[ConfigResult]) -> ConfigResult | None:
    """The top-μAP configuration (the paper's percentages are relative to it, Swin-3D)."""
    known = [r for r in results if r.params_m is not None or r.gflops is not None]
    return max(known, key=lambda r: r.mean_std("test", "muAP")[0], default=None)


def _pct(value: float | None, total: float | None) -> str:
    return f"{100 * value / total:.2f}" if value is not None and total else ""


def _table_row(r: ConfigResult, ref: ConfigResult | None) -> str:
    params = f"{r.params_m:.1f}" if r.params_m is not None else ""
    flops = f"{r.gflops:.1f}" if r.gflops is not None else ""
    metrics = " | ".join(format_mean_std([m[k] for m in r.test.values()]) for k in METRIC_NAMES)
    return (
        f"| {r.spec.name} | {'✓' if r.imagenet else ''} | {'✓' if r.kinetics else ''} | {metrics} | "
        f"{params} | {_pct(r.params_m, ref.params_m if ref else None)} | {flops} | "
        f"{_pct(r.gflops, ref.gflops if ref else None)} |"
    )


def markdown_table(results: list[ConfigResult]) -> str:
    """The paper's Table 6 layout: backbone, pretraining, test metrics (mean±std), parameters
    and GFLOPs with percentages of the top-μAP configuration's."""
    ref = top_config(results)
    head = (
        "| Backbone | ImageNet | Kinetics | μAP | mAP | wAP | sAP | Params (M) | % | FLOPs (G) | % |\n"
        "| :--- | :-: | :-: | :-: | :-: | :-: | :-: | --: | --: | --: | --: |\n"
    )
    lines, group = [], object()
    for r in results:
        if r.spec.group != group:
            group = r.spec.group
            if group:
                lines.append(f"| *{group}* |" + " |" * 10)
        lines.append(_table_row(r, ref))
    note = ""
    if results:
        note = (
            f"\nTest metrics x100, mean±std over splits {', '.join(str(s) for s in sorted(results[0].test))}. "
            "Params and FLOPs: the frozen backbones (torchvision metadata; FLOPs per 30-clip snippet)"
            + (f"; % of {ref.spec.name}, the top μAP." if ref else ".")
            + "\n"
        )
    return head + "\n".join(lines) + "\n" + note
