"""Areas under precision-recall curves, defined as the reference trainer defines them.

``pr_auc`` is sklearn's ``precision_recall_curve`` followed by ``sklearn.metrics.auc``
(trapezoidal rule), the reference's ``pre_rec_auc``. The summaries are:

* ``muAP``: one curve over all (trailer, genre) labels flattened;
* ``mAP``: the mean of the ten per-genre areas;
* ``wAP``: the per-genre areas weighted by each genre's number of positives over the total
  number of positives;
* ``sAP``: the mean over trailers of each trailer's own curve over its ten genres.

All are fractions in [0, 1]; reports multiply them by 100.

A label vector without positives has no precision-recall curve. The scikit-learn t12k needs
(>= 1.3; the change came in 1.1) warns and sets its recall to one, so its area is 0.5 whatever
the scores: the reference trainer on a current scikit-learn scores such a genre 0.5, and so
does ``pr_auc`` (older scikit-learn gave NaN, which the reference counted 0 in mAP). In wAP
such a genre weighs 0 either way. ``compute_metrics`` lists these genres under
``no_positives`` and ``no_positives_note`` says so in one line.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from t12k import GENRES

METRIC_NAMES = ("muAP", "mAP", "wAP", "sAP")


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve (trapezoidal), the reference's ``pre_rec_auc``: 0.5
    when `y_true` has no positive (scikit-learn's curve then has recall one; its warning is kept
    quiet, `compute_metrics` names such genres), NaN when it is empty."""
    from sklearn.metrics import auc, precision_recall_curve  # here: `predict` loads the head without it

    y_true = np.asarray(y_true).reshape(-1).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_score {y_score.size}")
    if not y_true.size:
        return math.nan
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No positive class found in y_true", UserWarning)
        precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(auc(recall, precision))


def compute_metrics(
    y_true: ArrayLike, y_prob: ArrayLike, genres: tuple[str, ...] | list[str] = GENRES
) -> dict[str, Any]:
    """muAP, mAP, wAP, sAP (fractions), ``per_genre`` {genre: AUC} for (n, L) arrays and
    ``no_positives``, the genres without a positive trailer (scored 0.5, as the reference)."""
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_prob.shape:
        raise ValueError(f"y_true {y_true.shape} and y_prob {y_prob.shape} must be equal (n, L) arrays")
    if y_true.shape[1] != len(genres):
        raise ValueError(f"{y_true.shape[1]} label columns but {len(genres)} genres")
    per_genre = np.asarray([pr_auc(t, p) for t, p in zip(y_true.T, y_prob.T)], dtype=np.float64)
    positives = y_true.sum(0).astype(np.float64)
    total = positives.sum()
    per_trailer = [pr_auc(t, p) for t, p in zip(y_true, y_prob)]
    return {
        "muAP": pr_auc(y_true, y_prob),
        "mAP": float(per_genre.mean()),
        "wAP": float((per_genre * positives).sum() / total) if total else math.nan,
        "sAP": float(np.mean(per_trailer)) if per_trailer else math.nan,
        "per_genre": {g: float(v) for g, v in zip(genres, per_genre)},
        "no_positives": [g for g, n in zip(genres, positives) if n == 0],
    }


def no_positives_note(metrics: dict) -> str:
    """One line naming the genres without a positive trailer ('' when every genre has one)."""
    missing = metrics.get("no_positives") or []
    if not missing:
        return ""
    return (
        f"no positive trailer for {', '.join(missing)}: "
        f"{'its' if len(missing) == 1 else 'their'} area is 0.5 whatever the scores (as the reference's)"
    )


def muap(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """The reference's tracking metric: muAP only (cheap enough to log every epoch)."""
    return pr_auc(np.asarray(y_true).reshape(-1), np.asarray(y_prob).reshape(-1))


def format_metrics(metrics: dict) -> str:
    """The summaries x100 on one line, with the genres without a positive trailer named."""
    text = " ".join(f"{k} {100 * metrics[k]:.2f}" for k in METRIC_NAMES)
    note = no_positives_note(metrics)
    return f"{text} ({note})" if note else text
