"""The settings of a training run: `TrainConfig`, the one place of their defaults, help texts and
choices, and the checks that turn settings written in a file (JSON, YAML) into typed values.

Each field the command line exposes carries its help text (and its choices, taken from the
registries: `AGGREGATIONS`, `FUSIONS`, the feature dtypes of `divita.data`) in its metadata.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t12k.device import device_setting
from t12k.errors import T12kError
from t12k.settings import broken_rule, check_fields, setting

# The names of the registries `divita.model.AGGREGATIONS`, `divita.model.FUSIONS` and
# `divita.data.FEATURE_DTYPES`, held here without torch so that the command line builds its
# options without importing it (tests/test_startup_imports.py checks that they agree).
AGGREGATIONS = ("tsfm", "gru", "conv", "savg", "ctt")
FUSIONS = ("early", "late")
FEATURE_DTYPES = ("float32", "float16", "bfloat16")

SPLITS = (0, 1, 2)  # the three splits of an mtgc.csv
PATH_FIELDS = ("image_store", "video_store", "labels", "out_dir")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a training run needs (keyword arguments); saved in the checkpoint."""

    image_store: str | os.PathLike | None = setting(
        None, "store of image (2D) features, e.g. trailers_i_shufflenet_fpc24.zarr"
    )
    video_store: str | os.PathLike | None = setting(
        None, "store of video (3D) features, e.g. trailers_k_r2plus1d_fps24_fpc24.zarr"
    )
    labels: str | os.PathLike = field(metadata={"help": "mtgc.csv with labels and splits"})
    split: int = setting(0, "which of the three splits", choices=SPLITS)
    out_dir: str | os.PathLike = field(
        metadata={"help": "run folder (default: runs/{store names}_split{N})", "flag": "--out"}
    )
    aggregation: str = setting(
        "tsfm",
        "clip aggregation: transformer, GRU, Conv1D, plain average, or ctt (the CTT-MMC-A "
        "baseline head of the paper's Table 6)",
        choices=tuple(AGGREGATIONS),
    )
    fusion: str = setting(
        "late", "how image and video heads combine when both stores are given", choices=tuple(FUSIONS)
    )
    snippet: int = setting(30, "clips per snippet", min=1)
    batch_size: int = setting(32, "trailers per training batch", min=1)
    lr: float = setting(1e-4, "AdamW learning rate", above=0)
    # torch.optim.AdamW's default (the reference does not set it)
    weight_decay: float = setting(0.01, "AdamW weight decay (torch's default, as the reference)")
    max_epochs: int = setting(100, "most epochs", min=1)
    scheduler_patience: int = setting(10, "ReduceLROnPlateau patience (epochs)")
    stop_patience: int = setting(20, "early stopping patience (epochs)")
    seed: int = setting(0, "random seed")
    device: str = device_setting()
    num_threads: int | None = setting(None, "CPU threads torch may use (default: torch's choice)")
    feature_dtype: str = setting(
        "float32",
        "dtype of the features held in memory (float16 halves the memory)",
        choices=tuple(FEATURE_DTYPES),
    )
    features_device: str | None = setting(
        None,
        "where the features are held (default: the training device); "
        "e.g. cpu to train on a GPU with features in host memory",
    )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in PATH_FIELDS:
            d[k] = None if d[k] is None else str(d[k])
        return d

    def validate(self) -> None:
        """T12kError naming the setting and the fix for one no training could use: no store, or
        a choice or range the fields carry (`check_fields`)."""
        if self.image_store is None and self.video_store is None:
            raise T12kError("no feature store given; pass an image store, a video store or both")
        check_fields(self)

    def default_out_dir(self) -> Path:
        """``runs/{store names}_split{N}``: the run folder `t12k train` uses when --out is not given."""
        names = [Path(s).name.removesuffix(".zarr") for s in (self.image_store, self.video_store) if s]
        return Path("runs") / f"{'+'.join(names)}_split{self.split}"


# ---- settings written in files ------------------------------------------------------------------

TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


class _Wrong(ValueError):
    """A value that does not fit its field; the message says what the field expects."""


def _kinds(hint: Any) -> tuple[set[type], bool]:
    """The types a field annotation allows (int, float, bool, str, os.PathLike) and whether None is one."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return {a for a in args if a is not type(None)}, type(None) in args


_INT = re.compile(r"[+-]?\d+")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    raise _Wrong("an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    raise _Wrong("a number (e.g. 0.001 or 1e-4)")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    raise _Wrong("true or false")


def _to_str(value: Any, path: bool) -> str | os.PathLike:
    if isinstance(value, str) or (path and isinstance(value, os.PathLike)):
        return value
    raise _Wrong("a path" if path else "a string")


def coerce(value: Any, hint: Any) -> Any:
    """`value` as the type annotation `hint` asks for (int, float, bool, str, a path, or None when
    optional); _Wrong says what is expected."""
    kinds, optional = _kinds(hint)
    if value is None:
        if optional:
            return None
        raise _Wrong("a value (not empty)")
    try:
        if bool in kinds:
            return _to_bool(value)
        if int in kinds:
            return _to_int(value)
        if float in kinds:
            return _to_float(value)
        return _to_str(value, os.PathLike in kinds)
    except _Wrong as exc:
        raise _Wrong(f"{exc}{' or null' if optional else ''}") from None


def check_field(cls: type, name: str, value: Any, where: str) -> Any:
    """The value of dataclass field `name` of `cls` as the field's type, within its choices and
    range (the rule in its metadata: `settings.broken_rule`); T12kError naming `where`, the field
    and what it expects otherwise."""
    field_ = {f.name: f for f in dataclasses.fields(cls)}[name]
    try:
        out = coerce(value, typing.get_type_hints(cls)[name])
        must = broken_rule(field_.metadata, out)
        if must is not None:
            raise _Wrong(must)
    except _Wrong as exc:
        raise T12kError(f"{where}: {name} {value!r} is not valid; {name} must be {exc}") from None
    return out


def check_setting(name: str, value: Any, where: str) -> Any:
    """The value of training setting `name` as its TrainConfig field's type, within its choices.

    A value that does not fit raises T12kError naming `where` (the file and configuration), the
    setting and what it expects: PyYAML reads ``lr: 1e-4`` as the string '1e-4', which becomes
    the float 1e-4 here, while ``max_epochs: ten`` is refused.
    """
    if name not in TRAIN_FIELDS:
        raise T12kError(f"{where}: unknown training setting {name!r}; use {', '.join(TRAIN_FIELDS)}")
    return check_field(TrainConfig, name, value, where)


def check_settings(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`values` (training settings by name) checked and converted by `check_setting`."""
    return {name: check_setting(name, value, where) for name, value in values.items()}
