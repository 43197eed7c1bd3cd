"""A genre (or trailer) without a positive label scores what the reference trainer gives on the
installed scikit-learn, and the metrics say which genres had none."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import auc, precision_recall_curve

from t12k import GENRES
from t12k.divita import compute_metrics, pr_auc
from t12k.divita.metrics import format_metrics, no_positives_note


def _reference(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[float, ...]:
    """The reference trainer's compute_full_metrics (train.py of richardtml/DIViTA), as it runs
    on the installed scikit-learn: uap, map, wap, iap and the per-genre areas."""

    def pre_rec_auc(t, s):
        pre, rec, _ = precision_recall_curve(t, s)
        return auc(rec, pre)

    y_true = y_true.astype(int)
    uap = pre_rec_auc(y_true.reshape(-1), y_prob.reshape(-1))
    areas = [pre_rec_auc(t, p) for t, p in zip(y_true.T, y_prob.T)]
    zeroed = [0 if np.isnan(a) else a for a in areas]
    wap = np.average(zeroed, weights=y_true.sum(0) / y_true.sum())
    iap = np.average([pre_rec_auc(t, p) for t, p in zip(y_true, y_prob)])
    return uap, np.average(zeroed), wap, iap, *areas


@pytest.fixture
def labels_without_crime_and_horror():
    rng = np.random.default_rng(7)
    y = (rng.uniform(size=(40, len(GENRES))) < 0.3).astype(int)
    y[:, GENRES.index("crime")] = 0
    y[:, GENRES.index("horror")] = 0
    y[3] = 0  # a trailer without any genre too
    return y, rng.uniform(size=y.shape)


def test_metrics_equal_the_reference_on_the_installed_scikit_learn(labels_without_crime_and_horror):
    y, p = labels_without_crime_and_horror
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _reference(y, p)
    m = compute_metrics(y, p)
    ours = (m["muAP"], m["mAP"], m["wAP"], m["sAP"], *(m["per_genre"][g] for g in GENRES))
    assert ours == pytest.approx(ref)
    assert m["per_genre"]["crime"] == m["per_genre"]["horror"] == pytest.approx(0.5)


def test_the_genres_without_positives_are_named(labels_without_crime_and_horror):
    y, p = labels_without_crime_and_horror
    m = compute_metrics(y, p)
    assert m["no_positives"] == ["crime", "horror"]
    line = format_metrics(m)
    assert line.startswith(f"muAP {100 * m['muAP']:.2f} mAP")
    assert "no positive trailer for crime, horror" in line and "0.5" in line
    assert "\n" not in line


def test_no_note_when_every_genre_has_a_positive():
    y = np.eye(len(GENRES), dtype=int)
    m = compute_metrics(y, np.eye(len(GENRES)) * 0.9)
    assert m["no_positives"] == [] and no_positives_note(m) == ""
    assert format_metrics(m) == "muAP 100.00 mAP 100.00 wAP 100.00 sAP 100.00"


def test_no_warning_is_printed_for_a_genre_without_positives():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pr_auc([0, 0, 0, 0], [0.4, 0.3, 0.2, 0.1]) == pytest.approx(0.5)
