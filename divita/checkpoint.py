"""The files a training run saves with torch: ``checkpoint.pt`` (the best state, what `predict`
loads) and ``last.pt`` (the state after the latest epoch, what ``--resume`` continues from).

Both are dicts of tensors and plain values, read back with ``weights_only=True``.
``checkpoint.pt``: format, the model's state, optimizer, scheduler, epoch, settings, the attrs
of the stores trained on and what rebuilds the model. ``last.pt``: the same settings and
stores, the model, optimizer and scheduler states, the random states, the early-stopping state
and the history, so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from t12k.device import resolve_device
from t12k.divita.config import TrainConfig
from t12k.divita.model import DIViTA
from t12k.divita.runfiles import replace_atomic
from t12k.errors import T12kError

CHECKPOINT_FORMAT = "t12k-divita"
CHECKPOINT_VERSION = 1
STATE_FORMAT = "t12k-divita-state"  # last.pt: everything needed to resume
# Settings that may change when a run is resumed (they do not change what is computed, or,
# for max_epochs, only how far it goes); every other setting must match the stopped run.
RESUMABLE_CHANGES = ("max_epochs", "device", "features_device", "num_threads", "out_dir")
_INPUT_PATHS = ("image_store", "video_store", "labels")


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save through a temporary file of its own, so `path` is always whole."""
    replace_atomic(path, lambda tmp: torch.save(obj, tmp))


def cpu_state(state: dict) -> dict:
    """A copy of a state dict on the CPU (kept while the model goes on training)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def rng_state() -> dict:
    """torch's global random states (CPU, and CUDA when it is in use)."""
    rng: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _same_path(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def first_difference(saved: dict, now: dict, ignore: tuple[str, ...] = ()) -> str | None:
    """The first setting of `now` (a `TrainConfig.to_dict()`) whose value is not the one in
    `saved`, leaving out those in `ignore`; store and label paths are compared resolved."""
    for key, value in now.items():
        if key in ignore:
            continue
        old = saved.get(key)
        if not (_same_path(old, value) if key in _INPUT_PATHS else old == value):
            return key
    return None


def load_state(path: Path, cfg: TrainConfig, stores: dict) -> dict:
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
    key = first_difference(saved, now, RESUMABLE_CHANGES)
    if key is not None:
        raise T12kError(
            f"cannot resume the run in {path.parent}: it was started with {key}={saved.get(key)!r}, "
            f"now {key}={now[key]!r}; {fix}"
        )
    for role, info in stores.items():
        old = state["stores"].get(role, {}).get("attrs")
        if old != info["attrs"]:
            raise T12kError(
                f"cannot resume the run in {path.parent}: the {role} store {info['path']} "
                "changed since the run started (its attrs differ); run without --resume"
            )
    return state


def saved_config(run_dir: Path) -> dict | None:
    """The settings recorded in a run folder's checkpoint.pt (None when it cannot be read)."""
    try:
        return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["config"]
    except Exception:
        return None


def load_model(checkpoint_path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DIViTA, dict]:
    """The trained model (eval mode, on `device`) and the checkpoint's other entries."""
    p = Path(checkpoint_path)
    fix = "pass the checkpoint.pt of a `t12k train` run folder"
    if p.is_dir():
        inside = f"; pass {p / 'checkpoint.pt'}" if (p / "checkpoint.pt").is_file() else f", not a checkpoint; {fix}"
        raise T12kError(f"checkpoint {p} is a folder{inside}")
    if not p.is_file():
        raise T12kError(f"checkpoint {p} not found; {fix}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or arbitrary pickles
        raise T12kError(f"{p} is not a t12k checkpoint ({type(exc).__name__}); {fix}") from None
    if isinstance(ckpt, dict) and ckpt.get("format") == STATE_FORMAT:
        raise T12kError(f"{p} is the state `t12k train --resume` continues from, not the best model; {fix}")
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
