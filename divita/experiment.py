"""Experiments: a list of training configurations run over the three splits, summarized as the
paper summarizes them.

A configuration names a head (stores, aggregation, fusion, any TrainConfig setting); each one
is trained on every split (``runs/{name}/split{k}/``, a normal `t12k train` run folder) and
the results are written as the reference's ``experiment.py`` writes them, plus the paper's
presentation (`divita.report`, `divita.figures`):

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
resumed, so re-running an experiment only does what is missing; a run folder holding a run
with other settings is trained anew. Configurations whose names map to one run folder
(``a b`` and ``a_b``), a store that is not a feature store or lacks a trailer of the labels
are refused before any training, and one experiment at a time writes in a results folder.

Every value of a configuration file is checked against the type of its setting (`TrainConfig`
for the training settings): ``lr: 1e-4``, which YAML reads as a string, is the number 1e-4,
and a wrong value is refused naming the file, the configuration and the setting.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from t12k.divita.checkpoint import RESUMABLE_CHANGES, first_difference, saved_config
from t12k.divita.config import SPLITS, TrainConfig, check_field, check_settings
from t12k.divita.report import ConfigResult, write_summaries
from t12k.divita.runfiles import FolderInUse, folder_lock, read_metrics
from t12k.divita.train import train
from t12k.errors import T12kError, first_line
from t12k.storage import FeatureStore, read_mtgc

DEFAULT_SPLITS = SPLITS
_RUN_KEYS = ("image_store", "video_store", "labels", "split", "out_dir")  # set per run, not per config
_CONFIG_KEYS = ("name", "group", "image_store", "video_store", "image_backbone", "video_backbone", "params_m", "gflops")
_TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in _RUN_KEYS)
_FILE_KEYS = ("configs", "data_dir", "labels", "defaults")
# Settings a finished run may differ in and still be reused (max_epochs is not one: a larger
# one resumes the run).
_REUSABLE_CHANGES = tuple(k for k in RESUMABLE_CHANGES if k != "max_epochs")
LOCK_NAME = ".t12k-experiment.lock"  # held in the results folder while an experiment runs

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

    def train_config(
        self, split: int, out_dir: Path, data_dir: Path, labels: Path, overrides: dict[str, Any] | None = None
    ) -> TrainConfig:
        """The TrainConfig of this configuration on `split` (store paths relative to `data_dir`)."""
        return TrainConfig(
            image_store=_resolve(self.image_store, data_dir),
            video_store=_resolve(self.video_store, data_dir),
            labels=labels,
            split=split,
            out_dir=out_dir,
            **{**self.settings, **(overrides or {})},
        )


# ---- configuration files ----------------------------------------------------------------------


def select_configs(specs: list[RunSpec], only: str | None, source: str) -> list[RunSpec]:
    """The configurations named in `only` (comma-separated; None: all), in the list's order."""
    if not only:
        return specs
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in {s.name for s in specs}]
    if unknown:
        raise T12kError(
            f"--only {unknown[0]!r} is not a configuration of {source}; choose from {', '.join(s.name for s in specs)}"
        )
    return [s for s in specs if s.name in wanted]


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
    where = f"{where} ({d['name']})"
    kw = {k: check_field(RunSpec, k, d[k], where) for k in _CONFIG_KEYS if k != "name" and k in d}
    settings = check_settings({k: d[k] for k in _TRAIN_KEYS if k in d}, where)
    return RunSpec(name=str(d["name"]), **kw, settings=settings)


def _read_document(p: Path) -> Any:
    """The parsed JSON or YAML of an experiment file."""
    is_yaml = p.suffix.lower() in (".yaml", ".yml")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as exc:
        raise T12kError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    try:
        if is_yaml:
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise T12kError(
            f"{p} is not valid {'YAML' if is_yaml else 'JSON'} ({first_line(exc) or type(exc).__name__}); fix the file"
        ) from None


