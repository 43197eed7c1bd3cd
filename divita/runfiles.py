"""The files of a run folder besides the torch ones: the CSV files written by `train` and read
back by `experiment`, ``history.csv`` (one row per epoch), ``metrics.csv`` (val and test, x100,
2 decimals) and ``predictions.csv`` (every val and test trailer's labels and probabilities);
the lock that keeps one training (or experiment) per folder; and the temporary files every
whole-or-nothing write goes through."""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from t12k import GENRES
from t12k.divita.metrics import METRIC_NAMES
from t12k.storage.folders import PASS_ANOTHER
from t12k.storage.locks import FolderInUse as FolderInUse  # caught by experiment
from t12k.storage.locks import hold_folder

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_muAP", "lr", "train_muAP")
TMP_SUFFIX = ".tmp"  # temporary files are named .{name}.{random}.tmp beside their target


# ---- whole files and one writer per folder ------------------------------------------------------


def replace_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file of a name of its own beside `path`, then move it to
    `path`: readers see the old file or the new one, never a part, and two writers never
    share a temporary file. The temporary file is removed if `write` fails."""
    # pid and random bytes make the name unique; created by `write` as any file (umask applies)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_leftovers(folder: Path, names: Iterable[str]) -> None:
    """Remove the temporary files of `names` a killed run left in `folder` (call with the
    folder locked: then no other writer has a temporary file there)."""
    for name in names:
        for p in folder.glob(f".{name}.*{TMP_SUFFIX}"):
            p.unlink(missing_ok=True)


@contextmanager
def folder_lock(folder: Path, name: str, what: str, user: str) -> Iterator[None]:
    """Hold `folder` for this process while the block runs (`storage.locks.hold_folder`, the
    lock file `name`): another process (or another open in this one) gets FolderInUse at once
    naming the folder, the holder's pid and the fix."""

    def busy(pid: str) -> str:
        return f"{what} {folder} is in use by another {user} (pid {pid}); wait for it or {PASS_ANOTHER}"

    with hold_folder(folder, name, busy, what):
        yield


# ---- CSV files ----------------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> None:
    """Write `header` and `rows` through a temporary file, so `path` is always whole."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)

    replace_atomic(path, write)


# ---- history.csv -------------------------------------------------------------------------------


def history_row(h: dict) -> list:
    train_muap = "" if h.get("train_muAP") is None else f"{h['train_muAP']:.6f}"  # (runs before it was kept)
    return [
        h["epoch"],
        f"{h['train_loss']:.6f}",
        f"{h['val_loss']:.6f}",
        f"{h['val_muAP']:.6f}",
        f"{h['lr']:.3g}",
        train_muap,
    ]


def write_history(path: Path, history: list[dict]) -> None:
    write_csv(path, list(HISTORY_COLUMNS), [history_row(h) for h in history])


def append_history(path: Path, record: dict) -> None:
    with open(path, "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(history_row(record))


def read_history(path: Path) -> dict[str, list[float]]:
    """The columns of a history.csv as floats (empty when there is no file)."""
    cols: dict[str, list[float]] = {}
    if not path.is_file():
        return cols
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                cols.setdefault(k, []).append(float(v) if v not in ("", None) else float("nan"))
    return cols


# ---- metrics.csv -------------------------------------------------------------------------------


def write_metrics(path: Path, rows: list[tuple[str, dict]], split: int, best_epoch: int) -> None:
    """One row per subset: the summaries and per-genre areas, x100 with 2 decimals."""
    write_csv(
        path,
        ["subset", "split", "epoch", *METRIC_NAMES, *GENRES],
        [
            [
                subset,
                split,
                best_epoch,
                *(f"{100 * m[k]:.2f}" for k in METRIC_NAMES),
                *(f"{100 * m['per_genre'][g]:.2f}" for g in GENRES),
            ]
            for subset, m in rows
        ],
    )


def read_metrics(path: Path) -> tuple[dict[str, dict[str, float]], int]:
    """(subset -> metric or genre -> value x100, the best epoch) of a metrics.csv."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = {r["subset"]: r for r in csv.DictReader(fh)}
    keys = list(METRIC_NAMES) + list(GENRES)
    out = {s: {k: float(rows[s][k]) for k in keys} for s in ("val", "test")}
    return out, int(rows["test"]["epoch"])


# ---- predictions.csv ---------------------------------------------------------------------------


def write_predictions(path: Path, rows: list[tuple[str, list[str], np.ndarray, np.ndarray]]) -> None:
    """subset, mid, the labels (y_{genre}) and probabilities (p_{genre}) of every trailer."""
    write_csv(
        path,
        ["subset", "mid", *(f"y_{g}" for g in GENRES), *(f"p_{g}" for g in GENRES)],
        [
            [subset, mid, *(int(v) for v in yy), *(f"{v:.6f}" for v in pp)]
            for subset, ids, y, prob in rows
            for mid, yy, pp in zip(ids, y, prob)
        ],
    )


def read_predictions(path: Path, subset: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities (n, L) of the trailers of `subset` in a predictions.csv."""
    ys, ps = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["subset"] == subset:
                ys.append([int(row[f"y_{g}"]) for g in GENRES])
                ps.append([float(row[f"p_{g}"]) for g in GENRES])
    return np.asarray(ys, int).reshape(-1, len(GENRES)), np.asarray(ps, float).reshape(-1, len(GENRES))
