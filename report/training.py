"""The report of a training run (`t12k train`'s run folder) or of an experiment (`t12k
experiment`'s results folder): loss and validation μAP per epoch, the test metrics, the AP of
every genre with its precision-recall curve, and for an experiment the paper's Table 6 layout
(mean ± std over the splits). The figures are drawn by `t12k.divita.figures` (the experiment's
own) and by `genre_pr_png` here; the numbers are tables, read without scripts."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from t12k import GENRES
from t12k.divita.metrics import METRIC_NAMES
from t12k.divita.runfiles import read_history, read_metrics, read_predictions
from t12k.errors import T12kError
from t12k.report.html import TRAINING_NAV, esc, note, rel, table, write_page

Site = tuple[Path, Sequence[tuple[str, str]]]  # a report's root folder and its header links


def is_run_dir(path: Path) -> bool:
    return (path / "metrics.csv").is_file() or (path / "history.csv").is_file()


def is_experiment_dir(path: Path) -> bool:
    return (path / "experiment.json").is_file() or ((path / "table.md").is_file() and (path / "runs").is_dir())


def _split_of(run_dir: Path) -> int:
    try:
        with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as fh:
            return int(next(csv.DictReader(fh))["split"])
    except (OSError, StopIteration, KeyError, ValueError):
        return 0


def genre_pr_png(run_dir: Path, path: Path) -> Path | None:
    """Test precision-recall curves of every genre (one panel each); None without predictions."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import auc, precision_recall_curve

    pred = run_dir / "predictions.csv"
    if not pred.is_file():
        return None
    y, p = read_predictions(pred, "test")
    if not len(y):
        return None
    fig = Figure(figsize=(12, 5), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 5, sharex=True, sharey=True)
    for ax, (k, genre) in zip(axes.ravel(), enumerate(GENRES)):
        if y[:, k].any():
            precision, recall, _ = precision_recall_curve(y[:, k], p[:, k])
            ax.plot(recall, precision, color="#b03a5b")
            ax.set_title(f"{genre} (AP {100 * auc(recall, precision):.1f})", fontsize=9)
        else:
            ax.set_title(f"{genre} (no positive)", fontsize=9)
        ax.set(xlim=(0, 1), ylim=(0, 1.02))
    for ax in axes[1]:
        ax.set_xlabel("recall")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _metrics_tables(metrics: dict[str, dict[str, float]]) -> str:
    rows = [[subset, *(f"{metrics[subset][k]:.2f}" for k in METRIC_NAMES)] for subset in ("val", "test")]
    out = "<h2>Metrics (x100)</h2>" + table(["subset", *METRIC_NAMES], rows, numeric=range(1, 5))
    rows = [[g, f"{metrics['val'][g]:.2f}", f"{metrics['test'][g]:.2f}"] for g in GENRES]
    return out + "<h2>Average precision per genre (x100)</h2>" + table(["genre", "val", "test"], rows, numeric=(1, 2))


def _history_table(history: dict[str, list[float]]) -> str:
    if not history:
        return note("no history.csv: no per-epoch numbers")
    cols = [c for c in ("epoch", "train_loss", "val_loss", "train_muAP", "val_muAP", "lr") if c in history]
    rows = [
        [
            f"{int(v)}" if c == "epoch" else f"{100 * v:.2f}" if c.endswith("muAP") else f"{v:.4g}"
            for c, v in zip(cols, vals)
        ]
        for vals in zip(*(history[c] for c in cols))
    ]
    head = [c.replace("val_muAP", "val μAP x100").replace("train_muAP", "train μAP x100") for c in cols]
    return (
        f"<details><summary>Every epoch ({len(rows)})</summary>{table(head, rows, numeric=range(len(cols)))}</details>"
    )


def run_page(run_dir: Path, folder: Path, site: Site) -> Path:
    """folder/index.html: the page of a `t12k train` run folder (`site`: the report it belongs to)."""
    from t12k.divita.experiment import RunSpec
    from t12k.divita.figures import plot_curves, plot_pr
    from t12k.divita.report import ConfigResult

    path, img = folder / "index.html", folder / "img"
    img.mkdir(parents=True, exist_ok=True)
    parts = [f"<p>Run folder <code>{esc(run_dir)}</code>.</p>"]
    split = _split_of(run_dir)
    try:
        metrics, best = read_metrics(run_dir / "metrics.csv")
    except (OSError, KeyError, ValueError) as exc:
        metrics, best = {}, 0
        parts.append(
            note(f"no test metrics: {run_dir / 'metrics.csv'} cannot be read ({exc}); the run has not finished")
        )
    history = read_history(run_dir / "history.csv")
    if metrics:
        parts.append(f"<p>Split {split}; best epoch {best} of {len(history.get('epoch', [])) or '?'}.</p>")
        parts.append(_metrics_tables(metrics))
    res = ConfigResult(
        RunSpec(run_dir.name),
        {split: run_dir},
        {split: metrics.get("val", {})},
        {split: metrics.get("test", {})},
        {split: best},
    )
    parts.append("<h2>Training curves</h2>")
    if history:
        png = plot_curves(res, img / "curves.png")
        parts.append(f"<img class='fig' src='{rel(png, path)}' alt='loss and validation μAP per epoch'>")
    parts.append(_history_table(history))
    parts.append("<h2>Precision-recall (test)</h2>")
    if metrics and (run_dir / "predictions.csv").is_file():
        parts.append(f"<img class='fig' src='{rel(plot_pr(res, img / 'pr.png'), path)}' alt='test precision-recall'>")
        genre_png = genre_pr_png(run_dir, img / "pr_genres.png")
        if genre_png:
            parts.append(f"<img class='fig' src='{rel(genre_png, path)}' alt='precision-recall per genre'>")
    else:
        parts.append(note("no predictions.csv: no precision-recall curves"))
    return write_page(site[0], path, f"Training run {run_dir.name}", "".join(parts), site[1])


