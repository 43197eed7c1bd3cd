"""Clip features in memory and snippet sampling for the DIViTA head.

A feature store is read once, whole, into one ``(total_clips + 1, F)`` tensor: the trailers'
arrays one after another (``offsets``/``lengths`` say where each one is) and one final row
of zeros. Snippets are built by gathering rows with an index tensor; positions past a
trailer's end point at the zero row, which is how short trailers and the last evaluation
snippet are right-padded. No per-snippet store reads, no Python loop per snippet.

Training (the reference's ``_load_reps_trn``): one snippet of ``S`` adjacent clips per
trailer, its start drawn uniformly in ``[0, n - S]`` (0 when ``n < S``; then padded).
Evaluation (``_load_reps_val``): all non-overlapping ``S``-clip snippets of every trailer,
``ceil(n / S)`` of them (at least one), the last one zero-padded; ``owner`` maps each
snippet to its trailer so a trailer's probabilities are the mean of its snippets'.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from t12k.errors import T12kError
from t12k.storage import FeatureStore
from t12k.storage.fastread import Damaged, open_checked, read_arrays


@dataclass
class FeatureTable:
    """One store's features for a list of ids, concatenated (last row: zeros for padding)."""

    path: Path | None
    ids: list[str]
    attrs: dict[str, Any]
    num_features: int
    feats: torch.Tensor  # (total_clips + 1, F)
    offsets: torch.Tensor  # int64 (n,)
    lengths: torch.Tensor  # int64 (n,)

    @property
    def pad_row(self) -> int:
        return self.feats.shape[0] - 1


# The dtypes a feature table can be held in (by name, as in --feature-dtype).
FEATURE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in FEATURE_DTYPES:
        raise T12kError(f"feature dtype {dtype!r} is not supported; use float32, float16 or bfloat16")
    return FEATURE_DTYPES[dtype]


def _from_numpy(buf: np.ndarray, dtype: torch.dtype, device: str | torch.device) -> torch.Tensor:
    t = torch.from_numpy(buf)
    return t.to(device=device, dtype=dtype)


def table_from_arrays(
    arrays: list[np.ndarray],
    ids: list[str] | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    attrs: dict[str, Any] | None = None,
    path: Path | None = None,
) -> FeatureTable:
    """A FeatureTable from in-memory (n_i, F) arrays (one per trailer)."""
    if not arrays:
        raise ValueError("no arrays")
    arrays = [np.asarray(a) for a in arrays]
    f = arrays[0].shape[1] if arrays[0].ndim == 2 else -1
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != f:
            raise T12kError(
                f"features of trailer {ids[i] if ids else i} have shape {a.shape}, "
                f"expected (clips, {f}); give one (clips, features) array per trailer"
            )
    lengths = np.array([a.shape[0] for a in arrays], np.int64)
    np_dtype = np.float16 if _torch_dtype(dtype) == torch.float16 else np.float32
    buf = np.zeros((int(lengths.sum()) + 1, f), np_dtype)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for a, o, n in zip(arrays, offsets, lengths):
        buf[o : o + n] = a
    return FeatureTable(
        path,
        list(ids) if ids else [str(i) for i in range(len(arrays))],
        dict(attrs or {"num_features": f}),
        f,
        _from_numpy(buf, _torch_dtype(dtype), device),
        torch.from_numpy(offsets).to(device),
        torch.from_numpy(lengths).to(device),
    )


