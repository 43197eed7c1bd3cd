"""Training and evaluation of the DIViTA head, and single-trailer prediction.

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
and ``predictions.csv`` (every val and test trailer's labels and probabilities). The torch
files are described in `divita.checkpoint`, the CSV files in `divita.runfiles`. One training
at a time writes in a run folder (it holds a lock there, `.t12k-train.lock`), and a folder
holding a run is only replaced when asked (``overwrite=True``, ``t12k train --overwrite``).

Validation loss as the reference computes it: trailers in batches of ``batch_size`` (in
file order), the BCE of every snippet's logits against its trailer's labels averaged within
a batch, then the batch means averaged.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import t12k
from t12k import GENRES
from t12k.device import resolve_device
from t12k.divita import runfiles
from t12k.divita.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    RESUMABLE_CHANGES,
    STATE_FORMAT,
    cpu_state,
    load_model,
    load_state,
    rng_state,
    save_atomic,
    set_rng_state,
)
from t12k.divita.config import TrainConfig
from t12k.divita.data import EvalSnippets, TrailerFeatures, load_trailers, mean_by_owner, table_from_arrays
from t12k.divita.metrics import compute_metrics, muap
from t12k.divita.model import DIViTA
from t12k.errors import T12kError
from t12k.storage import read_mtgc

__all__ = [
    "RESUMABLE_CHANGES",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_model",
    "predict_features",
    "reference_val_loss",
    "snippet_logits",
    "train",
]

EVAL_CHUNK = 1024  # snippets per forward pass at evaluation
SUBSETS = ("train", "val", "test")
# The files of a run folder (an --overwrite run removes them first, so no file of the old run
# stays beside the new run's), and the lock held while a training writes them.
RUN_FILES = ("checkpoint.pt", "last.pt", "history.csv", "metrics.csv", "predictions.csv")
LOCK_NAME = ".t12k-train.lock"


@dataclass
class TrainResult:
    val: dict
    test: dict
    best_epoch: int
    epochs_run: int
    out_dir: Path
    history: list[dict] = field(default_factory=list)


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


# ---- the pieces of a run -----------------------------------------------------------------


@dataclass
class SplitData:
    """One split's trailers: their features, and per subset (train, val, test) ids, rows and labels."""

    features: TrailerFeatures
    ids: dict[str, list[str]]
    rows: dict[str, torch.Tensor]
    labels: dict[str, np.ndarray]

    @classmethod
    def load(cls, cfg: TrainConfig, device: torch.device, progress: bool) -> SplitData:
        mtgc = read_mtgc(cfg.labels)
        subsets = {name: mtgc.subset(cfg.split, name) for name in SUBSETS}
        for name, (ids, _) in subsets.items():
            if not ids:
                raise T12kError(
                    f"split {cfg.split} of {cfg.labels} has no {name} trailers; "
                    "every split needs train (0), validation (1) and test (2) rows"
                )
        every = [m for name in SUBSETS for m in subsets[name][0]]
        data = load_trailers(every, cfg.image_store, cfg.video_store, cfg.feature_dtype, device, progress)
        return cls(
            data,
            {name: subsets[name][0] for name in SUBSETS},
            {name: data.rows(subsets[name][0]) for name in SUBSETS},
            {name: subsets[name][1].astype(np.float32) for name in SUBSETS},
        )

    @property
    def stores(self) -> dict[str, dict]:
        """Path and attrs of each store trained on, by role (recorded in the run's files)."""
        tables = {"image": self.features.image, "video": self.features.video}
        return {role: {"path": str(t.path), "attrs": t.attrs} for role, t in tables.items() if t is not None}


