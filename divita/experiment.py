"""Experiments: a list of training configurations run over the three splits, summarized as the
paper summarizes them.

A configuration names a head (stores, aggregation, fusion, any TrainConfig setting); each one
is trained on every split (``runs/{name}/split{k}/``, a normal `t12k train` run folder) and
the results are written as the reference's ``experiment.py`` writes them, plus the paper's
presentation:

* ``val_run.csv`` / ``tst_run.csv``: one row per configuration and split (x100, 2 decimals,
  as ``metrics.csv``);
* ``val.csv`` / ``tst.csv``: per configuration, ``mean±std`` over the splits of every metric
  and genre (std with ddof=1, a single split gives ±0.00), computed from the 2-decimal
  per-run values as the reference does;
* ``table.md``: the layout of the paper's Table 6 (pretraining checkmarks, test metrics,
  backbone parameters and GFLOPs, each also as a percentage of the top-μAP configuration);
* ``figures/curves_{run}.png`` (losses and validation μAP per epoch, one colour per split),
  ``figures/pr_{run}.png`` (test precision-recall curves over all labels, one per split) and
  ``figures/tradeoff.png``, the paper's Figure 10: test μAP against parameters and GFLOPs,
  ImageNet-pretrained backbones half blue, Kinetics half pink, both half and half.

Parameters and GFLOPs are the frozen backbones' (both, for a fusion), from torchvision's
weight metadata (``meta['num_params']``, ``meta['_ops']``): parameters as torchvision
counts them (classifier included), GFLOPs per clip times the clips of a snippet (30). This
reproduces the paper's 4.3 G for ShuffleNet-2D and 122.7 G for ResNet; torchvision measures
3D backbones on its own clip length, so their figures are lower than the paper's for 24-frame
clips. A configuration may give ``params_m`` and ``gflops`` itself (e.g. for a backbone
torchvision does not have). Finished runs are reused when their settings match, stopped ones
resumed, so re-running an experiment only does what is missing.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t12k import GENRES
from t12k.divita.metrics import METRIC_NAMES
from t12k.divita.train import RESUMABLE_CHANGES, TrainConfig, train
from t12k.errors import T12kError
from t12k.storage import FeatureStore

DEFAULT_SPLITS = (0, 1, 2)
_RUN_KEYS = ("image_store", "video_store", "labels", "split", "out_dir")  # set per run, not per config
_CONFIG_KEYS = ("name", "group", "image_store", "video_store", "image_backbone", "video_backbone", "params_m", "gflops")
_TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in _RUN_KEYS)

_I = "trailers_i_{}_fpc24.zarr"
_K = "trailers_k_{}_fps24_fpc24.zarr"
_IK = "trailers_ik_{}_fps24_fpc24.zarr"

# The reference's experiment.py `transfer` list (the paper's Table 6 without the baseline).
_TRANSFER = [
    {"name": "ShuffleNet-2D", "group": "Light Conv", "image_store": _I.format("shufflenet")},
    {"name": "ShuffleNet-3D", "group": "Light Conv", "video_store": _K.format("shufflenet")},
    {
        "name": "ShuffleNet-Fusion",
        "group": "Light Conv",
        "image_store": _I.format("shufflenet"),
        "video_store": _K.format("shufflenet"),
    },
    {"name": "ResNet", "group": "Heavy Conv", "image_store": _I.format("resnet")},
    {"name": "ResNet-2+1D", "group": "Heavy Conv", "video_store": _K.format("r2plus1d")},
    {
        "name": "ResNet-Fusion",
        "group": "Heavy Conv",
        "image_store": _I.format("resnet"),
        "video_store": _K.format("r2plus1d"),
    },
    {"name": "Swin-2D", "group": "Transformer", "image_store": _I.format("swin")},
    {"name": "Swin-3D", "group": "Transformer", "video_store": _IK.format("swin")},
]
_BASELINE = [{"name": "CTT-MMC-A†", "image_store": _I.format("resnet"), "aggregation": "ctt"}]
# The paper's Table 5: GRU, Conv and Transformer clip aggregation.
_AGGREGATION = [
    {"name": f"{label} {agg_name}", "group": label, "aggregation": agg, **store}
    for label, store in (
        ("ImageNet", {"image_store": _I.format("swin")}),
        ("ImageNet-Kinetics", {"video_store": _IK.format("swin")}),
    )
    for agg_name, agg in (("GRU", "gru"), ("Conv", "conv"), ("Transformer", "tsfm"))
]
BUILTIN: dict[str, list[dict]] = {
    "transfer": _TRANSFER,
    "table6": _BASELINE + _TRANSFER,
    "aggregation": _AGGREGATION,
}


@dataclass
class RunSpec:
    """One configuration of an experiment."""

    name: str
    image_store: str | None = None
    video_store: str | None = None
    group: str | None = None
    image_backbone: str | None = None
    video_backbone: str | None = None
    params_m: float | None = None
    gflops: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", self.name).strip("_") or "run"


def _spec_from_dict(d: dict, where: str) -> RunSpec:
    if not isinstance(d, dict):
        raise T12kError(f"{where}: a configuration must be a mapping with a name and stores, got {d!r}")
    unknown = [k for k in d if k not in _CONFIG_KEYS and k not in _TRAIN_KEYS]
    if unknown:
        raise T12kError(
            f"{where}: unknown setting {unknown[0]!r}; use {', '.join(_CONFIG_KEYS)} or a "
            f"training setting ({', '.join(_TRAIN_KEYS)})"
        )
    if not d.get("name"):
        raise T12kError(f"{where}: every configuration needs a name")
    if not d.get("image_store") and not d.get("video_store"):
        raise T12kError(f"{where} ({d['name']}): give image_store, video_store or both")
    kw = {k: d[k] for k in _CONFIG_KEYS if k in d}
    kw["name"] = str(kw["name"])
    return RunSpec(**kw, settings={k: d[k] for k in _TRAIN_KEYS if k in d})


def load_configs(source: str | os.PathLike) -> tuple[list[RunSpec], dict]:
    """The configurations of a built-in list (`transfer`, `table6`, `aggregation`) or of a
    JSON / YAML file, and the file's other entries (``data_dir``, ``labels``, ``defaults``).

    A file holds either a list of configurations or a mapping with ``configs`` (the list)
    and optionally ``data_dir`` (relative to the file), ``labels`` and ``defaults``
    (training settings for every configuration).
    """
    if str(source) in BUILTIN:
        return [_spec_from_dict(dict(d), f"built-in list {source}") for d in BUILTIN[str(source)]], {}
    p = Path(source)
    if not p.is_file():
        raise T12kError(
            f"experiment {source!r} is neither a built-in list ({', '.join(BUILTIN)}) nor a "
            "file; pass one of those names or a .json / .yaml file of configurations"
        )
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise T12kError(
            f"{p} is not valid {'YAML' if p.suffix.lower() in ('.yaml', '.yml') else 'JSON'} ({first}); fix the file"
        ) from None
    extra: dict = {}
    if isinstance(doc, dict):
        unknown = [k for k in doc if k not in ("configs", "data_dir", "labels", "defaults")]
        if unknown:
            raise T12kError(f"{p}: unknown top-level key {unknown[0]!r}; use configs, data_dir, labels, defaults")
        extra = {k: doc[k] for k in ("data_dir", "labels", "defaults") if k in doc}
        if "data_dir" in extra:
            extra["data_dir"] = str((p.parent / str(extra["data_dir"])).resolve())
        doc = doc.get("configs")
    if not isinstance(doc, list) or not doc:
        raise T12kError(f"{p} has no configurations; give a list of them (or a mapping with 'configs')")
    defaults = extra.get("defaults") or {}
    bad = [k for k in defaults if k not in _TRAIN_KEYS]
    if bad:
        raise T12kError(f"{p}: defaults has unknown setting {bad[0]!r}; use {', '.join(_TRAIN_KEYS)}")
    specs = [
        _spec_from_dict({**defaults, **d} if isinstance(d, dict) else d, f"{p} configuration {i + 1}")
        for i, d in enumerate(doc)
    ]
    names = [s.name for s in specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise T12kError(f"{p}: two configurations are named {dup!r}; names must be unique")
    return specs, extra


# ---- backbone facts --------------------------------------------------------------------------


@dataclass
class BackboneFacts:
    imagenet: bool
    kinetics: bool
    params_m: float | None
    gflops_per_clip: float | None


def _store_facts(path: Path, explicit_key: str | None) -> BackboneFacts:
    """Pretraining (from the store name's i/k/ik prefix, else the backbone's spec) and the
    backbone's torchvision metadata (key: explicit, recorded in the store, or by name)."""
    from t12k.backbones import REGISTRY

    name = path.name
    attrs = FeatureStore.open(path).attrs
    key = explicit_key or (attrs.get("t12k") or {}).get("backbone")
    if not key:
        key = next(
            (k for k, s in REGISTRY.items() if name.startswith(f"trailers_{s.store_prefix}_{s.store_stem}_")), None
        )
    spec = REGISTRY.get(key) if key else None
    if explicit_key and spec is None:
        raise T12kError(f"unknown backbone {explicit_key!r} for {name}; use one of {', '.join(REGISTRY)}")
    m = re.match(r"trailers_(ik|i|k)_", name)
    if m:
        imagenet, kinetics = "i" in m.group(1), "k" in m.group(1)
    elif spec is not None:
        imagenet, kinetics = "ImageNet" in spec.pretraining, "Kinetics" in spec.pretraining
    else:
        imagenet = kinetics = False
    if spec is None:
        return BackboneFacts(imagenet, kinetics, None, None)
    meta = spec.weights_enum.meta
    return BackboneFacts(imagenet, kinetics, meta["num_params"] / 1e6, float(meta["_ops"]))


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

    def mean_std(self, subset: str, key: str) -> tuple[float, float]:
        values = [r[key] for r in (self.val if subset == "val" else self.test).values()]
        return _mean_std(values)