def _file_entries(doc: Any, p: Path) -> tuple[Any, dict]:
    """The configurations of a parsed file and its other entries (data_dir resolved, defaults checked)."""
    if not isinstance(doc, dict):
        return doc, {}
    unknown = [k for k in doc if k not in _FILE_KEYS]
    if unknown:
        raise T12kError(f"{p}: unknown top-level key {unknown[0]!r}; use {', '.join(_FILE_KEYS)}")
    extra = {k: doc[k] for k in _FILE_KEYS[1:] if k in doc}
    if "data_dir" in extra:
        extra["data_dir"] = str((p.parent / str(extra["data_dir"])).resolve())
    defaults = extra.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise T12kError(f"{p}: defaults must be a mapping of training settings, got {defaults!r}")
    bad = [k for k in defaults if k not in _TRAIN_KEYS]
    if bad:
        raise T12kError(f"{p}: defaults has unknown setting {bad[0]!r}; use {', '.join(_TRAIN_KEYS)}")
    if "defaults" in extra:
        extra["defaults"] = check_settings(defaults, f"{p} defaults")
    return doc.get("configs"), extra


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
    doc, extra = _file_entries(_read_document(p), p)
    if not isinstance(doc, list) or not doc:
        raise T12kError(f"{p} has no configurations; give a list of them (or a mapping with 'configs')")
    defaults = extra.get("defaults") or {}
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


def _spec_facts(spec: RunSpec, data_dir: Path) -> list[BackboneFacts]:
    """The facts of each store of a configuration (opening it: a missing store fails here)."""
    stores = ((spec.image_store, spec.image_backbone), (spec.video_store, spec.video_backbone))
    return [_store_facts(p, key) for p, key in ((_resolve(s, data_dir), k) for s, k in stores) if p is not None]


def _add_facts(res: ConfigResult, facts: list[BackboneFacts], snippet: int) -> None:
    """Pretraining, parameters and GFLOPs per snippet of a configuration (its own figures first)."""
    spec = res.spec
    res.imagenet = any(f.imagenet for f in facts)
    res.kinetics = any(f.kinetics for f in facts)
    res.params_m = spec.params_m
    if res.params_m is None and all(f.params_m is not None for f in facts):
        res.params_m = sum(f.params_m for f in facts)
    res.gflops = spec.gflops
    if res.gflops is None and all(f.gflops_per_clip is not None for f in facts):
        res.gflops = sum(f.gflops_per_clip for f in facts if f.gflops_per_clip is not None) * snippet


@dataclass
class ExperimentResult:
    out_dir: Path
    configs: list[ConfigResult]
    files: dict[str, Path]


# ---- running ------------------------------------------------------------------------------


def _resolve(path: str | None, data_dir: Path) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else data_dir / p


def check_run_folders(specs: list[RunSpec]) -> None:
    """Refuse configurations whose names map to one run folder (``a b`` and ``a_b``; ``A`` and
    ``a``, one folder on a case-insensitive disk): their runs would replace each other."""
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        other = seen.setdefault(spec.slug.casefold(), spec)
        if other is not spec:
            raise T12kError(
                f"configurations {other.name!r} and {spec.name!r} would share the run folder runs/{spec.slug}; "
                "rename one of them"
            )


def _check_ids(specs: list[RunSpec], plan: _Plan) -> None:
    """Every trailer of the labels file in every store of the configurations."""
    ids = read_mtgc(plan.labels).ids
    stores = (_resolve(p, plan.data_dir) for spec in specs for p in (spec.image_store, spec.video_store))
    for path in dict.fromkeys(p for p in stores if p is not None):
        have = set(FeatureStore.open(path).ids())
        missing = [m for m in ids if m not in have]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise T12kError(
                f"id {missing[0]!r}{more} of {plan.labels} is not in feature store {path}; extract features for "
                "every id of the labels (t12k extract) or remove the missing rows from the labels"
            )


def _finished_with(run_dir: Path, cfg: TrainConfig) -> bool:
    """True when run_dir holds a finished run whose settings are `cfg`'s."""
    if not (run_dir / "metrics.csv").is_file() or not (run_dir / "checkpoint.pt").is_file():
        return False
    saved = saved_config(run_dir)
    return saved is not None and first_difference(saved, cfg.to_dict(), _REUSABLE_CHANGES) is None


def _train_or_reuse(cfg: TrainConfig, progress: bool) -> str:
    """Reuse a finished run with these settings, resume a stopped one, else train (replacing
    a run with other settings: the experiment owns its run folders); says which."""
    run_dir = Path(cfg.out_dir)
    if _finished_with(run_dir, cfg):
        return "done before"
    if (run_dir / "last.pt").is_file():
        try:
            train(cfg, progress=progress, resume=True)
            return "resumed"
        except FolderInUse:  # another training writes there: leave it alone
            raise
        except T12kError:  # other settings, or a damaged state: start again
            pass
    replaced = (run_dir / "checkpoint.pt").is_file() or (run_dir / "last.pt").is_file()
    train(cfg, progress=progress, overwrite=True)
    return "trained anew (the run there had other settings)" if replaced else "trained"