@dataclass
class EarlyStopping:
    """The best validation loss so far, its epoch and model state, and the epochs since then.

    Improvement is strict, as Lightning's checkpointing and early stopping; a NaN loss never
    improves. `stopped` turns true after `patience` epochs without improvement.
    """

    patience: int
    best_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    bad: int = 0
    stopped: bool = False

    def step(self, loss: float, epoch: int, model: torch.nn.Module) -> bool:
        """Record an epoch's validation loss; True when it is the best so far (its state is kept)."""
        improved = loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch, self.bad = loss, epoch, 0
            self.best_state = cpu_state(model.state_dict())
        else:
            self.bad += 1
        self.stopped = self.bad >= self.patience
        return improved

    def state(self) -> dict:
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "best_state": self.best_state,
            "stopped": self.stopped,
        }

    def load(self, st: dict) -> None:
        self.best_loss, self.best_epoch = float(st["best_loss"]), int(st["best_epoch"])
        self.bad, self.best_state, self.stopped = int(st["bad"]), st["best_state"], bool(st["stopped"])


class Trainer:
    """One training run: the data, the model with its optimizer and scheduler, the random
    generator of the snippets, early stopping and the history, over the epochs."""

    def __init__(self, cfg: TrainConfig, progress: bool):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.feat_device = resolve_device(cfg.features_device) if cfg.features_device else self.device
        self.out_dir = Path(cfg.out_dir)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.data = SplitData.load(cfg, self.feat_device, progress)
        self.y_train = torch.as_tensor(self.data.labels["train"], device=self.device)
        features = self.data.features
        self.fi = features.image.num_features if features.image is not None else None
        self.fv = features.video.num_features if features.video is not None else None
        self.model = DIViTA(self.fi, self.fv, cfg.fusion, cfg.aggregation, len(GENRES)).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, mode="min", patience=cfg.scheduler_patience)
        self.stopping = EarlyStopping(cfg.stop_patience)
        self.epoch = 0
        self.history: list[dict] = []

    # ---- saved files

    def _checkpoint(self, state: dict, epoch: int) -> dict:
        cfg = self.cfg
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "t12k_version": t12k.__version__,
            "model": state,
            "optimizer": copy.deepcopy(self.opt.state_dict()),
            "scheduler": self.sched.state_dict(),
            "epoch": epoch,
            "config": cfg.to_dict(),
            "stores": self.data.stores,
            "genres": list(GENRES),
            "image_features": self.fi,
            "video_features": self.fv,
            "fusion": cfg.fusion,
            "aggregation": cfg.aggregation,
            "snippet": cfg.snippet,
            "num_classes": len(GENRES),
        }

    def save_best(self) -> None:
        """checkpoint.pt: the best state so far."""
        best = self.stopping
        assert best.best_state is not None  # saved when a step improved on the best
        save_atomic(self._checkpoint(best.best_state, best.best_epoch), self.out_dir / "checkpoint.pt")

    def save_last(self) -> None:
        """last.pt: everything a resumed run needs to go on as this one would."""
        rng = rng_state()
        rng["generator"] = self.gen.get_state()
        state = {
            "format": STATE_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "t12k_version": t12k.__version__,
            "config": self.cfg.to_dict(),
            "stores": self.data.stores,
            "epoch": self.epoch,
            "model": cpu_state(self.model.state_dict()),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": rng,
            **self.stopping.state(),
            "history": self.history,
        }
        save_atomic(state, self.out_dir / "last.pt")

    def resume(self) -> None:
        """Take up the stopped run of the run folder from its last.pt."""
        st = load_state(self.out_dir / "last.pt", self.cfg, self.data.stores)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.gen.set_state(st["rng"]["generator"])
        set_rng_state(st["rng"])
        self.epoch = int(st["epoch"])
        self.stopping.load(st)
        self.history = [dict(h) for h in st["history"]]
        if self.stopping.best_state is not None and not (self.out_dir / "checkpoint.pt").is_file():
            raise T12kError(f"cannot resume the run in {self.out_dir}: checkpoint.pt is missing; run without --resume")

    # ---- epochs

    def train_epoch(self) -> tuple[float, float]:
        """One snippet per training trailer, in shuffled batches; the mean batch loss and the
        μAP of the training outputs as they came (dropout on, each trailer's random snippet),
        the running train μAP of the usual training curves."""
        cfg, data = self.cfg, self.data
        self.model.train()
        n_train = int(data.rows["train"].shape[0])
        order = torch.randperm(n_train, generator=self.gen)
        losses, probs = [], []
        for s in range(0, n_train, cfg.batch_size):
            batch = order[s : s + cfg.batch_size]
            rows = data.rows["train"][batch.to(self.feat_device)]
            image, video = data.features.train_batch(rows, cfg.snippet, self.gen, self.device)
            logits = self.model(image, video)
            loss = F.binary_cross_entropy_with_logits(logits, self.y_train[batch.to(self.device)])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            losses.append(loss.detach())
            probs.append((batch, torch.sigmoid(logits.detach()).float()))
        seen = torch.cat([b for b, _ in probs]).cpu().numpy()
        prob = torch.cat([p for _, p in probs]).cpu().numpy()
        train_muap = muap(np.asarray(self.data.labels["train"])[seen], prob)
        return float(torch.stack(losses).float().mean()), train_muap

    def evaluate(self, subset: str) -> tuple[float, np.ndarray]:
        """(reference validation loss, probabilities) of the trailers of `subset`."""
        cfg, data = self.cfg, self.data
        return evaluate(
            self.model, data.features, data.rows[subset], data.labels[subset], cfg.snippet, self.device, cfg.batch_size
        )

    def end_epoch(self, train: tuple[float, float], t0: float) -> dict:
        """Validate, step the scheduler, record the epoch, keep the best state and save last.pt."""
        val_loss, val_prob = self.evaluate("val")
        val_muap = muap(self.data.labels["val"], val_prob)
        lr = self.opt.param_groups[0]["lr"]
        self.sched.step(val_loss)
        train_loss, train_muap = train
        rec = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "train_muAP": train_muap,
            "val_loss": val_loss,
            "val_muAP": val_muap,
            "lr": lr,
            "seconds": time.time() - t0,
        }
        self.history.append(rec)
        runfiles.append_history(self.out_dir / "history.csv", rec)
        if self.stopping.step(val_loss, self.epoch, self.model):
            self.save_best()
        self.save_last()
        return rec

    def fit(self, progress: bool, on_epoch: Callable[[dict], None] | None) -> None:
        """Epochs from the one after the last done up to max_epochs, or until early stopping."""
        runfiles.write_history(self.out_dir / "history.csv", self.history)
        first, last, stopped = self.epoch + 1, self.cfg.max_epochs, self.stopping.stopped
        bar = tqdm(
            range(first, last + 1),
            desc="train",
            disable=not progress or stopped,
            unit="epoch",
            initial=first - 1,
            total=last,
        )
        for epoch in [] if stopped else bar:
            self.epoch = epoch
            t0 = time.time()
            rec = self.end_epoch(self.train_epoch(), t0)
            bar.set_postfix(
                loss=f"{rec['train_loss']:.4f}",
                val=f"{rec['val_loss']:.4f}",
                muAP=f"{100 * rec['val_muAP']:.1f}",
                best=self.stopping.best_epoch,
            )
            if on_epoch is not None:
                on_epoch(dict(rec))
            if self.stopping.stopped:
                break
        bar.close()
        self.epoch = self.history[-1]["epoch"] if self.history else 0

    # ---- results

    def finish(self) -> TrainResult:
        """Evaluate the best state on val and test and write predictions.csv and metrics.csv."""
        best = self.stopping
        if best.best_state is None:  # every validation loss was NaN
            best.best_state, best.best_epoch = cpu_state(self.model.state_dict()), self.epoch
            self.save_best()
        self.model.load_state_dict(best.best_state)
        results, preds = {}, []
        for name in ("val", "test"):
            _, prob = self.evaluate(name)
            results[name] = compute_metrics(self.data.labels[name], prob)
            preds.append((name, self.data.ids[name], self.data.labels[name], prob))
        runfiles.write_predictions(self.out_dir / "predictions.csv", preds)
        runfiles.write_metrics(
            self.out_dir / "metrics.csv", [(n, results[n]) for n in ("val", "test")], self.cfg.split, best.best_epoch
        )
        return TrainResult(results["val"], results["test"], best.best_epoch, self.epoch, self.out_dir, self.history)


