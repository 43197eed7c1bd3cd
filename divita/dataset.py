"""One subset of one split of an mtgc.csv as a PyTorch dataset: `TrailerDataset`
(`t12k.TrailerDataset`), for training one's own model on t12k's or the published stores.

It loads the subset's features with `load_trailers` (the trainer's loader: whole stores read
once, checked, into one table) and samples snippets with `train_index` (the trainer's random
window of adjacent clips, zero-padded past a short trailer's end), so an item holds exactly
the numbers `t12k train` trains on.
"""

from __future__ import annotations

import operator
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from t12k import GENRES
from t12k.divita.data import load_trailers, train_index
from t12k.errors import T12kError
from t12k.storage.mtgc import read_mtgc

# The subsets a dataset can be, by name, and the name `MTGC.subset` knows each by.
SUBSETS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
ROLES = ("image", "video")

Item = tuple[dict[str, torch.Tensor], torch.Tensor]


class TrailerDataset(Dataset[Item]):
    """The trailers of `subset` (``"train"``, ``"validation"`` or ``"test"``) in split `split`
    (0, 1 or 2) of the mtgc.csv at `labels`, with their features from `image_store`,
    `video_store` or both (t12k or published stores, same clip counts).

    Item ``i`` is ``(features, labels)``: ``features`` a dict with a float32 tensor per store
    given (``"image"``, ``"video"``), ``(clips, num_features)`` of the whole trailer when
    `snippet` is None, else ``(snippet, num_features)``: a random window of `snippet` adjacent
    clips, drawn anew each time (``torch``'s random generator: ``torch.manual_seed`` makes it
    repeat), zero-padded past the end of a shorter trailer, as the reference trains
    (``snippet=30``); ``labels`` the trailer's ten genres (`t12k.GENRES` order), float32 (10,).
    Fixed-size snippets batch with a plain ``DataLoader``; whole trailers have their own
    lengths (batch size 1, or a collate function of one's own).

    ``ids[i]`` is the movie id of item i (the csv's order), ``labels`` a float32 (n, 10)
    array of every item's genres, ``num_features`` the features per clip of each store.
    Bad input (an unknown subset, a split out of range, a labelled id missing from a store, a
    damaged store) raises `T12kError` with the one line the command line prints.

    >>> import t12k, torch
    >>> train = t12k.TrailerDataset(labels, split=0, subset="train", image_store=store, snippet=30)
    >>> len(train), train.ids[:2], train.num_features
    (14, ['tt0000000', 'tt0000001'], {'image': 1024})
    >>> features, target = train[0]
    >>> features["image"].shape, target.shape, target.dtype
    (torch.Size([30, 1024]), torch.Size([10]), torch.float32)
    >>> batch, targets = next(iter(torch.utils.data.DataLoader(train, batch_size=8, shuffle=True)))
    >>> batch["image"].shape, targets.shape
    (torch.Size([8, 30, 1024]), torch.Size([8, 10]))
    >>> test = t12k.TrailerDataset(labels, 0, "test", image_store=store)  # whole trailers
    >>> test.ids[0], test[0][0]["image"].shape
    ('tt0000008', torch.Size([15, 1024]))
    >>> t12k.TrailerDataset(labels, 0, "dev", image_store=store)
    Traceback (most recent call last):
    t12k.errors.T12kError: subset 'dev' does not exist; use train, validation or test
    """

    def __init__(
        self,
        labels: str | os.PathLike[str],
        split: int,
        subset: str,
        image_store: str | os.PathLike[str] | None = None,
        video_store: str | os.PathLike[str] | None = None,
        snippet: int | None = None,
        progress: bool = False,
    ):
        if subset not in SUBSETS:
            raise T12kError(f"subset {subset!r} does not exist; use train, validation or test")
        if snippet is not None and (isinstance(snippet, bool) or not isinstance(snippet, int) or snippet < 1):
            raise T12kError(
                f"snippet {snippet!r} is not a number of clips; give a positive integer (30, as the reference) "
                "or None for whole trailers"
            )
        if image_store is None and video_store is None:
            raise T12kError("no feature store given; pass image_store, video_store or both")
        ids, y = read_mtgc(labels).subset(split, SUBSETS[subset])
        self.ids: list[str] = ids
        self.labels: np.ndarray = y.astype(np.float32)
        self.snippet = snippet
        self._data = load_trailers(ids, image_store, video_store, progress=progress)
        self._targets = torch.from_numpy(self.labels)

    @property
    def num_features(self) -> dict[str, int]:
        """Features per clip of each store, by role (``"image"``, ``"video"``)."""
        tables = (self._data.image, self._data.video)
        return {role: t.num_features for role, t in zip(ROLES, tables) if t is not None}

    @property
    def genres(self) -> tuple[str, ...]:
        """The names of the ten labels, in order."""
        return GENRES

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Item:
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} of a dataset of {len(self)} trailers")
        i %= len(self)
        offset, length = self._data.offsets[i : i + 1], self._data.lengths[i : i + 1]
        if self.snippet is None:
            gather = offset + torch.arange(int(length), device=offset.device)
        else:
            gather = train_index(offset, length, self._data.pad_row, self.snippet)[0]
        image, video = self._data.gather(gather)
        features = {role: x for role, x in zip(ROLES, (image, video)) if x is not None}
        return features, self._targets[i].clone()

    def __repr__(self) -> str:
        what = f"{self.snippet}-clip snippets" if self.snippet else "whole trailers"
        return f"<t12k TrailerDataset: {len(self)} trailers, {what}, features {self.num_features}>"


__all__ = ["TrailerDataset"]
