"""Areas under precision-recall curves, defined as the reference trainer defines them.

``pr_auc`` is sklearn's ``precision_recall_curve`` followed by ``sklearn.metrics.auc``
(trapezoidal rule), the reference's ``pre_rec_auc``. The summaries are:

* ``muAP``: one curve over all (trailer, genre) labels flattened;
* ``mAP``: the mean of the ten per-genre areas; a genre without positives has no defined
  area (NaN) and counts 0, as in the reference;
* ``wAP``: the per-genre areas (NaN counted as 0) weighted by each genre's number of
  positives over the total number of positives;
* ``sAP``: the mean over trailers of each trailer's own curve over its ten genres.

All are fractions in [0, 1]; reports multiply them by 100.

A label vector without positives has no precision-recall curve. Old scikit-learn versions
(the reference's) returned NaN for it, newer ones a warning and 0.5; ``pr_auc`` returns NaN
in every version so the summaries do not depend on the installed scikit-learn. In ``sAP`` a
trailer without any genre counts 0, the same rule as a genre without positives (every
Trailers12k trailer has at least one genre, so published numbers are unaffected).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import auc, precision_recall_curve

from t12k import GENRES

METRIC_NAMES = ("muAP", "mAP", "wAP", "sAP")


def pr_auc(y_true, y_score) -> float:
    """Area under the precision-recall curve (trapezoidal), NaN when `y_true` has no positive."""
    y_true = np.asarray(y_true).reshape(-1).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_score {y_score.size}")
    if not (y_true == 1).any():
        return math.nan
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(auc(recall, precision))


def _nan_to_zero(values: list[float]) -> np.ndarray:
    return np.asarray([0.0 if math.isnan(v) else v for v in values], dtype=np.float64)


def compute_metrics(y_true, y_prob, genres: tuple[str, ...] | list[str] = GENRES) -> dict:
    """muAP, mAP, wAP, sAP (fractions) and ``per_genre`` {genre: AUC or NaN} for (n, L) arrays."""
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_prob.shape:
        raise ValueError(f"y_true {y_true.shape} and y_prob {y_prob.shape} must be equal (n, L) arrays")
    if y_true.shape[1] != len(genres):
        raise ValueError(f"{y_true.shape[1]} label columns but {len(genres)} genres")
    per_genre = [pr_auc(t, p) for t, p in zip(y_true.T, y_prob.T)]
    genre_auc = _nan_to_zero(per_genre)
    positives = y_true.sum(0).astype(np.float64)
    total = positives.sum()
    per_trailer = _nan_to_zero([pr_auc(t, p) for t, p in zip(y_true, y_prob)])
    return {
        "muAP": pr_auc(y_true, y_prob),
        "mAP": float(genre_auc.mean()),
        "wAP": float((genre_auc * positives).sum() / total) if total else math.nan,
        "sAP": float(per_trailer.mean()) if len(per_trailer) else math.nan,
        "per_genre": {g: v for g, v in zip(genres, per_genre)},
    }


def muap(y_true, y_prob) -> float:
    """The reference's tracking metric: muAP only (cheap enough to log every epoch)."""
    return pr_auc(np.asarray(y_true).reshape(-1), np.asarray(y_prob).reshape(-1))
