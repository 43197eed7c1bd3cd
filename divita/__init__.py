"""The DIViTA head: model, snippet sampling, training, metrics (the reference protocol)."""

from t12k.divita.data import FeatureTable, TrailerFeatures, load_table, load_trailers
from t12k.divita.metrics import compute_metrics, pr_auc
from t12k.divita.model import AGGREGATIONS, FUSIONS, DIViTA
from t12k.divita.train import TrainConfig, TrainResult, load_model, predict_features, train

__all__ = [
    "AGGREGATIONS",
    "FUSIONS",
    "DIViTA",
    "FeatureTable",
    "TrailerFeatures",
    "TrainConfig",
    "TrainResult",
    "compute_metrics",
    "load_model",
    "load_table",
    "load_trailers",
    "pr_auc",
    "predict_features",
    "train",
]
