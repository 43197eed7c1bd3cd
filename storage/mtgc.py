"""`mtgc.csv`: labels and the three evaluation splits of Trailers12k, and how to make them.

Columns: `mid`, the ten genres (0/1) in the published order, `split0`, `split1`, `split2`
(0 train, 1 validation, 2 test). Extra columns are ignored on read.

`stratified_splits` makes the three 70/10/20 splits of a new labelled collection with
second-order iterative stratification (SOIS, as the paper); `split_report` measures how far
each subset's genre and genre-pair distributions are from the whole (`t12k splits`).
"""

from __future__ import annotations

import csv
import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t12k import GENRES
from t12k.errors import T12kError

SPLIT_COLUMNS = ("split0", "split1", "split2")
SUBSETS = {"train": 0, "val": 1, "test": 2}
# How a user's CSV is read: UTF-8, with the byte-order mark some editors (Excel's "CSV UTF-8")
# put first dropped, so the first column is named `mid`, not '\ufeffmid'.
CSV_ENCODING = "utf-8-sig"
# Shares of train, val, test (or any number of subsets), summing to 1.
Proportions = Sequence[float] | np.ndarray


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
        with open(p, newline="", encoding=CSV_ENCODING) as fh:
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
        raise T12kError(
            f"{p} lacks column(s) {', '.join(missing)}; an mtgc.csv has mid, "
            f"{', '.join(GENRES)}, split0, split1, split2"
        )
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
    return MTGC(ids, np.asarray(labels, np.int8).reshape(-1, len(GENRES)), np.asarray(splits, np.int8).reshape(-1, 3))


def write_mtgc(path: str | os.PathLike, data: MTGC) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(("mid",) + GENRES + SPLIT_COLUMNS)
        for mid, lab, spl in zip(data.ids, data.labels, data.splits):
            w.writerow([mid, *map(int, lab), *map(int, spl)])
    os.replace(tmp, p)


def read_labels(
    path: str | os.PathLike, id_field: str = "mid", genres_field: str = "genres"
) -> tuple[list[str], np.ndarray]:
    """Ids and (n, 10) 0/1 labels of a labelled collection (a CSV file), for `t12k splits`.

    Either the ten genre columns (0/1, as in mtgc.csv; other columns such as old split
    columns are ignored) or one `genres_field` column of genre names separated by ``|``,
    ``,`` or ``;`` (case-insensitive; "Science Fiction" and "sci fi" mean sci-fi).
    """
    p = Path(path)
    if not p.is_file():
        raise T12kError(f"labels file {p} not found; give a CSV with an id column and the genres")
    try:
        with open(p, newline="", encoding=CSV_ENCODING) as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise T12kError(f"{p} is not a readable CSV ({exc}); give a UTF-8 CSV file") from exc
    if not rows:
        raise T12kError(f"{p} has no rows; give a CSV with a header and one row per trailer")
    header = [h.strip() for h in rows[0].keys() if h is not None]
    if id_field not in header:
        raise T12kError(
            f"{p} has no id column {id_field!r} (columns: {', '.join(header)}); "
            "pass --id-field with the name of the id column"
        )
    aliases = {g: g for g in GENRES} | {"science fiction": "sci-fi", "sci fi": "sci-fi", "scifi": "sci-fi"}
    by_columns = all(g in header for g in GENRES)
    if not by_columns and genres_field not in header:
        raise T12kError(
            f"{p} has neither the ten genre columns ({', '.join(GENRES)}) nor a "
            f"{genres_field!r} column of genre names; add one (see --genres-field)"
        )
    ids, labels, seen = [], [], set()
    for lineno, row in enumerate(rows, start=2):
        if None in row:
            raise T12kError(
                f"{p} line {lineno}: more fields than the header has; quote a list of genres "
                'that contains commas ("drama,romance") or separate the names with |'
            )
        row = {k.strip(): (v or "").strip() for k, v in row.items()}
        mid = row.get(id_field, "")
        if not mid:
            raise T12kError(f"{p} line {lineno}: empty {id_field}; every row needs an id")
        if mid in seen:
            raise T12kError(f"{p} line {lineno}: duplicate id {mid!r}; ids must be unique")
        seen.add(mid)
        y = np.zeros(len(GENRES), np.int8)
        if by_columns:
            for j, g in enumerate(GENRES):
                if row[g] not in ("0", "1"):
                    raise T12kError(f"{p} line {lineno}: {g} is {row[g]!r}; genre values must be 0 or 1")
                y[j] = int(row[g])
        else:
            for name in filter(None, (t.strip().lower() for t in re.split(r"[|,;]", row[genres_field]))):
                if name not in aliases:
                    raise T12kError(f"{p} line {lineno}: unknown genre {name!r}; use {', '.join(GENRES)}")
                y[GENRES.index(aliases[name])] = 1
        ids.append(mid)
        labels.append(y)
    return ids, np.stack(labels)