def load_table(
    path: str | os.PathLike,
    ids: list[str],
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> FeatureTable:
    """Read the arrays of `ids` from the feature store at `path` into one FeatureTable.

    Works on t12k stores and on the published (plain zarr format 2) ones. Shapes are read
    from the metadata first so the whole table is allocated once (no doubled peak memory);
    then the chunk files are decoded in a pool of threads straight into the table
    (`t12k.storage.fastread`; layouts it does not decode itself are read with zarr). Every
    array is checked against the checksum its commit recorded and the store's contract (float32
    `(clips, num_features)`, every chunk file there, checksum or not): a damaged trailer stops
    the load with a T12kError naming the store and the trailer. Features holding NaN or Inf
    are refused in one T12kError naming the store and those trailers.
    """
    store = FeatureStore.open(path)
    nf = store.num_features
    missing = [m for m in ids if m not in store]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise T12kError(
            f"id {missing[0]!r}{more} of the labels is not in feature store {store.path}; "
            "extract features for every id in the labels file (t12k extract) or "
            "remove the missing rows from the labels"
        )
    need = store.checksummed  # then an array without a checksum lost its attributes
    try:
        arrays = [
            open_checked(os.path.join(store.path, mid), store.zarr_format, need, require_chunks=True) for mid in ids
        ]
    except Damaged as exc:
        raise store.damaged(exc) from None
    lengths = np.zeros(len(ids), np.int64)
    for i, (mid, arr) in enumerate(zip(ids, arrays)):
        problem = store.layout_problem(arr.shape, arr.dtype)
        if problem:
            raise store.damage_error(mid, problem)
        lengths[i] = arr.shape[0]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(ids) else lengths
    tdtype = _torch_dtype(dtype)
    np_dtype = np.float16 if tdtype == torch.float16 else np.float32
    buf = np.zeros((int(lengths.sum()) + 1, nf), np_dtype)
    nonfinite: list[int] = []  # trailers holding NaN or Inf, found by the reading threads

    def check(i: int, out: np.ndarray) -> None:
        if not np.isfinite(out).all():
            nonfinite.append(i)

    with tqdm(total=len(ids), desc=f"read {store.path.name}", disable=not progress, leave=False) as bar:
        try:
            read_arrays(arrays, [buf[o : o + n] for o, n in zip(offsets, lengths)], progress=bar.update, check=check)
        except Damaged as exc:  # what was read is not what was committed: stop, naming the trailer
            raise store.damaged(exc) from None
    if nonfinite:
        raise _nonfinite_error(store, [ids[i] for i in sorted(nonfinite)], np_dtype == np.float16)
    return FeatureTable(
        store.path,
        list(ids),
        store.attrs,
        nf,
        _from_numpy(buf, tdtype, device),
        torch.from_numpy(offsets).to(device),
        torch.from_numpy(lengths).to(device),
    )


def _nonfinite_error(store: FeatureStore, bad: list[str], half: bool, shown: int = 5) -> T12kError:
    """The one line refusing a store whose trailers `bad` hold NaN or Inf (the first few named);
    `half`: the table is float16, where a float32 beyond its range becomes Inf."""
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    what = "NaN or Inf (or values float16 cannot hold: try --feature-dtype float32)" if half else "NaN or Inf"
    return T12kError(
        f"store {store.path}: features of {len(bad)} trailer(s) hold {what} ({', '.join(bad[:shown])}{more}); "
        f"run `t12k verify {store.path}`, then re-extract them or remove them from the labels"
    )


# ---- snippet indices ---------------------------------------------------------------------


def train_index(
    offsets: torch.Tensor, lengths: torch.Tensor, pad_row: int, snippet: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gather index (B, S): one random window of `snippet` adjacent clips per trailer.

    `offsets`/`lengths` are those of the batch's trailers. The start is uniform in
    ``[0, n - S]`` (inclusive, as ``random.randint`` in the reference); when ``n < S`` it is 0
    and positions past the end point at `pad_row` (zeros).
    """
    b = lengths.shape[0]
    high = (lengths - snippet).clamp(min=0)  # (B,)
    u = torch.rand(b, generator=generator, device=generator.device if generator is not None else "cpu")
    start = (u.to(lengths.device) * (high + 1).to(u.dtype)).floor().long().clamp(max=high)
    pos = start[:, None] + torch.arange(snippet, device=lengths.device)[None, :]
    return torch.where(pos < lengths[:, None], offsets[:, None] + pos, torch.full_like(pos, pad_row))


def eval_index(
    offsets: torch.Tensor, lengths: torch.Tensor, pad_row: int, snippet: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All non-overlapping snippets: gather index (N, S) and owner (N,) (position in `lengths`).

    Trailer ``i`` gives ``max(1, ceil(n_i / S))`` snippets, in order; the last is padded.
    """
    counts = ((lengths + snippet - 1) // snippet).clamp(min=1)  # (T,)
    owner = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), counts)
    first = torch.cumsum(counts, 0) - counts  # first snippet number of each trailer
    j = torch.arange(owner.shape[0], device=lengths.device) - first[owner]  # snippet within trailer
    pos = j[:, None] * snippet + torch.arange(snippet, device=lengths.device)[None, :]
    index = torch.where(pos < lengths[owner, None], offsets[owner, None] + pos, torch.full_like(pos, pad_row))
    return index, owner


def mean_by_owner(values: torch.Tensor, owner: torch.Tensor, num: int) -> torch.Tensor:
    """Mean of the rows of `values` (N, L) that share an owner: (num, L)."""
    out = torch.zeros(num, values.shape[1], dtype=values.dtype, device=values.device)
    out.index_add_(0, owner, values)
    counts = torch.bincount(owner, minlength=num).clamp(min=1).to(values.dtype)
    return out / counts[:, None]


# ---- one or two modalities ---------------------------------------------------------------


@dataclass
class EvalSnippets:
    """All evaluation snippets of some trailers: gather `index` (N, S), `owner` (N,) -> trailer
    number 0..num_trailers-1 (in the order the trailers were given)."""

    index: torch.Tensor
    owner: torch.Tensor
    num_trailers: int

    def __len__(self) -> int:
        return self.index.shape[0]

    def chunks(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for s in range(0, len(self), size):
            yield self.index[s : s + size], self.owner[s : s + size]


@dataclass
class TrailerFeatures:
    """Image and/or video features of the same trailers, with the same clip counts.

    Rows are trailers in `ids` order; ``image``/``video`` are FeatureTables whose offsets and
    lengths agree (so one gather index serves both).
    """

    ids: list[str]
    image: FeatureTable | None
    video: FeatureTable | None
    _row: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.image is None and self.video is None:
            raise ValueError("TrailerFeatures needs image or video features")
        if self.image is not None and self.video is not None:
            check_same_clips(self.image, self.video)
        self._row = {m: i for i, m in enumerate(self.ids)}

    @property
    def _table(self) -> FeatureTable:
        table = self.image if self.image is not None else self.video
        assert table is not None  # __post_init__ checked that one is given
        return table

    @property
    def offsets(self) -> torch.Tensor:
        return self._table.offsets

    @property
    def lengths(self) -> torch.Tensor:
        return self._table.lengths

    @property
    def pad_row(self) -> int:
        return self._table.pad_row

    @property
    def device(self) -> torch.device:
        return self._table.feats.device

    def rows(self, ids: list[str]) -> torch.Tensor:
        """Row numbers (int64 tensor on the features' device) of `ids`."""
        return torch.tensor([self._row[m] for m in ids], dtype=torch.long, device=self.device)

    def gather(
        self, index: torch.Tensor, device: str | torch.device | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Features (B, S, F) float32 of a gather index (B, S), for image and video (or None)."""

        def one(t: FeatureTable | None) -> torch.Tensor | None:
            if t is None:
                return None
            x = t.feats[index]
            return x.to(device=device or x.device, dtype=torch.float32, non_blocking=True)

        return one(self.image), one(self.video)

    def train_batch(
        self,
        rows: torch.Tensor,
        snippet: int,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One random training snippet per row: (image (B, S, Fi) | None, video (B, S, Fv) | None)."""
        index = train_index(self.offsets[rows], self.lengths[rows], self.pad_row, snippet, generator)
        return self.gather(index, device)

    def eval_snippets(self, rows: torch.Tensor, snippet: int) -> EvalSnippets:
        index, owner = eval_index(self.offsets[rows], self.lengths[rows], self.pad_row, snippet)
        return EvalSnippets(index, owner, int(rows.shape[0]))


def check_same_clips(image: FeatureTable, video: FeatureTable) -> None:
    """Raise T12kError unless both tables hold the same ids with the same clip counts."""
    if image.ids != video.ids:
        raise T12kError("image and video features cover different ids; load both for the same labels")
    if not torch.equal(image.lengths.cpu(), video.lengths.cpu()):
        bad = (image.lengths.cpu() != video.lengths.cpu()).nonzero().flatten()
        i = int(bad[0])
        where = f"stores {image.path} and {video.path}" if image.path or video.path else "the image and video features"
        raise T12kError(
            f"trailer {image.ids[i]!r} has {int(image.lengths[i])} image clips but "
            f"{int(video.lengths[i])} video clips ({len(bad)} trailer(s) differ) in {where}; "
            "both modalities must be extracted with the same clip plan (same shots, fpc and fps)"
        )


def load_trailers(
    ids: list[str],
    image_store: str | os.PathLike | None = None,
    video_store: str | os.PathLike | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> TrailerFeatures:
    """Load `ids` from an image store, a video store or both (same clip counts required)."""
    if image_store is None and video_store is None:
        raise T12kError("no feature store given; pass an image store, a video store or both")
    image = load_table(image_store, ids, dtype, device, progress) if image_store is not None else None
    video = load_table(video_store, ids, dtype, device, progress) if video_store is not None else None
    return TrailerFeatures(list(ids), image, video)
