"""Feature stores in the published Trailers12k layout.

`attrs['num_features']` and one float32 `(num_clips, num_features)` array per trailer id,
readable by the reference trainer with `zarr.open(path, mode='r')`. t12k adds
`attrs['t12k']` (how the store was made) and a `clips/{mid}` int32 `(num_clips, 3)`
companion: first frame, last frame (inclusive, in the 24 fps video) and the frame that
represents the clip (-1 for 3D backbones, which use every frame).
"""

from __future__ import annotations

import numpy as np

from t12k.errors import T12kError
from t12k.storage.zarrstore import ArrayStore


class FeatureStore(ArrayStore):
    kind = "features"
    companions = ("clips",)
    redo = "re-run `t12k extract` into it (it redoes damaged trailers)"

    def _validate(self) -> None:
        if "num_features" not in self._group.attrs:
            raise T12kError(
                f"{self.path} has no attrs['num_features']: it is not a feature store "
                "(did you pass the shots store?); point to a trailers_*.zarr store"
            )

    def _shape_problem(self, data: np.ndarray) -> str | None:
        if data.ndim != 2 or data.shape[1] != self.num_features:
            return f"shape {data.shape}, but the store's num_features is {self.num_features}"
        return None

    @property
    def num_features(self) -> int:
        return int(self.attrs["num_features"])

    def write_features(self, mid: str, feats: np.ndarray, clips: np.ndarray | None = None) -> None:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.num_features:
            raise ValueError(f"features for {mid} have shape {feats.shape}, expected (n, {self.num_features})")
        comps = {"clips": np.asarray(clips, dtype=np.int32)} if clips is not None else None
        self.write(mid, feats, comps)

    def load_all(self, ids: list[str] | None = None) -> dict[str, np.ndarray]:
        """Read whole arrays into memory (one read per id)."""
        ids = self.ids() if ids is None else ids
        return {mid: self.read(mid) for mid in ids}