def label_combinations(labels: np.ndarray, order: int = 2) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Which label combinations of size `order` (with repetition) each example has.

    Returns a bool (n, K) matrix and the K combinations (tuples of label indices, sorted,
    repetition allowed), as scikit-multilearn's ``get_combination_wise_output_matrix``:
    for order 2 the combinations are every pair (i, j), i <= j, so (i, i) stands for
    label i alone and an example with one label still has one combination.
    """
    labels = np.asarray(labels, bool)
    combos = list(itertools.combinations_with_replacement(range(labels.shape[1]), order))
    matrix = (
        np.stack([labels[:, sorted(set(c))].all(1) for c in combos], axis=1)
        if combos
        else np.zeros((labels.shape[0], 0), bool)
    )
    return matrix, combos


def _pick(values: np.ndarray, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The candidates whose value is the largest (float ties within 1e-9)."""
    v = values[candidates]
    return candidates[v >= v.max() - 1e-9]


def iterative_stratification(
    labels: np.ndarray,
    proportions: Proportions = (0.7, 0.1, 0.2),
    order: int = 2,
    rng: np.random.Generator | int | None = 0,
    cap_sizes: bool = True,
) -> np.ndarray:
    """Subset number (0..len(proportions)-1) of every example, by iterative stratification
    of label combinations of size `order`.

    ``order=2`` is the second-order iterative stratification (SOIS) of Szymański and
    Kajdanowicz ("A network perspective on stratification of multi-label data", 2017) that
    the Trailers12k splits were made with; ``order=1`` is Sechidis et al. (2011). The
    algorithm, as scikit-multilearn's ``IterativeStratification``:

    1. every subset wants ``proportion * count`` examples of each label combination and
       ``proportion * n`` examples in all;
    2. take the combination with the fewest examples still unassigned (ties at random);
       give each of those examples (in random order) to the subset that wants that
       combination most; ties go to the subset that wants the most examples, then at
       random; the subset's wants of every combination of that example drop by one;
    3. repeat until every example with a label is assigned; examples without any label go
       to the subsets that want the most examples.

    `cap_sizes` (t12k's addition, on by default): in step 2 a subset that already holds its
    share of examples takes no more while another subset still has room. On small or
    densely labelled collections plain SOIS can overfill a small subset (e.g. 9 validation
    examples of 50 instead of 5); on a collection of Trailers12k's size both give the same
    label and label-pair distributions. ``cap_sizes=False`` is scikit-multilearn's behaviour.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    combos, _ = label_combinations(labels, order)
    n = combos.shape[0]
    props = np.asarray(proportions, float)
    if props.ndim != 1 or len(props) < 1 or (props < 0).any() or not np.isclose(props.sum(), 1.0):
        raise T12kError(
            f"subset proportions {tuple(proportions)} must be non-negative and sum to 1; pass e.g. 0.7,0.1,0.2"
        )
    cf = combos.astype(np.float64)
    want = props[:, None] * cf.sum(0)[None, :]  # (subsets, K)
    want_n = props * n
    left = combos.sum(0).astype(np.int64)  # unassigned examples per combination
    todo = np.ones(n, bool)
    out = np.full(n, -1, np.int64)
    everyone = np.arange(len(props))

    def give(i: int, subsets: np.ndarray) -> None:
        if len(subsets) > 1:
            subsets = _pick(want_n, subsets, rng)
        j = int(subsets[0] if len(subsets) == 1 else rng.choice(subsets))
        out[i] = j
        todo[i] = False
        want[j] -= cf[i]
        want_n[j] -= 1
        left[:] -= combos[i]

    while (left > 0).any():
        live = np.flatnonzero(left > 0)
        rarest = live[left[live] == left[live].min()]
        k = int(rarest[0] if len(rarest) == 1 else rng.choice(rarest))
        for i in rng.permutation(np.flatnonzero(todo & combos[:, k])):
            room = everyone[want_n > 0.5] if cap_sizes else everyone
            give(int(i), _pick(want[:, k], room if len(room) else everyone, rng))
    for i in rng.permutation(np.flatnonzero(todo)):  # examples without labels
        give(int(i), everyone)
    return out


def stratified_splits(
    labels: np.ndarray,
    num_splits: int = 3,
    proportions: Proportions = (0.7, 0.1, 0.2),
    seed: int = 0,
    order: int = 2,
    cap_sizes: bool = True,
) -> np.ndarray:
    """Assign every example to train/val/test (0/1/2), `num_splits` times: int8 (n, num_splits).

    Each split is one run of `iterative_stratification` (second-order, SOIS, by default)
    with its own random stream drawn from `seed`, so the splits differ. Small collections:
    a subset left empty gets one example from the subset furthest above its target size.
    """
    labels = np.asarray(labels, bool)
    n = labels.shape[0]
    props = np.asarray(proportions, float)
    rng = np.random.default_rng(seed)
    out = np.zeros((n, num_splits), np.int8)
    for s in range(num_splits):
        out[:, s] = iterative_stratification(labels, props, order, rng, cap_sizes)
        for j in range(len(props)):
            if n >= len(props) and props[j] > 0 and not (out[:, s] == j).any():
                counts = np.bincount(out[:, s], minlength=len(props))
                donor = int(np.argmax(counts - props * n))
                out[rng.choice(np.flatnonzero(out[:, s] == donor)), s] = j
    return out


def parse_proportions(text: str) -> tuple[float, float, float]:
    """'0.7,0.1,0.2' -> (0.7, 0.1, 0.2): the train, validation and test shares."""
    try:
        props = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        raise T12kError(f"--proportions {text!r} is not a list of numbers; pass e.g. 0.7,0.1,0.2") from None
    if len(props) != 3:
        raise T12kError(f"--proportions {text!r} must give three shares (train, validation, test)")
    return props[0], props[1], props[2]


@dataclass(frozen=True)
class SplitsConfig:
    """How `t12k splits` draws the three train/validation/test splits of an mtgc.csv."""

    proportions: tuple[float, float, float] = field(
        default=(0.7, 0.1, 0.2),
        metadata={"help": "train,validation,test shares", "parse": parse_proportions, "metavar": "TRAIN,VAL,TEST"},
    )
    num_splits: int = field(default=3, metadata={"help": "how many splits (mtgc.csv has three)"})
    order: int = field(
        default=2,
        metadata={
            "help": "2: second-order (label pairs, SOIS); 1: first-order iterative stratification",
            "choices": (1, 2),
        },
    )
    size_cap: bool = field(
        default=True,
        metadata={
            "help": "plain SOIS as scikit-multilearn: a subset may take more examples than its share",
            "flag": "--no-size-cap",
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self) -> None:
        if self.num_splits != len(SPLIT_COLUMNS):
            raise T12kError(f"--num-splits {self.num_splits}: mtgc.csv holds exactly three splits; use 3")
        if self.order not in (1, 2):
            raise T12kError(f"--order {self.order}: use 1 (first-order) or 2 (second-order, SOIS)")

    def split(self, labels: np.ndarray) -> np.ndarray:
        """int8 (n, num_splits): 0 train, 1 validation, 2 test for every example and split."""
        return stratified_splits(
            labels, self.num_splits, self.proportions, seed=self.seed, order=self.order, cap_sizes=self.size_cap
        )


def make_splits(
    labels_csv: str | os.PathLike,
    out: str | os.PathLike,
    config: SplitsConfig,
    *,
    id_field: str = "mid",
    genres_field: str = "genres",
    overwrite: bool = False,
) -> tuple[MTGC, list[dict[str, Any]]]:
    """`t12k splits`: read a labelled collection, draw its splits, write them as an mtgc.csv at
    `out`; returns the table and how far each subset is from the whole (`split_report`)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise T12kError(f"{out} already exists; pass --overwrite to replace it or --out another path")
    ids, labels = read_labels(labels_csv, id_field, genres_field)
    data = MTGC(ids, labels, config.split(labels))
    write_mtgc(out, data)
    return data, split_report(labels, data.splits, config.proportions)


