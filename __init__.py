"""t12k: movie trailers to genre predictions (Trailers12k / DIViTA), end to end.

The public Python API is imported from here (``import t12k``). Its names are loaded when
first used (PEP 562), so ``import t12k`` stays light: it imports neither PyTorch nor zarr.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

GENRES = (
    "action",
    "adventure",
    "comedy",
    "crime",
    "drama",
    "fantasy",
    "horror",
    "romance",
    "sci-fi",
    "thriller",
)

# Each public name and the module that defines it, imported on first use.
_EXPORTS = {
    "T12kError": "t12k.errors",
    "open_features": "t12k.storage.featuremap",
    "TrailerDataset": "t12k.divita.dataset",
    "detect_shots": "t12k.pipeline.api",
    "extract_features": "t12k.pipeline.api",
    "predict": "t12k.pipeline.api",
    "Shots": "t12k.pipeline.api",
    "Features": "t12k.pipeline.api",
    "register_backbone": "t12k.backbones",
    "run": "t12k.pipeline.run.call",
    "Pipeline": "t12k.pipeline.composed",
    "Stage": "t12k.pipeline.stage",
    "Resources": "t12k.pipeline.stage",
    "Outcome": "t12k.pipeline.stage",
}

__all__ = [
    "GENRES",
    "__version__",
    "T12kError",
    "open_features",
    "TrailerDataset",
    "detect_shots",
    "extract_features",
    "predict",
    "Shots",
    "Features",
    "register_backbone",
    "run",
    "Pipeline",
    "Stage",
    "Resources",
    "Outcome",
]  # the names of _EXPORTS, written out for linters and type checkers

if TYPE_CHECKING:  # what type checkers and editors see; at run time, `__getattr__` imports them
    from t12k.backbones import register_backbone
    from t12k.divita.dataset import TrailerDataset
    from t12k.errors import T12kError
    from t12k.pipeline.api import Features, Shots, detect_shots, extract_features, predict
    from t12k.pipeline.composed import Pipeline
    from t12k.pipeline.run.call import run
    from t12k.pipeline.stage import Outcome, Resources, Stage
    from t12k.storage.featuremap import open_features


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is used (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 't12k' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later uses find it without calling this again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
