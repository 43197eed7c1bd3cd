"""`mtgc.csv`: labels and the three evaluation splits of Trailers12k.

Columns: `mid`, the ten genres (0/1) in the published order, `split0`, `split1`, `split2`
(0 train, 1 validation, 2 test). Extra columns are ignored on read.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t12k import GENRES
from t12k.errors import T12kError

SPLIT_COLUMNS = ("split0", "split1", "split2")
SUBSETS = {"train": 0, "val": 1, "test": 2}


@dataclass
class MTGC:
    """Labels (n, 10) and splits (n, 3) for ids, in file order."""

    ids: list[str]
    labels: np.ndarray  # int8 (n, 10)
    splits: np.ndarray  # int8 (n, 3)

    def subset(self, split: int, subset: str) -> tuple[list[str], np.ndarray]:
        """Ids and labels of `subset` ('train', 'val', 'test') in split `split` (0..2)."""
        if split not in (0, 1, 2):
            raise T12kError(f"split {split} does not exist; use 0, 1 or 2")
        mask = self.splits[:, split] == SUBSETS[subset]
        return [m for m, k in zip(self.ids, mask) if k], self.labels[mask]


def read_mtgc(path: str | os.PathLike) -> MTGC:
    """Read and validate an mtgc.csv; any problem raises T12kError naming the line."""
    p = Path(path)
    if not p.is_file():
        raise T12kError(f"labels file {p} not found; pass --labels with the path of an mtgc.csv")
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise T12kError(f"{p} is not a readable CSV ({exc}); give a UTF-8 mtgc.csv") from exc
    if not header:
        raise T12kError(f"{p} is empty; it needs a header with mid, the ten genres and split0..split2")
    header = [h.strip() for h in header]
    needed = ("mid",) + GENRES + SPLIT_COLUMNS
    missing = [c for c in needed if c not in header]
    if missing:
        raise T12kError(f"{p} lacks column(s) {', '.join(missing)}; an mtgc.csv has mid, "
                        f"{', '.join(GENRES)}, split0, split1, split2")
    col = {c: header.index(c) for c in needed}
    ids, labels, splits, seen = [], [], [], set()
    for lineno, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < len(header):
            raise T12kError(f"{p} line {lineno}: {len(row)} fields, header has {len(header)}; fix the row")
        mid = row[col["mid"]].strip()
        if not mid:
            raise T12kError(f"{p} line {lineno}: empty mid; every row needs an id")
        if mid in seen:
            raise T12kError(f"{p} line {lineno}: duplicate mid {mid!r}; ids must be unique")
        seen.add(mid)
        try:
            lab = [int(row[col[g]]) for g in GENRES]
            spl = [int(row[col[s]]) for s in SPLIT_COLUMNS]
        except ValueError:
            raise T12kError(f"{p} line {lineno}: genre and split values must be integers; fix the row") from None
        if any(v not in (0, 1) for v in lab):
            raise T12kError(f"{p} line {lineno}: genre values must be 0 or 1; fix the row")
        if any(v not in (0, 1, 2) for v in spl):
            raise T12kError(f"{p} line {lineno}: split values must be 0 (train), 1 (val) or 2 (test)")
        ids.append(mid)
        labels.append(lab)
        splits.append(spl)
    if not ids:
        raise T12kError(f"{p} has a header but no rows; add labelled trailers")
    return MTGC(ids, np.asarray(labels, np.int8).reshape(-1, len(GENRES)),
                np.asarray(splits, np.int8).reshape(-1, 3))


def write_mtgc(path: str | os.PathLike, data: MTGC) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(("mid",) + GENRES + SPLIT_COLUMNS)
        for mid, lab, spl in zip(data.ids, data.labels, data.splits):
            w.writerow([mid, *map(int, lab), *map(int, spl)])
    os.replace(tmp, p)


def stratified_splits(labels: np.ndarray, num_splits: int = 3, proportions=(0.7, 0.1, 0.2),
                      seed: int = 0) -> np.ndarray:
    """Assign every example to train/val/test, `num_splits` times, by iterative stratification.

    First-order iterative stratification (Sechidis et al., 2011): take the rarest label's
    examples first and give each to the subset that most lacks that label (ties: the subset
    that most lacks examples, then at random). Returns int8 (n, num_splits).
    """
    labels = np.asarray(labels, bool)
    n, k = labels.shape
    rng = np.random.default_rng(seed)
    props = np.asarray(proportions, float)
    out = np.zeros((n, num_splits), np.int8)
    for s in range(num_splits):
        order = rng.permutation(n)
        remaining = np.ones(n, bool)
        want_n = props * n
        want_l = props[:, None] * labels.sum(0)[None, :]
        while remaining.any():
            counts = labels[remaining].sum(0)
            if counts.max() == 0:  # examples without labels
                for i in order[remaining[order]]:
                    j = int(np.argmax(want_n))
                    out[i, s] = j
                    want_n[j] -= 1
                    remaining[i] = False
                break
            counts = np.where(counts == 0, np.iinfo(np.int64).max, counts)
            lab = int(np.argmin(counts))
            for i in order[(remaining & labels[:, lab])[order]]:
                best = np.flatnonzero(want_l[:, lab] == want_l[:, lab].max())
                if len(best) > 1:
                    best = best[want_n[best] == want_n[best].max()]
                j = int(rng.choice(best))
                out[i, s] = j
                want_n[j] -= 1
                want_l[j] -= labels[i]
                remaining[i] = False
        # Small collections: make sure no subset is empty (move one example from the
        # subset that is furthest above its target).
        for j in range(len(props)):
            if n >= len(props) and not (out[:, s] == j).any():
                counts = np.bincount(out[:, s], minlength=len(props))
                donor = int(np.argmax(counts - props * n))
                out[rng.choice(np.flatnonzero(out[:, s] == donor)), s] = j
    return out