def _markdown_table_html(text: str) -> str:
    """The experiment's table.md (pipe table and its note) as HTML."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if ln.startswith("|")]
    rows = [r for r in rows if not all(set(c) <= set(":- ") for c in r)]  # the alignment row
    notes = " ".join(ln for ln in lines if not ln.startswith("|"))
    if not rows:
        return note("table.md holds no table")
    body = [[esc(c).replace("*", "") for c in r] for r in rows[1:]]
    return table(rows[0], body, numeric=range(3, len(rows[0])), raw=True) + (f"<p>{esc(notes)}</p>" if notes else "")


def _csv_table(path: Path, columns: tuple[str, ...]) -> str:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cols = [c for c in columns if rows and c in rows[0]]
    return table(cols, [[r[c] for c in cols] for r in rows], numeric=range(1, len(cols)))


def experiment_page(exp_dir: Path, folder: Path, site: Site) -> Path:
    """folder/index.html: the page of a `t12k experiment` folder, and a page per configuration and split."""
    path, img = folder / "index.html", folder / "img"
    img.mkdir(parents=True, exist_ok=True)
    parts = [f"<p>Experiment folder <code>{esc(exp_dir)}</code>.</p>"]
    table_md = exp_dir / "table.md"
    parts.append("<h2>Test metrics (the paper's Table 6 layout, mean ± std over splits)</h2>")
    parts.append(
        _markdown_table_html(table_md.read_text(encoding="utf-8")) if table_md.is_file() else note("no table.md")
    )
    for stem, what in (("tst", "test"), ("val", "validation")):
        if (exp_dir / f"{stem}.csv").is_file():
            parts.append(f"<h2>{what.capitalize()}, per genre (mean ± std)</h2>")
            parts.append(_csv_table(exp_dir / f"{stem}.csv", ("run", "splits", *METRIC_NAMES, *GENRES)))
    figures = sorted((exp_dir / "figures").glob("*.png")) if (exp_dir / "figures").is_dir() else []
    for png in figures:
        shutil.copy2(png, img / png.name)
        parts.append(f"<img class='fig' src='img/{esc(png.name)}' alt='{esc(png.stem)}'>")
    runs = (
        sorted(p for p in (exp_dir / "runs").glob("*/split*") if is_run_dir(p)) if (exp_dir / "runs").is_dir() else []
    )
    links = []
    for run in runs:
        name = f"{run.parent.name}-{run.name}"
        run_page(run, folder / "runs" / name, site)
        links.append(f"<li><a href='runs/{esc(name)}/index.html'>{esc(run.parent.name)} {esc(run.name)}</a></li>")
    if links:
        parts.append("<h2>Runs</h2><ul>" + "".join(links) + "</ul>")
    configs = _configs(exp_dir)
    if configs:
        parts.append(f"<p class='muted'>Configurations in experiment.json: {esc(', '.join(configs))}.</p>")
    return write_page(site[0], path, f"Experiment {exp_dir.name}", "".join(parts), site[1])


def _configs(exp_dir: Path) -> list[str]:
    try:
        doc = json.loads((exp_dir / "experiment.json").read_text(encoding="utf-8"))
        return [str(c.get("name")) for c in doc.get("configs", [])]
    except (OSError, ValueError, AttributeError):
        return []


def training_report(folder: Path, out: Path, site: Site | None = None) -> Path:
    """The pages of a run or experiment `folder` in `out`; its index page. `site`: the report
    they belong to (its root and header links); by default `out` is a report of its own."""
    site = site or (out, TRAINING_NAV)
    if is_experiment_dir(folder):
        return experiment_page(folder, out, site)
    if is_run_dir(folder):
        return run_page(folder, out, site)
    raise T12kError(f"{folder} is neither a `t12k train` run folder nor a `t12k experiment` folder")
