"""`t12k verify` over several stores, its output and its progress bars in one stream (a pipe,
as `t12k verify ... 2>&1 | tee log` makes it, without PYTHONUNBUFFERED): each store's bar is
drawn and cleared before that store's summary, and the next store's bar comes after it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

from t12k.storage import FeatureStore


def test_each_summary_follows_its_own_cleared_bar(tmp_path):
    names = ["a.zarr", "b.zarr", "c.zarr"]
    for name in names:
        store = FeatureStore.create_or_append(tmp_path / name, {"backbone": "x"}, {"num_features": 4})
        for i in range(30):
            store.write_features(f"m{i}", np.full((3, 4), i, np.float32))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    command = [sys.executable, "-m", "t12k.cli", "verify", *names]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout
    # what a terminal would show: carriage returns overwrite, so split on them too
    events = [e for e in re.split(r"[\r\n]", done.stdout) if e.strip()]
    order = [
        (e.split(":")[0].removeprefix("verify ").strip(), "bar" if e.startswith("verify ") else "summary")
        for e in events
    ]
    for name in names:
        bar = next(i for i, (n, kind) in enumerate(order) if n == name and kind == "bar")
        summary = next(i for i, (n, kind) in enumerate(order) if n == name and kind == "summary")
        assert bar < summary, order
        after = [n for n, kind in order[summary + 1 :] if kind == "bar"]
        assert name not in after, order  # no bar of this store after its summary
    assert [n for n, kind in order if kind == "summary"] == names
    assert all(f"{n}: features store, 30 trailers, all sound" in done.stdout for n in names)
