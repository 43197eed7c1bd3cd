"""Feature stores in the published Trailers12k layout.

`attrs['num_features']` and one float32 `(num_clips, num_features)` array per trailer id,
readable by the reference trainer with `zarr.open(path, mode='r')`. t12k adds
`attrs['t12k']` (how the store was made) and a `clips/{mid}` int32 `(num_clips, 3)`
companion: first frame, last frame (inclusive, in the 24 fps video) and the frame that
represents the clip (-1 for 3D backbones, which use every frame).

The per-trailer arrays' contract (float32, `(clips, num_features)`, every chunk file there,
every value finite) is checked by every read, by `verify` and before a write, whether or not
the store records checksums.
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

    def layout_problem(self, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        """Why a trailer's array cannot have this shape and dtype (None: it can)."""
        if len(shape) != 2 or shape[1] != self.num_features:
            return f"shape {tuple(shape)}, but the store's num_features is {self.num_features}"
        if np.dtype(dtype).kind != "f" or np.dtype(dtype).itemsize != 4:
            return f"dtype {np.dtype(dtype)}, but features are float32"
        return None

    def _contract_problem(self, data: np.ndarray, companions: dict[str, np.ndarray]) -> str | None:
        return self.layout_problem(data.shape, data.dtype) or nonfinite_problem(data)

    @property
    def num_features(self) -> int:
        return int(self.attrs["num_features"])

    def check_features(self, mid: str, feats: np.ndarray) -> np.ndarray:
        """`feats` as float32, fit to be written as trailer `mid`; T12kError (naming the store, the
        trailer and what is wrong) when they hold NaN or Inf, ValueError when their shape is wrong."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.num_features:
            raise ValueError(f"features for {mid} have shape {feats.shape}, expected (n, {self.num_features})")
        problem = nonfinite_problem(feats)
        if problem:
            raise T12kError(
                f"features of {mid} for store {self.path} hold {problem}, so none were written: the "
                "backbone returned non-finite values for this video; check the video (and, if it ran in "
                "fp16, use --precision fp32)"
            )
        return feats

    def write_features(self, mid: str, feats: np.ndarray, clips: np.ndarray | None = None) -> None:
        """Commit trailer `mid` (`check_features` first: non-finite features are never written)."""
        feats = self.check_features(mid, feats)
        comps = {"clips": np.asarray(clips, dtype=np.int32)} if clips is not None else None
        self.write(mid, feats, comps)

    def load_all(self, ids: list[str] | None = None) -> dict[str, np.ndarray]:
        """Read whole arrays into memory (one read per id)."""
        ids = self.ids() if ids is None else ids
        return {mid: self.read(mid) for mid in ids}


def nonfinite_problem(feats: np.ndarray) -> str | None:
    """What in features `feats` (clips, ...) is not finite, said as "NaN or Inf in k of n clips
    (first: clip i)"; None when every value is finite (one vectorised pass)."""
    finite = np.isfinite(feats)
    if finite.all():
        return None
    bad = np.flatnonzero(~finite.reshape(len(feats), -1).all(axis=1))
    return f"NaN or Inf in {len(bad)} of {len(feats)} clips (first: clip {bad[0]})"
