"""Genre probabilities of the trailers of a work folder from a `t12k train` checkpoint: the head
run on the features of the stores it was trained on (found in the work folder by name)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from t12k import GENRES
from t12k.errors import T12kError
from t12k.storage import FeatureStore


def genre_predictor(
    checkpoint: str | os.PathLike[str], stores: list[FeatureStore]
) -> Callable[[str], dict[str, float]]:
    """A function of a trailer id to its ten genre probabilities. T12kError when the checkpoint
    cannot be read or a store it was trained on is neither in `stores` nor at its recorded path."""
    from t12k.divita.train import load_model, predict_features

    model, info = load_model(checkpoint, "cpu")
    by_role: dict[str, FeatureStore] = {}
    for role, s in (info.get("stores") or {}).items():
        name = Path(s["path"]).name
        match = next((st for st in stores if st.path.name == name), None)
        if match is None and Path(s["path"]).is_dir():
            match = FeatureStore.open(s["path"])
        if match is None:
            raise T12kError(
                f"the checkpoint {checkpoint} was trained on {name} ({role}), which is not in the work folder; "
                "extract it there or pass another --checkpoint"
            )
        by_role[role] = match
    if not by_role:
        raise T12kError(f"checkpoint {checkpoint} records no feature stores; retrain it with this t12k")
    snippet = int(info.get("snippet", 30))

    def predict(mid: str) -> dict[str, float]:
        feats = {role: store.read(mid) for role, store in by_role.items()}
        probs = predict_features(model, feats.get("image"), feats.get("video"), snippet)
        return {g: float(p) for g, p in zip(GENRES, probs)}

    return predict