@dataclass
class ExperimentResult:
    out_dir: Path
    configs: list[ConfigResult]
    files: dict[str, Path]


def _mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    if a.size == 1:
        return float(a[0]), 0.0
    return float(a.mean()), float(a.std(ddof=1))


def format_mean_std(values) -> str:
    """``mean±std`` with 2 decimals, std with ddof=1 (0 for one value), as the reference."""
    mean, std = _mean_std(values)
    return f"{mean:.2f}±{std:.2f}"


# ---- running ------------------------------------------------------------------------------


def _resolve(path: str | None, data_dir: Path) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else data_dir / p


def _read_metrics(path: Path) -> tuple[dict[str, dict[str, float]], int]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = {r["subset"]: r for r in csv.DictReader(fh)}
    keys = list(METRIC_NAMES) + list(GENRES)
    out = {s: {k: float(rows[s][k]) for k in keys} for s in ("val", "test")}
    return out, int(rows["test"]["epoch"])


def _finished_with(run_dir: Path, cfg: TrainConfig) -> bool:
    """True when run_dir holds a finished run whose settings are `cfg`'s."""
    if not (run_dir / "metrics.csv").is_file() or not (run_dir / "checkpoint.pt").is_file():
        return False
    try:
        saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["config"]
    except Exception:
        return False
    now = cfg.to_dict()
    for key, value in now.items():
        if key in RESUMABLE_CHANGES and key != "max_epochs":
            continue
        if key in ("image_store", "video_store", "labels"):
            if (saved.get(key) is None) != (value is None) or (
                value is not None and Path(saved[key]).resolve() != Path(value).resolve()
            ):
                return False
        elif saved.get(key) != value:
            return False
    return True