@dataclass
class _Plan:
    """Where an experiment reads and writes, and what it runs."""

    out: Path
    data_dir: Path
    labels: Path
    splits: list[int]
    overrides: dict[str, Any]

    def write(self, specs: list[RunSpec]) -> None:
        """experiment.json: the plan and every configuration, as run."""
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {
            "data_dir": str(self.data_dir),
            "labels": str(self.labels),
            "splits": self.splits,
            "overrides": self.overrides,
            "configs": [{**{k: getattr(s, k) for k in _CONFIG_KEYS}, **s.settings} for s in specs],
        }
        (self.out / "experiment.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")


def _plan(
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    labels: str | os.PathLike | None,
    splits: Iterable[int],
    overrides: dict[str, Any] | None,
) -> _Plan:
    """The checked plan of `run_experiment`'s arguments."""
    data_dir = Path(data_dir)
    labels_path = Path(labels) if labels else data_dir / "mtgc.csv"
    if not labels_path.is_file():
        raise T12kError(
            f"labels file {labels_path} not found; download the published data (t12k download-reps) "
            "or pass --labels / --data-dir"
        )
    splits = [int(s) for s in splits]
    if not splits or any(s not in SPLITS for s in splits):
        raise T12kError(f"splits {splits} must be among 0, 1, 2")
    overrides = dict(overrides or {})
    bad = [k for k in overrides if k not in _TRAIN_KEYS]
    if bad:
        raise T12kError(f"unknown training setting {bad[0]!r}; use {', '.join(_TRAIN_KEYS)}")
    overrides = check_settings(overrides, "experiment overrides")
    return _Plan(Path(out_dir), data_dir, labels_path, splits, overrides)


def run_experiment(
    specs: list[RunSpec],
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike = ".",
    labels: str | os.PathLike | None = None,
    splits: Iterable[int] = DEFAULT_SPLITS,
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
    check_run_folders(specs)
    plan = _plan(out_dir, data_dir, labels, splits, overrides)
    # check every store and id first (as the reference's verify_data), so a typo fails before hours of training
    facts = {spec.name: _spec_facts(spec, plan.data_dir) for spec in specs}
    _check_ids(specs, plan)
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise T12kError(f"cannot create results folder {plan.out} ({exc.strerror}); pass another --out") from None
    with folder_lock(plan.out, LOCK_NAME, "results folder", "experiment"):
        plan.write(specs)
        results: list[ConfigResult] = []
        total = len(specs) * len(plan.splits)
        for spec in specs:
            res = ConfigResult(spec, {}, {}, {}, {})
            for split in plan.splits:
                done = len(results) * len(plan.splits) + len(res.run_dirs) + 1
                log(f"[{done}/{total}] " + _run_split(res, split, plan, progress))
            snippet = snippet_for_flops or int({**spec.settings, **plan.overrides}.get("snippet", 30))
            _add_facts(res, facts[spec.name], snippet)
            results.append(res)
        files = write_summaries(results, plan.out)
    return ExperimentResult(plan.out, results, files)


def _run_split(res: ConfigResult, split: int, plan: _Plan, progress: bool) -> str:
    """Train (or reuse, or resume) one configuration on one split, record its metrics in `res`
    and say how it went."""
    spec = res.spec
    run_dir = plan.out / "runs" / spec.slug / f"split{split}"
    cfg = spec.train_config(split, run_dir, plan.data_dir, plan.labels, plan.overrides)
    t0 = time.time()
    how = _train_or_reuse(cfg, progress)
    metrics, epoch = read_metrics(run_dir / "metrics.csv")
    res.run_dirs[split], res.val[split], res.test[split] = run_dir, metrics["val"], metrics["test"]
    res.epochs[split] = epoch
    return (
        f"{spec.name} split {split}: test muAP {metrics['test']['muAP']:.2f} "
        f"(best epoch {epoch}; {how}, {time.time() - t0:.0f} s)"
    )