# ---- how far each subset is from the whole ------------------------------------------------


def _odds_deviation(pos: np.ndarray, size: np.ndarray, whole_pos: np.ndarray, whole_n: int) -> np.ndarray:
    """|pos/(size-pos) - D/(n-D)| per subset and label (the terms of Sechidis' LD); NaN where
    a ratio is undefined (a subset or the whole where every example has the label)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sub = pos / (size[:, None] - pos)
        whole = whole_pos / (whole_n - whole_pos)
        dev = np.abs(sub - whole[None, :])
    dev[~np.isfinite(dev)] = np.nan
    return dev


def split_report(
    labels: np.ndarray,
    splits: np.ndarray,
    proportions: Proportions = (0.7, 0.1, 0.2),
    genres: Sequence[str] = GENRES,
) -> list[dict[str, Any]]:
    """How far each subset of each split is from the whole collection.

    One dict per split with, per subset (train, val, test): ``n``, ``share`` (of all
    examples) and its ``target``; ``genre_share`` (fraction of the subset's examples with
    each genre) and ``max_dev_pp`` / ``mean_dev_pp``, the largest and mean absolute
    difference from the whole's genre shares in percentage points; ``pair_max_dev_pp`` the
    same over genre pairs that occur; ``LD`` and ``LPD``, the label and label-pair
    distribution measures of Sechidis et al. (2011) and Szymański and Kajdanowicz (2017)
    (mean over genres, or pairs, of |positives/negatives in the subset - in the whole|);
    ``zero_genres`` and ``zero_pairs``, genres and pairs present in the whole but absent
    from the subset. Per split: ``LD``, ``LPD`` (means over subsets) and ``ExD`` (mean
    absolute difference between subset sizes and their targets, in examples).
    """
    labels = np.asarray(labels, bool)
    splits = np.asarray(splits)
    n, q = labels.shape
    pairs = [(i, j) for i in range(q) for j in range(i + 1, q)]
    pair_m = np.stack([labels[:, i] & labels[:, j] for i, j in pairs], 1) if pairs else np.zeros((n, 0), bool)
    whole_g, whole_p = labels.sum(0), pair_m.sum(0)
    present = whole_p > 0
    props = np.asarray(proportions, float)
    names = list(SUBSETS)[: len(props)] + [f"subset{j}" for j in range(3, len(props))]
    report = []
    for s in range(splits.shape[1]):
        idx = [splits[:, s] == j for j in range(len(props))]
        size = np.array([m.sum() for m in idx])
        pos_g = np.stack([labels[m].sum(0) for m in idx])
        pos_p = np.stack([pair_m[m].sum(0) for m in idx])
        ld = _odds_deviation(pos_g, size, whole_g, n)
        lpd = _odds_deviation(pos_p[:, present], size, whole_p[present], n)
        subsets = {}
        for j, name in enumerate(names):
            share = pos_g[j] / max(size[j], 1)
            dev = np.abs(share - whole_g / n) * 100
            pdev = np.abs(pos_p[j, present] / max(size[j], 1) - whole_p[present] / n) * 100
            subsets[name] = {
                "n": int(size[j]),
                "share": float(size[j] / n),
                "target": float(props[j]),
                "genre_share": {g: float(v) for g, v in zip(genres, share)},
                "max_dev_pp": float(dev.max()),
                "mean_dev_pp": float(dev.mean()),
                "pair_max_dev_pp": float(pdev.max()) if pdev.size else 0.0,
                "LD": float(np.nanmean(ld[j])) if np.isfinite(ld[j]).any() else float("nan"),
                "LPD": float(np.nanmean(lpd[j])) if np.isfinite(lpd[j]).any() else float("nan"),
                "zero_genres": [g for g, w, p in zip(genres, whole_g, pos_g[j]) if w and not p],
                "zero_pairs": int(((pos_p[j] == 0) & present).sum()),
            }
        report.append(
            {
                "split": s,
                "subsets": subsets,
                "LD": float(np.nanmean([v["LD"] for v in subsets.values()])),
                "LPD": float(np.nanmean([v["LPD"] for v in subsets.values()])),
                "ExD": float(np.mean(np.abs(size - props * n))),
            }
        )
    return report


def format_split_report(report: list[dict[str, Any]], genres: Sequence[str] = GENRES) -> str:
    """The report as text: per split and subset its size and distances, then genre shares."""
    lines = []
    for r in report:
        lines.append(f"split{r['split']}: LD {r['LD']:.4f}  LPD {r['LPD']:.4f}  ExD {r['ExD']:.1f} examples")
        lines.append(
            f"  {'subset':<6} {'n':>7} {'share':>6} {'target':>6} {'max dev':>8} {'mean dev':>8} "
            f"{'pair dev':>8} {'LD':>7} {'LPD':>7}  missing"
        )
        for name, v in r["subsets"].items():
            missing = ", ".join(v["zero_genres"]) or "-"
            if v["zero_pairs"]:
                missing += f" ({v['zero_pairs']} genre pairs)"
            lines.append(
                f"  {name:<6} {v['n']:>7} {100 * v['share']:>5.1f}% {100 * v['target']:>5.1f}% "
                f"{v['max_dev_pp']:>6.2f}pp {v['mean_dev_pp']:>6.2f}pp {v['pair_max_dev_pp']:>6.2f}pp "
                f"{v['LD']:>7.4f} {v['LPD']:>7.4f}  {missing}"
            )
    if report:
        lines.append("genre shares (% of each subset, split0):")
        first = report[0]["subsets"]
        lines.append("  " + f"{'':<6}" + "".join(f"{g[:8]:>9}" for g in genres))
        for name, v in first.items():
            lines.append("  " + f"{name:<6}" + "".join(f"{100 * v['genre_share'][g]:>9.1f}" for g in genres))
    return "\n".join(lines)
