"""The DIViTA head: model, snippet sampling, training, metrics (the reference protocol).

Modules: `model` (the head), `data` (features in memory, snippets), `config` (TrainConfig),
`train` (training, evaluation, prediction), `checkpoint` (checkpoint.pt and last.pt),
`runfiles` (the CSV files of a run folder), `metrics`, and for experiments over several
configurations `experiment`, `report` and `figures`.
"""

from typing import TYPE_CHECKING

from t12k._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (t12k._lazy): the package's light modules load alone
    from t12k.divita.checkpoint import load_model
    from t12k.divita.config import TrainConfig
    from t12k.divita.data import FeatureTable, TrailerFeatures, load_table, load_trailers
    from t12k.divita.metrics import compute_metrics, pr_auc
    from t12k.divita.model import AGGREGATIONS, FUSIONS, DIViTA
    from t12k.divita.train import TrainResult, predict_features, train

__getattr__ = lazy_exports(
    __name__,
    {
        "load_model": "checkpoint",
        "TrainConfig": "config",
        "FeatureTable": "data",
        "TrailerFeatures": "data",
        "load_table": "data",
        "load_trailers": "data",
        "compute_metrics": "metrics",
        "pr_auc": "metrics",
        "AGGREGATIONS": "model",
        "FUSIONS": "model",
        "DIViTA": "model",
        "TrainResult": "train",
        "predict_features": "train",
        "train": "train",
    },
)

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
