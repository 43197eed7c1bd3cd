"""Trailer ids: one rule (storage.check_id) for lists, fetch and stores, its limits named."""

from __future__ import annotations

import numpy as np
import pytest

from t12k.errors import T12kError
from t12k.pipeline.fetch import read_items
from t12k.storage import FeatureStore, check_id


def test_the_longest_id_passes_and_a_longer_one_names_the_limit(tmp_path):
    assert check_id("a" * 200) == "a" * 200
    with pytest.raises(T12kError, match=r"\(201 characters\): ids have 1 to 200 characters") as err:
        check_id("a" * 201)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300  # one line, not the whole id


def test_a_300_character_id_in_a_list_is_refused_with_the_limit(tmp_path):
    (tmp_path / "list.csv").write_text(f"id,url\nok,http://h/a.mp4\n{'x' * 300},http://h/b.mp4\n")
    with pytest.raises(T12kError, match=r"list.csv:3: invalid trailer id 'x+'\.\.\. \(300 characters\).*1 to 200"):
        read_items(tmp_path / "list.csv")


def test_a_store_refuses_a_too_long_id_with_the_limit(tmp_path):
    store = FeatureStore.create_or_append(tmp_path / "s.zarr", {"backbone": "x"}, {"num_features": 2})
    with pytest.raises(T12kError, match="1 to 200 characters"):
        store.write_features("b" * 300, np.zeros((1, 2)))
    assert store.ids() == []
