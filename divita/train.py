"""Training, evaluation, checkpoints and single-trailer prediction for the DIViTA head.

The protocol is the reference trainer's (github.com/richardtml/DIViTA ``train.py``):
one random 30-clip snippet per training trailer per epoch, batches of 32 trailers in
shuffled order, BCE with logits, AdamW (amsgrad), ReduceLROnPlateau and early stopping on
the validation loss, the best-validation-loss state kept and evaluated on val and test with
all non-overlapping snippets (probabilities averaged per trailer).

Run folder: ``checkpoint.pt`` (the best-validation state with the optimizer, scheduler,
epoch, settings and the attrs of the stores trained on), ``last.pt`` (the state after the
latest epoch, RNG states included, rewritten every epoch: ``train(..., resume=True)`` /
``t12k train --resume`` continues from it to the same result as an uninterrupted run with
the same seed), ``history.csv`` (one row per epoch), ``metrics.csv`` (val and test, x100)
and ``predictions.csv`` (every val and test trailer's labels and probabilities).

Validation loss as the reference computes it: trailers in batches of ``batch_size`` (in
file order), the BCE of every snippet's logits against its trailer's labels averaged within
a batch, then the batch means averaged.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import t12k
from t12k import GENRES
from t12k.divita.data import EvalSnippets, TrailerFeatures, load_trailers, mean_by_owner, table_from_arrays
from t12k.divita.metrics import METRIC_NAMES, compute_metrics, muap
from t12k.divita.model import AGGREGATIONS, FUSIONS, DIViTA
from t12k.errors import T12kError
from t12k.storage import read_mtgc

CHECKPOINT_FORMAT = "t12k-divita"
CHECKPOINT_VERSION = 1
STATE_FORMAT = "t12k-divita-state"  # last.pt: everything needed to resume
# Settings that may change when a run is resumed (they do not change what is computed, or,
# for max_epochs, only how far it goes); every other setting must match the stopped run.
RESUMABLE_CHANGES = ("max_epochs", "device", "features_device", "num_threads", "out_dir")
EVAL_CHUNK = 1024  # snippets per forward pass at evaluation


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a training run needs (keyword arguments); saved in the checkpoint."""

    image_store: str | os.PathLike | None = None
    video_store: str | os.PathLike | None = None
    labels: str | os.PathLike  # mtgc.csv
    split: int = 0
    out_dir: str | os.PathLike  # the run folder
    aggregation: str = "tsfm"
    fusion: str = "late"
    snippet: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01  # torch.optim.AdamW's default (the reference does not set it)
    max_epochs: int = 100
    scheduler_patience: int = 10
    stop_patience: int = 20
    seed: int = 0
    device: str = "auto"  # 'auto': cuda when available, else cpu
    num_threads: int | None = None  # torch CPU threads during training (None: torch's default)
    feature_dtype: str = "float32"  # in-memory features: float32, float16 or bfloat16
    features_device: str | None = None  # where the features live (None: the training device)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("image_store", "video_store", "labels", "out_dir"):
            d[k] = None if d[k] is None else str(d[k])
        return d

    def validate(self) -> None:
        if self.image_store is None and self.video_store is None:
            raise T12kError("no feature store given; pass an image store, a video store or both")
        if self.split not in (0, 1, 2):
            raise T12kError(f"split {self.split} does not exist; use 0, 1 or 2")
        if self.aggregation not in AGGREGATIONS:
            raise T12kError(f"aggregation {self.aggregation!r} is unknown; use one of {', '.join(AGGREGATIONS)}")
        if self.fusion not in FUSIONS:
            raise T12kError(f"fusion {self.fusion!r} is unknown; use 'early' or 'late'")
        for name in ("snippet", "batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise T12kError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise T12kError(f"lr must be positive, got {self.lr}")


@dataclass
class TrainResult:
    val: dict
    test: dict
    best_epoch: int
    epochs_run: int
    out_dir: Path
    history: list[dict] = field(default_factory=list)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise T12kError(f"device {device!r} is not a torch device; use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise T12kError(f"device {device!r} asked for but CUDA is not available; use --device cpu")
    return dev


# ---- evaluation --------------------------------------------------------------------------


@torch.no_grad()
def snippet_logits(
    model: DIViTA, data: TrailerFeatures, snippets: EvalSnippets, device: torch.device, chunk: int = EVAL_CHUNK
) -> torch.Tensor:
    """Logits (N, L) of every evaluation snippet (model in eval mode)."""
    was_training = model.training
    model.eval()
    out = []
    for index, _ in snippets.chunks(chunk):
        image, video = data.gather(index, device)
        out.append(model(image, video).float())
    model.train(was_training)
    if not out:
        return torch.zeros(0, model.num_classes, device=device)
    return torch.cat(out)


def reference_val_loss(logits: torch.Tensor, labels: torch.Tensor, owner: torch.Tensor, batch_size: int) -> float:
    """Mean over trailer batches of the mean snippet BCE in each batch (the reference's val loss)."""
    per_snippet = F.binary_cross_entropy_with_logits(logits, labels[owner], reduction="none").mean(1)
    batch = owner // batch_size
    nb = int(batch.max()) + 1 if batch.numel() else 0
    if nb == 0:
        return math.nan
    sums = torch.zeros(nb, dtype=per_snippet.dtype, device=per_snippet.device).index_add_(0, batch, per_snippet)
    counts = torch.bincount(batch, minlength=nb).to(per_snippet.dtype)
    return float((sums / counts).mean())


def evaluate(
    model: DIViTA,
    data: TrailerFeatures,
    rows: torch.Tensor,
    labels: np.ndarray,
    snippet: int,
    device: torch.device,
    batch_size: int = 32,
) -> tuple[float, np.ndarray]:
    """(validation loss as the reference, trailer probabilities (n, L)) for `rows`."""
    snippets = data.eval_snippets(rows, snippet)
    logits = snippet_logits(model, data, snippets, device)
    owner = snippets.owner.to(device)
    y = torch.as_tensor(labels, dtype=torch.float32, device=device)
    loss = reference_val_loss(logits, y, owner, batch_size)
    probs = mean_by_owner(torch.sigmoid(logits), owner, snippets.num_trailers)
    return loss, probs.cpu().numpy()


# ---- files -------------------------------------------------------------------------------

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_muAP", "lr")


def _write_metrics_csv(path: Path, rows: list[tuple[str, dict]], split: int, best_epoch: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["subset", "split", "epoch", *METRIC_NAMES, *GENRES])
        for subset, m in rows:
            w.writerow(
                [
                    subset,
                    split,
                    best_epoch,
                    *(f"{100 * m[k]:.2f}" for k in METRIC_NAMES),
                    *(f"{100 * m['per_genre'][g]:.2f}" for g in GENRES),
                ]
            )
    os.replace(tmp, path)


def _write_predictions_csv(path: Path, rows: list[tuple[str, list[str], np.ndarray, np.ndarray]]) -> None:
    """subset, mid, the labels (y_{genre}) and probabilities (p_{genre}) of every trailer."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["subset", "mid", *(f"y_{g}" for g in GENRES), *(f"p_{g}" for g in GENRES)])
        for subset, ids, y, prob in rows:
            for mid, yy, pp in zip(ids, y, prob):
                w.writerow([subset, mid, *(int(v) for v in yy), *(f"{v:.6f}" for v in pp)])
    os.replace(tmp, path)


def _write_history_csv(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HISTORY_COLUMNS)
        for h in history:
            w.writerow(_history_row(h))
    os.replace(tmp, path)


def _history_row(h: dict) -> list:
    return [h["epoch"], f"{h['train_loss']:.6f}", f"{h['val_loss']:.6f}", f"{h['val_muAP']:.6f}", f"{h['lr']:.3g}"]


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


# ---- training ----------------------------------------------------------------------------


def train(
    cfg: TrainConfig, progress: bool = True, *, resume: bool = False, on_epoch: Callable[[dict], None] | None = None
) -> TrainResult:
    """Train the DIViTA head on one split, keep the best-validation-loss state, evaluate it.

    `resume`: continue the stopped run in ``cfg.out_dir`` from its ``last.pt`` (same
    settings required, except those in RESUMABLE_CHANGES; a larger ``max_epochs`` extends
    a finished run unless early stopping ended it). `on_epoch` is called with each epoch's
    history record after that epoch's state is saved (progress reporting; an exception
    raised there stops the run, which ``resume`` can then continue).
    """
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        return _train(cfg, progress, resume, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _same_path(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _load_state(path: Path, cfg: TrainConfig, stores: dict) -> dict:
    """The resumable state in `path`, checked against the settings and stores of `cfg`."""
    fix = "run without --resume to start again, or pass the settings of the stopped run"
    if not path.is_file():
        raise T12kError(
            f"nothing to resume in {path.parent}: no {path.name}; run the same command "
            "without --resume to start the training"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise T12kError(
            f"{path} is not a readable t12k training state ({type(exc).__name__}); run without --resume to start again"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise T12kError(f"{path} is not a t12k training state; run without --resume to start again")
    saved, now = state["config"], cfg.to_dict()
    for key, value in now.items():
        if key in RESUMABLE_CHANGES:
            continue
        old = saved.get(key)
        same = _same_path(old, value) if key in ("image_store", "video_store", "labels") else old == value
        if not same:
            raise T12kError(
                f"cannot resume the run in {path.parent}: it was started with {key}={old!r}, now {key}={value!r}; {fix}"
            )
    for role, info in stores.items():
        old = state["stores"].get(role, {}).get("attrs")
        if old != info["attrs"]:
            raise T12kError(
                f"cannot resume the run in {path.parent}: the {role} store {info['path']} "
                "changed since the run started (its attrs differ); run without --resume"
            )
    return state


def _rng_state() -> dict:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _train(cfg: TrainConfig, progress: bool, resume: bool, on_epoch: Callable[[dict], None] | None) -> TrainResult:
    device = resolve_device(cfg.device)
    feat_device = resolve_device(cfg.features_device) if cfg.features_device else device
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    gen = torch.Generator().manual_seed(cfg.seed)

    mtgc = read_mtgc(cfg.labels)
    subsets = {name: mtgc.subset(cfg.split, name) for name in ("train", "val", "test")}
    for name, (ids, _) in subsets.items():
        if not ids:
            raise T12kError(
                f"split {cfg.split} of {cfg.labels} has no {name} trailers; "
                "every split needs train (0), validation (1) and test (2) rows"
            )
    ids = [m for name in ("train", "val", "test") for m in subsets[name][0]]
    data = load_trailers(ids, cfg.image_store, cfg.video_store, cfg.feature_dtype, feat_device, progress)
    rows = {name: data.rows(subsets[name][0]) for name in subsets}
    labels = {name: subsets[name][1].astype(np.float32) for name in subsets}
    y_train = torch.as_tensor(labels["train"], device=device)

    fi = data.image.num_features if data.image is not None else None
    fv = data.video.num_features if data.video is not None else None
    model = DIViTA(fi, fv, cfg.fusion, cfg.aggregation, len(GENRES)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=cfg.scheduler_patience)

    stores = {}
    if data.image is not None:
        stores["image"] = {"path": str(data.image.path), "attrs": data.image.attrs}
    if data.video is not None:
        stores["video"] = {"path": str(data.video.path), "attrs": data.video.attrs}

    def checkpoint(state: dict, epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "t12k_version": t12k.__version__,
            "model": state,
            "optimizer": copy.deepcopy(opt.state_dict()),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "config": cfg.to_dict(),
            "stores": stores,
            "genres": list(GENRES),
            "image_features": fi,
            "video_features": fv,
            "fusion": cfg.fusion,
            "aggregation": cfg.aggregation,
            "snippet": cfg.snippet,
            "num_classes": len(GENRES),
        }

    hist_path, last_path = out_dir / "history.csv", out_dir / "last.pt"
    best_loss, best_epoch, best_state, bad, epoch, stopped = math.inf, 0, None, 0, 0, False
    history: list[dict] = []
    if resume:
        st = _load_state(last_path, cfg, stores)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        gen.set_state(st["rng"]["generator"])
        _set_rng_state(st["rng"])
        epoch, best_loss = int(st["epoch"]), float(st["best_loss"])
        best_epoch, bad = int(st["best_epoch"]), int(st["bad"])
        best_state, stopped = st["best_state"], bool(st["stopped"])
        history = [dict(h) for h in st["history"]]
        if best_state is not None and not (out_dir / "checkpoint.pt").is_file():
            raise T12kError(f"cannot resume the run in {out_dir}: checkpoint.pt is missing; run without --resume")
    _write_history_csv(hist_path, history)

    def save_last() -> None:
        rng = _rng_state()
        rng["generator"] = gen.get_state()
        _save(
            {
                "format": STATE_FORMAT,
                "format_version": CHECKPOINT_VERSION,
                "t12k_version": t12k.__version__,
                "config": cfg.to_dict(),
                "stores": stores,
                "epoch": epoch,
                "model": _cpu_state(model.state_dict()),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": rng,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "bad": bad,
                "best_state": best_state,
                "stopped": stopped,
                "history": history,
            },
            last_path,
        )

    n_train = int(rows["train"].shape[0])
    first = epoch + 1
    epochs = tqdm(
        range(first, cfg.max_epochs + 1),
        desc="train",
        disable=not progress or stopped,
        unit="epoch",
        initial=first - 1,
        total=cfg.max_epochs,
    )
    for epoch in [] if stopped else epochs:
        model.train()
        t0 = time.time()
        order = torch.randperm(n_train, generator=gen)
        losses = []
        for s in range(0, n_train, cfg.batch_size):
            batch = order[s : s + cfg.batch_size]
            image, video = data.train_batch(rows["train"][batch.to(feat_device)], cfg.snippet, gen, device)
            logits = model(image, video)
            loss = F.binary_cross_entropy_with_logits(logits, y_train[batch.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        train_loss = float(torch.stack(losses).float().mean())
        val_loss, val_prob = evaluate(model, data, rows["val"], labels["val"], cfg.snippet, device, cfg.batch_size)
        val_muap = muap(labels["val"], val_prob)
        lr = opt.param_groups[0]["lr"]
        sched.step(val_loss)
        rec = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_muAP": val_muap,
            "lr": lr,
            "seconds": time.time() - t0,
        }
        history.append(rec)
        with open(hist_path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(_history_row(rec))
        if val_loss < best_loss:  # strict improvement, as Lightning's checkpoint/early stopping
            best_loss, best_epoch, bad = val_loss, epoch, 0
            best_state = _cpu_state(model.state_dict())
            _save(checkpoint(best_state, epoch), out_dir / "checkpoint.pt")
        else:
            bad += 1
        stopped = bad >= cfg.stop_patience
        save_last()
        epochs.set_postfix(
            loss=f"{train_loss:.4f}", val=f"{val_loss:.4f}", muAP=f"{100 * val_muap:.1f}", best=best_epoch
        )
        if on_epoch is not None:
            on_epoch(dict(rec))
        if stopped:
            break
    epochs.close()
    epoch = history[-1]["epoch"] if history else 0

    if best_state is None:  # every validation loss was NaN
        best_state, best_epoch = _cpu_state(model.state_dict()), epoch
        _save(checkpoint(best_state, epoch), out_dir / "checkpoint.pt")
    model.load_state_dict(best_state)
    results, preds = {}, []
    for name in ("val", "test"):
        _, prob = evaluate(model, data, rows[name], labels[name], cfg.snippet, device, cfg.batch_size)
        results[name] = compute_metrics(labels[name], prob)
        preds.append((name, subsets[name][0], labels[name], prob))
    _write_predictions_csv(out_dir / "predictions.csv", preds)
    _write_metrics_csv(
        out_dir / "metrics.csv", [("val", results["val"]), ("test", results["test"])], cfg.split, best_epoch
    )
    return TrainResult(results["val"], results["test"], best_epoch, epoch, out_dir, history)


# ---- checkpoints and prediction -----------------------------------------------------------


def load_model(checkpoint_path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DIViTA, dict]:
    """The trained model (eval mode, on `device`) and the checkpoint's other entries."""
    p = Path(checkpoint_path)
    fix = "pass the checkpoint.pt of a `t12k train` run folder"
    if not p.is_file():
        raise T12kError(f"checkpoint {p} not found; {fix}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or arbitrary pickles
        raise T12kError(f"{p} is not a t12k checkpoint ({type(exc).__name__}); {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt:
        raise T12kError(f"{p} is not a t12k checkpoint (no DIViTA model in it); {fix}")
    if int(ckpt.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise T12kError(f"{p} was written by a newer t12k (checkpoint format {ckpt['format_version']}); upgrade t12k")
    try:
        model = DIViTA(
            ckpt["image_features"], ckpt["video_features"], ckpt["fusion"], ckpt["aggregation"], ckpt["num_classes"]
        )
        model.load_state_dict(ckpt["model"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise T12kError(f"{p} is a damaged t12k checkpoint ({exc}); {fix}") from None
    model.to(resolve_device(device)).eval()
    info = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler")}
    info["path"] = str(p)
    return model, info


@torch.no_grad()
def predict_features(
    model: DIViTA, image_feats: np.ndarray | None, video_feats: np.ndarray | None, snippet: int = 30
) -> np.ndarray:
    """Genre probabilities (L,) of one trailer from its clip features (all snippets averaged)."""
    for name, need, x, nf in (
        ("image", model.uses_image, image_feats, model.image_features),
        ("video", model.uses_video, video_feats, model.video_features),
    ):
        if need and x is None:
            raise T12kError(
                f"this model needs {name} features; extract them with the {name} backbone the model was trained on"
            )
        if need and (np.ndim(x) != 2 or np.shape(x)[1] != nf):
            raise T12kError(
                f"{name} features have shape {np.shape(x)}, the model expects (clips, {nf}); "
                "extract them with the backbone the model was trained on"
            )
    image = table_from_arrays([image_feats]) if model.uses_image else None
    video = table_from_arrays([video_feats]) if model.uses_video else None
    if image is not None and video is not None and int(image.lengths[0]) != int(video.lengths[0]):
        raise T12kError(
            f"image features have {int(image.lengths[0])} clips, video features "
            f"{int(video.lengths[0])}; extract both with the same clip plan"
        )
    data = TrailerFeatures(["trailer"], image, video)
    device = next(model.parameters()).device
    snippets = data.eval_snippets(torch.zeros(1, dtype=torch.long), snippet)
    logits = snippet_logits(model, data, snippets, device)
    return torch.sigmoid(logits).mean(0).cpu().numpy()
