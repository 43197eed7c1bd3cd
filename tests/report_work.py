"""The work folder the report tests read: the `t12k run` test corpus (five generated trailers,
a 404 and a file that is not a video) through `t12k.run` once per test process, and a head
trained one epoch on its feature store (for --checkpoint)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import run_corpus as rc

import t12k
from t12k import GENRES

_SHARED: dict[str, Path] = {}
STORE = "trailers_i_shufflenet_fpc24.zarr"


def work() -> Path:
    """The run folder (read-only for the tests: copy it before changing it)."""
    if "work" not in _SHARED:
        scratch = Path(tempfile.mkdtemp(prefix="t12k-report-tests-"))
        atexit.register(shutil.rmtree, scratch, True)  # removed when the test process ends
        out = scratch / "work"
        summary = t12k.run(rc.items(rc.served()), out, "shufflenet2d", weights="none", device="cpu", sleep=0)
        assert sorted(summary.done) == sorted(rc.GOOD), summary.text()
        _SHARED["work"] = out
    return _SHARED["work"]


def trained() -> Path:
    """checkpoint.pt of a head trained one epoch on the run's store (split 0: 3 train, 1 val, 1 test)."""
    if "ckpt" not in _SHARED:
        from t12k.divita.train import TrainConfig, train
        from t12k.storage import MTGC, write_mtgc

        folder = work().parent
        ids = sorted(rc.GOOD)
        rng = np.random.default_rng(0)
        y = np.zeros((len(ids), len(GENRES)), np.int64)
        y[np.arange(len(ids)), rng.integers(0, len(GENRES), len(ids))] = 1
        y[:, 0] = 1  # every split has a positive of some genre
        splits = np.tile(np.array([[0], [0], [0], [1], [2]]), (1, 3))
        write_mtgc(folder / "mtgc.csv", MTGC(ids, y, splits))
        cfg = TrainConfig(
            image_store=work() / "features" / STORE,
            labels=folder / "mtgc.csv",
            out_dir=folder / "run",
            max_epochs=2,
            device="cpu",
        )
        train(cfg, progress=False)
        _SHARED["ckpt"] = folder / "run" / "checkpoint.pt"
    return _SHARED["ckpt"]


def copy(dst: Path) -> Path:
    """A copy of the run folder to change."""
    shutil.copytree(work(), dst, ignore=shutil.ignore_patterns("report"))
    return dst
