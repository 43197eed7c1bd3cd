"""The shots store: per trailer, its shots and per-frame transition probabilities.

`{mid}`: int32 `(num_shots, 2)`, inclusive `[start, end]` frame indices (the semantics of
TransNet V2's `predictions_to_scenes`); `predictions/{mid}`: float16 `(num_frames,)`, the
single-frame transition probability of every frame. attrs['t12k'] records the detector,
its threshold and the input size.

The shots' contract, checked by every read and by `verify` with checksums or without:
int32 `(n, 2)`, ``0 <= start <= end < num_frames`` (the length of the predictions), sorted
and not overlapping. A trailer whose shots break it is damaged: `t12k shots` redoes it.
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

    def _contract_problem(self, data: np.ndarray, companions: dict[str, np.ndarray]) -> str | None:
        predictions = companions.get("predictions")
        return shots_problem(data, None if predictions is None else len(predictions))

    def write_shots(self, mid: str, shots: np.ndarray, predictions: np.ndarray) -> None:
        """Commit trailer `mid`; ValueError (a detector's bug) for shots that break the contract."""
        shots = np.asarray(shots, dtype=np.int32).reshape(-1, 2)
        problem = shots_problem(shots, len(predictions))
        if problem:
            raise ValueError(f"shots of {mid} break the shots contract ({problem}); nothing was written")
        self.write(mid, shots, {"predictions": np.asarray(predictions, dtype=np.float16)})

    def trailer(self, mid: str) -> tuple[np.ndarray, np.ndarray]:
        """The shots and predictions of `mid`, checked (the shots end within its frames);
        T12kError naming the store, the trailer and the fix when they are missing or damaged."""
        shots, predictions = self.read(mid), self.read(mid, companion="predictions")
        problem = shots_problem(shots, len(predictions))
        if problem:
            raise self.damage_error(mid, problem)
        return shots, predictions

    def shots(self, mid: str) -> np.ndarray:
        """The shots of `mid`, checked as `trailer` checks them."""
        return self.trailer(mid)[0]

    def predictions(self, mid: str) -> np.ndarray:
        return self.read(mid, companion="predictions")


def shots_problem(shots: np.ndarray, num_frames: int | None = None) -> str | None:
    """Why `shots` break the contract (int32 (n, 2), 0 <= start <= end < num_frames, sorted, not
    overlapping); None when they keep it. `num_frames` None: the last bound is not checked."""
    if shots.dtype != np.int32 or shots.ndim != 2 or shots.shape[1] != 2:
        return f"dtype {shots.dtype} shape {shots.shape}, but shots are int32 (shots, 2)"
    starts, ends = shots[:, 0], shots[:, 1]
    checks = (
        (starts < 0, "starts before frame 0"),
        (ends < starts, "ends before it starts"),
        (np.r_[False, starts[1:] <= ends[:-1]], "starts before the previous shot ends (shots must be sorted, apart)"),
        (
            ends >= (num_frames if num_frames is not None else np.iinfo(np.int64).max),
            f"ends past the last of its {num_frames} frames",
        ),
    )
    for bad, what in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return f"shot {i} {shots[i].tolist()} {what}"
    return None