def run_experiment(
    specs: list[RunSpec],
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike = ".",
    labels: str | os.PathLike | None = None,
    splits=DEFAULT_SPLITS,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    snippet_for_flops: int | None = None,
) -> ExperimentResult:
    """Train every configuration on every split (reusing finished runs, resuming stopped ones)
    and write the CSVs, the markdown table and the figures into `out_dir`.

    Store paths of the configurations are relative to `data_dir`; `labels` defaults to
    ``data_dir/mtgc.csv``; `overrides` (training settings) win over every configuration's.
    """
    if not specs:
        raise T12kError("no configurations to run; give a list with at least one")
    data_dir = Path(data_dir)
    out = Path(out_dir)
    labels_path = Path(labels) if labels else data_dir / "mtgc.csv"
    if not labels_path.is_file():
        raise T12kError(
            f"labels file {labels_path} not found; download the published data (t12k download-reps) "
            "or pass --labels / --data-dir"
        )
    splits = [int(s) for s in splits]
    if not splits or any(s not in (0, 1, 2) for s in splits):
        raise T12kError(f"splits {splits} must be among 0, 1, 2")
    overrides = dict(overrides or {})
    bad = [k for k in overrides if k not in _TRAIN_KEYS]
    if bad:
        raise T12kError(f"unknown training setting {bad[0]!r}; use {', '.join(_TRAIN_KEYS)}")
    # check every store first (as the reference's verify_data), so a typo fails before hours of training
    facts: dict[str, list[BackboneFacts]] = {}
    for spec in specs:
        facts[spec.name] = [
            _store_facts(p, key)
            for p, key in (
                (_resolve(spec.image_store, data_dir), spec.image_backbone),
                (_resolve(spec.video_store, data_dir), spec.video_backbone),
            )
            if p is not None
        ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.json").write_text(
        json.dumps(
            {
                "data_dir": str(data_dir),
                "labels": str(labels_path),
                "splits": splits,
                "overrides": overrides,
                "configs": [{**{k: getattr(s, k) for k in _CONFIG_KEYS}, **s.settings} for s in specs],
            },
            indent=2,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )

    results: list[ConfigResult] = []
    total, done = len(specs) * len(splits), 0
    for spec in specs:
        settings = {**spec.settings, **overrides}
        res = ConfigResult(spec, {}, {}, {}, {})
        for split in splits:
            done += 1
            run_dir = out / "runs" / spec.slug / f"split{split}"
            cfg = TrainConfig(
                image_store=_resolve(spec.image_store, data_dir),
                video_store=_resolve(spec.video_store, data_dir),
                labels=labels_path,
                split=split,
                out_dir=run_dir,
                **settings,
            )
            t0 = time.time()
            if _finished_with(run_dir, cfg):
                how = "done before"
            else:
                how = "trained"
                resumed = False
                if (run_dir / "last.pt").is_file():
                    try:
                        train(cfg, progress=progress, resume=True)
                        resumed, how = True, "resumed"
                    except T12kError:
                        resumed = False
                if not resumed:
                    train(cfg, progress=progress)
            metrics, epoch = _read_metrics(run_dir / "metrics.csv")
            res.run_dirs[split], res.val[split], res.test[split] = run_dir, metrics["val"], metrics["test"]
            res.epochs[split] = epoch
            log(
                f"[{done}/{total}] {spec.name} split {split}: test muAP {metrics['test']['muAP']:.2f} "
                f"(best epoch {epoch}; {how}, {time.time() - t0:.0f} s)"
            )
        fl = facts[spec.name]
        res.imagenet = any(f.imagenet for f in fl)
        res.kinetics = any(f.kinetics for f in fl)
        snippet = snippet_for_flops or int(settings.get("snippet", 30))
        res.params_m = (
            spec.params_m
            if spec.params_m is not None
            else (sum(f.params_m for f in fl) if all(f.params_m is not None for f in fl) else None)
        )
        res.gflops = (
            spec.gflops
            if spec.gflops is not None
            else (
                sum(f.gflops_per_clip for f in fl) * snippet if all(f.gflops_per_clip is not None for f in fl) else None
            )
        )
        results.append(res)

    files = write_summaries(results, out)
    return ExperimentResult(out, results, files)


# ---- summaries -----------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def write_summaries(results: list[ConfigResult], out: Path) -> dict[str, Path]:
    keys = list(METRIC_NAMES) + list(GENRES)
    files: dict[str, Path] = {}
    for subset, stem in (("val", "val"), ("test", "tst")):
        per_run = []
        for r in results:
            for split, m in (r.val if subset == "val" else r.test).items():
                per_run.append([r.spec.name, split, r.epochs[split], *(f"{m[k]:.2f}" for k in keys)])
        _write_csv(out / f"{stem}_run.csv", ["run", "split", "epoch", *keys], per_run)
        summary = [
            [
                r.spec.name,
                len(r.test),
                *(format_mean_std([m[k] for m in (r.val if subset == "val" else r.test).values()]) for k in keys),
            ]
            for r in results
        ]
        _write_csv(out / f"{stem}.csv", ["run", "splits", *keys], summary)
        files[f"{stem}_run"], files[stem] = out / f"{stem}_run.csv", out / f"{stem}.csv"
    files["table"] = out / "table.md"
    files["table"].write_text(markdown_table(results), encoding="utf-8")
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for r in results:
        files[f"curves_{r.spec.slug}"] = plot_curves(r, figures / f"curves_{r.spec.slug}.png")
        files[f"pr_{r.spec.slug}"] = plot_pr(r, figures / f"pr_{r.spec.slug}.png")
    files["tradeoff"] = plot_tradeoff(results, figures / "tradeoff.png")
    return files


def _reference(results: list[ConfigResult]) -> ConfigResult | None:
    """The top-μAP configuration (the paper's percentages are relative to it, Swin-3D)."""
    known = [r for r in results if r.params_m is not None or r.gflops is not None]
    return max(known, key=lambda r: r.mean_std("test", "muAP")[0], default=None)


def markdown_table(results: list[ConfigResult]) -> str:
    """The paper's Table 6 layout: backbone, pretraining, test metrics (mean±std), parameters
    and GFLOPs with percentages of the top-μAP configuration's."""
    ref = _reference(results)
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

        def pct(value, total):
            return f"{100 * value / total:.2f}" if value is not None and total else ""

        params = f"{r.params_m:.1f}" if r.params_m is not None else ""
        flops = f"{r.gflops:.1f}" if r.gflops is not None else ""
        metrics = " | ".join(format_mean_std([m[k] for m in r.test.values()]) for k in METRIC_NAMES)
        lines.append(
            f"| {r.spec.name} | {'✓' if r.imagenet else ''} | {'✓' if r.kinetics else ''} | {metrics} | "
            f"{params} | {pct(r.params_m, ref.params_m if ref else None)} | {flops} | "
            f"{pct(r.gflops, ref.gflops if ref else None)} |"
        )
    note = (
        (
            f"\nTest metrics x100, mean±std over splits {', '.join(str(s) for s in sorted(results[0].test))}. "
            "Params and FLOPs: the frozen backbones (torchvision metadata; FLOPs per 30-clip snippet)"
            + (f"; % of {ref.spec.name}, the top μAP." if ref else ".")
            + "\n"
        )
        if results
        else ""
    )
    return head + "\n".join(lines) + "\n" + note


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


_SPLIT_COLOURS = ("tab:blue", "tab:orange", "tab:green")


def _read_history(path: Path) -> dict[str, list[float]]:
    cols: dict[str, list[float]] = {}
    if not path.is_file():
        return cols
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                cols.setdefault(k, []).append(float(v))
    return cols


def plot_curves(r: ConfigResult, path: Path) -> Path:
    """Training and validation loss, and validation μAP, per epoch for every split."""
    fig, (ax_loss, ax_map) = _figure(10, 3.6, 2)
    for split, run_dir in sorted(r.run_dirs.items()):
        h = _read_history(run_dir / "history.csv")
        if not h:
            continue
        c = _SPLIT_COLOURS[split % 3]
        ax_loss.plot(h["epoch"], h["train_loss"], color=c, label=f"split {split} train")
        ax_loss.plot(h["epoch"], h["val_loss"], color=c, linestyle="--", label=f"split {split} val")
        ax_map.plot(h["epoch"], [100 * v for v in h["val_muAP"]], color=c, label=f"split {split}")
        ax_map.axvline(r.epochs[split], color=c, linestyle=":", linewidth=0.8)
    ax_loss.set(xlabel="epoch", ylabel="BCE loss", title=f"{r.spec.name}: loss")
    ax_map.set(xlabel="epoch", ylabel="validation μAP", title=f"{r.spec.name}: validation μAP (dotted: best)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_map):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.legend(fontsize=7)
    ax_map.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _read_predictions(path: Path, subset: str) -> tuple[np.ndarray, np.ndarray]:
    ys, ps = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["subset"] == subset:
                ys.append([int(row[f"y_{g}"]) for g in GENRES])
                ps.append([float(row[f"p_{g}"]) for g in GENRES])
    return np.asarray(ys, int).reshape(-1, len(GENRES)), np.asarray(ps, float).reshape(-1, len(GENRES))


def plot_pr(r: ConfigResult, path: Path) -> Path:
    """Test precision-recall curves over all labels (the μAP curve), one per split."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure(5, 4.2)
    for split, run_dir in sorted(r.run_dirs.items()):
        pred = run_dir / "predictions.csv"
        if not pred.is_file():
            continue
        y, p = _read_predictions(pred, "test")
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


_IMAGENET, _KINETICS = "#3b6fd8", "#e7609b"


def plot_tradeoff(results: list[ConfigResult], path: Path) -> Path:
    """The paper's Figure 10: test μAP (mean, std bars) against backbone parameters (left)
    and GFLOPs (right), log scale; half-blue markers ImageNet, half-pink Kinetics."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = _figure(11, 4.4, 2)
    for ax, attr, label in ((axes[0], "params_m", "parameters (M)"), (axes[1], "gflops", "GFLOPs per snippet")):
        shown = 0
        for r in results:
            x = getattr(r, attr)
            if x is None or x <= 0:
                continue
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
    axes[1].legend(handles=handles, fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path
