"""A feature store opened for reading from Python: `open_features` (`t12k.open_features`).

A read-only mapping of trailer id to its ``(clips, num_features)`` float32 array, for t12k's
stores and for the published Trailers12k ones (a zarr format 2 group with
``attrs['num_features']`` and one float32 array per id). Every array is read through
`FeatureStore.read`, so it is checked as every t12k reader checks it: against the checksum its
commit recorded (when the store records them) and against the store's contract (float32
``(clips, num_features)``, every chunk file there, finite values).

(Not named ``open.py``: a submodule ``open`` of `t12k.storage` would become the name ``open``
in that package's namespace.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from t12k.errors import T12kError
from t12k.storage.features import FeatureStore


class MissingTrailer(T12kError, KeyError):
    """A trailer id that is not in the store: a `KeyError` (as a mapping raises) that is also a
    `T12kError` with the one-line message t12k prints."""

    __str__ = T12kError.__str__  # the message as is, not quoted as KeyError's


class FeatureMap(Mapping[str, np.ndarray]):
    """The trailers of a feature store, by id, read-only (made by `open_features`).

    Ids are those of the trailers present when the store was opened, sorted; `len()`, iteration
    and ``in`` agree with them. Each ``feats[mid]`` reads that trailer's array anew and checks it
    (the array returned is the caller's own). `num_features` is ``attrs['num_features']``,
    `settings` how t12k made the store (``attrs['t12k']``; ``{}`` for a published store),
    `path` where it is.

    >>> feats = open_features(store)
    >>> feats.num_features, len(feats), list(feats)[:2]
    (1024, 20, ['tt0000000', 'tt0000001'])
    >>> "tt0000000" in feats, "tt9999999" in feats
    (True, False)
    """

    def __init__(self, store: FeatureStore):
        self._store = store
        self._ids = store.ids()
        self._known = frozenset(self._ids)

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def num_features(self) -> int:
        return self._store.num_features

    @property
    def settings(self) -> dict[str, Any]:
        return self._store.settings

    def __getitem__(self, mid: str) -> np.ndarray:
        if mid not in self._known:
            raise MissingTrailer(f"id {mid!r} is not in feature store {self.path}; list its ids with list(features)")
        return self._store.read(mid)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, mid: object) -> bool:
        return mid in self._known

    # Two opened stores are the same mapping only if they are one object (not compared array by array).
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<t12k features {self.path}: {len(self)} trailers, {self.num_features} features>"


def open_features(store: str | os.PathLike[str]) -> FeatureMap:
    """Open the feature store at `store` (a t12k store or a published Trailers12k one) read-only.

    Returns a `FeatureMap`: trailer id -> float32 ``(clips, num_features)`` array, with
    `.num_features`, `.settings` and `.path`. A missing path, a store that is not a feature
    store (a shots store, say) or a damaged trailer raise `T12kError` with the one line the
    command line prints.

    >>> import t12k
    >>> feats = t12k.open_features(store)
    >>> feats.num_features, feats.settings["backbone"]
    (1024, 'shufflenet2d')
    >>> x = feats["tt0000000"]
    >>> x.shape, x.dtype
    ((12, 1024), dtype('float32'))
    >>> t12k.open_features(published).settings  # a published store records no t12k settings
    {}
    >>> t12k.open_features("no/such.zarr")
    Traceback (most recent call last):
    t12k.errors.T12kError: store no/such.zarr does not exist; create it first (see `t12k --help`) or fix the path
    """
    return FeatureMap(FeatureStore.open(store))


__all__ = ["FeatureMap", "MissingTrailer", "open_features"]
