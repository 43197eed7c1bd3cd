"""The figures of an experiment: training curves and precision-recall curves per configuration,
and the paper's Figure 10 (test μAP against backbone parameters and GFLOPs).

matplotlib is imported when a figure is drawn (the Agg canvas: no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from t12k.divita.runfiles import read_history, read_predictions

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from t12k.divita.report import ConfigResult

_SPLIT_COLOURS = ("tab:blue", "tab:orange", "tab:green")
_IMAGENET, _KINETICS = "#3b6fd8", "#e7609b"


def write_figures(results: list[ConfigResult], folder: Path) -> dict[str, Path]:
    """curves_{run}.png and pr_{run}.png for every configuration, and tradeoff.png, in `folder`."""
    folder.mkdir(exist_ok=True)
    files: dict[str, Path] = {}
    for r in results:
        files[f"curves_{r.spec.slug}"] = plot_curves(r, folder / f"curves_{r.spec.slug}.png")
        files[f"pr_{r.spec.slug}"] = plot_pr(r, folder / f"pr_{r.spec.slug}.png")
    files["tradeoff"] = plot_tradeoff(results, folder / "tradeoff.png")
    return files


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def plot_curves(r: ConfigResult, path: Path) -> Path:
    """Training and validation loss, and training and validation μAP, per epoch for every split."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_map) = _figure(10, 3.6, 2)
    for split, run_dir in sorted(r.run_dirs.items()):
        h = read_history(run_dir / "history.csv")
        if not h:
            continue
        c = _SPLIT_COLOURS[split % 3]
        ax_loss.plot(h["epoch"], h["train_loss"], color=c, label=f"split {split} train")
        ax_loss.plot(h["epoch"], h["val_loss"], color=c, linestyle="--", label=f"split {split} val")
        ax_map.plot(h["epoch"], [100 * v for v in h["val_muAP"]], color=c, linestyle="--", label=f"split {split} val")
        if "train_muAP" in h:  # (runs from before it was kept have none)
            ax_map.plot(h["epoch"], [100 * v for v in h["train_muAP"]], color=c, label=f"split {split} train")
        ax_map.axvline(r.epochs[split], color=c, linestyle=":", linewidth=0.8)
    ax_loss.set(xlabel="epoch", ylabel="BCE loss", title=f"{r.spec.name}: loss")
    ax_map.set(xlabel="epoch", ylabel="μAP", title=f"{r.spec.name}: μAP (dashed: validation; dotted: best)")
    for ax in (ax_loss, ax_map):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.legend(fontsize=7)
    ax_map.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_pr(r: ConfigResult, path: Path) -> Path:
    """Test precision-recall curves over all labels (the μAP curve), one per split."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure(5, 4.2)
    for split, run_dir in sorted(r.run_dirs.items()):
        pred = run_dir / "predictions.csv"
        if not pred.is_file():
            continue
        y, p = read_predictions(pred, "test")
        if not y.any():
            continue
        precision, recall, _ = precision_recall_curve(y.ravel(), p.ravel())
        ax.plot(
            recall, precision, color=_SPLIT_COLOURS[split % 3], label=f"split {split} (μAP {r.test[split]['muAP']:.2f})"
        )
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{r.spec.name}: test precision-recall"
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _marker(ax: Axes, x: float, r: ConfigResult) -> None:
    """One configuration in the trade-off panel: mean μAP with std bars, a half-blue (ImageNet) /
    half-pink (Kinetics) marker and the configuration's name."""
    mean, std = r.mean_std("test", "muAP")
    left = _IMAGENET if r.imagenet else "white"
    right = _KINETICS if r.kinetics else "white"
    ax.errorbar([x], [mean], yerr=[std], color="0.4", linewidth=0.8, capsize=3, zorder=1)
    ax.plot(
        [x],
        [mean],
        marker="o",
        markersize=16,
        linestyle="none",
        fillstyle="left",
        markerfacecolor=left,
        markerfacecoloralt=right,
        markeredgecolor="0.2",
        zorder=2,
    )
    ax.annotate(r.spec.name, (x, mean), textcoords="offset points", xytext=(10, 6), fontsize=8)


def _tradeoff_panel(ax: Axes, results: list[ConfigResult], attr: str, label: str) -> None:
    """Test μAP against `attr` (params_m or gflops) on a log scale."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown = 0
    for r in results:
        x = getattr(r, attr)
        if x is None or x <= 0:
            continue
        _marker(ax, x, r)
        shown += 1
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.2, y=0.15)
    ax.set(xlabel=label, ylabel="test μAP", title=f"μAP vs {label}")
    ax.grid(True, which="both", alpha=0.3)
    if not shown:
        ax.text(0.5, 0.5, "no backbone metadata", ha="center", va="center", transform=ax.transAxes)


def _pretraining_legend(ax: Axes) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="none",
            markersize=10,
            fillstyle="left",
            markeredgecolor="0.2",
            markerfacecolor=a,
            markerfacecoloralt=b,
            label=t,
        )
        for a, b, t in (
            (_IMAGENET, "white", "ImageNet"),
            ("white", _KINETICS, "Kinetics"),
            (_IMAGENET, _KINETICS, "ImageNet + Kinetics"),
        )
    ]
    ax.legend(handles=handles, fontsize=8, loc="lower right")


def plot_tradeoff(results: list[ConfigResult], path: Path) -> Path:
    """The paper's Figure 10: test μAP (mean, std bars) against backbone parameters (left)
    and GFLOPs (right), log scale; half-blue markers ImageNet, half-pink Kinetics."""
    fig, axes = _figure(11, 4.4, 2)
    _tradeoff_panel(axes[0], results, "params_m", "parameters (M)")
    _tradeoff_panel(axes[1], results, "gflops", "GFLOPs per snippet")
    _pretraining_legend(axes[1])
    fig.tight_layout()
    fig.savefig(path)
    return path
