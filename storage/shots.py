"""The shots store: per trailer, its shots and per-frame transition probabilities.

`{mid}`: int32 `(num_shots, 2)`, inclusive `[start, end]` frame indices (the semantics of
TransNet V2's `predictions_to_scenes`); `predictions/{mid}`: float16 `(num_frames,)`, the
single-frame transition probability of every frame. attrs['t12k'] records the detector,
its threshold and the input size.
"""

from __future__ import annotations

import numpy as np

from t12k.errors import T12kError
from t12k.storage.zarrstore import ArrayStore


class ShotStore(ArrayStore):
    kind = "shots"
    companions = ("predictions",)
    redo = "re-run `t12k shots` into it (it redoes damaged trailers)"

    def _validate(self) -> None:
        kind = self.settings.get("kind")
        if kind != self.kind:
            what = "a feature store" if "num_features" in self._group.attrs else f"a {kind or 'non-t12k'} store"
            raise T12kError(f"{self.path} is {what}, not a shots store; pass the store made by `t12k shots`")

    def write_shots(self, mid: str, shots: np.ndarray, predictions: np.ndarray) -> None:
        shots = np.asarray(shots, dtype=np.int32).reshape(-1, 2)
        self.write(mid, shots, {"predictions": np.asarray(predictions, dtype=np.float16)})

    def shots(self, mid: str) -> np.ndarray:
        return self.read(mid)

    def predictions(self, mid: str) -> np.ndarray:
        return self.read(mid, companion="predictions")