def _run_folder(out_dir: str | os.PathLike) -> Path:
    """The run folder, created if needed; T12kError naming --out when it cannot be."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise T12kError(f"run folder {out} is a file; pass another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise T12kError(f"cannot create run folder {out} ({exc.strerror}); pass another --out") from None
    return out


def _start_fresh(out: Path, overwrite: bool) -> None:
    """Before a training that does not resume: refuse a folder holding another run, unless
    `overwrite`, and then remove that run's files (call with the folder locked)."""
    held = [name for name in ("checkpoint.pt", "last.pt") if (out / name).is_file()]
    if held and not overwrite:
        raise T12kError(
            f"run folder {out} already holds a training run ({held[0]}); pass --resume to continue it, "
            "--overwrite to replace it, or another --out"
        )
    if overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)


def train(
    config: TrainConfig | None = None,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    **settings: Any,
) -> TrainResult:
    """Train the DIViTA head on one split, keep the best-validation-loss state, evaluate it.

    `settings` override fields of `config`. `resume`: continue the stopped run in
    ``cfg.out_dir`` from its ``last.pt`` (same settings required, except those in
    RESUMABLE_CHANGES; a larger ``max_epochs`` extends a finished run unless early stopping
    ended it). Without it, a run folder that holds a run (a checkpoint.pt or last.pt) is
    refused unless `overwrite`, which removes that run's files first. The run folder is
    locked for the whole training: a second training into it fails at once. `on_epoch` is
    called with each epoch's history record after that epoch's state is saved (progress
    reporting; an exception raised there stops the run, which ``resume`` can then continue).
    """
    cfg = dataclasses.replace(config, **settings) if config is not None else TrainConfig(**settings)
    cfg.validate()
    if resume and overwrite:
        raise T12kError("pass --resume to continue the run in the run folder or --overwrite to replace it, not both")
    out = _run_folder(cfg.out_dir)
    threads = torch.get_num_threads()
    with runfiles.folder_lock(out, LOCK_NAME, "run folder", "training"):
        runfiles.remove_leftovers(out, RUN_FILES)
        if not resume:
            _start_fresh(out, overwrite)
        try:
            if cfg.num_threads:
                torch.set_num_threads(int(cfg.num_threads))
            trainer = Trainer(cfg, progress)
            if resume:
                trainer.resume()
            trainer.fit(progress, on_epoch)
            return trainer.finish()
        finally:
            torch.set_num_threads(threads)


# ---- prediction ----------------------------------------------------------------------------


def _check_features(model: DIViTA, image_feats: np.ndarray | None, video_feats: np.ndarray | None) -> None:
    for name, need, x, nf in (
        ("image", model.uses_image, image_feats, model.image_features),
        ("video", model.uses_video, video_feats, model.video_features),
    ):
        if need and x is None:
            raise T12kError(
                f"this model needs {name} features; extract them with the {name} backbone the model was trained on"
            )
        if need and x is not None and (np.ndim(x) != 2 or np.shape(x)[1] != nf):
            raise T12kError(
                f"{name} features have shape {np.shape(x)}, the model expects (clips, {nf}); "
                "extract them with the backbone the model was trained on"
            )


@torch.no_grad()
def predict_features(
    model: DIViTA, image_feats: np.ndarray | None, video_feats: np.ndarray | None, snippet: int = 30
) -> np.ndarray:
    """Genre probabilities (L,) of one trailer from its clip features (all snippets averaged)."""
    _check_features(model, image_feats, video_feats)
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
