"""The small corpus of the `t12k run` tests: five short generated trailers with hard cuts, one
URL that answers 404 and one file that is not a video, served on a local HTTP server; the
settings every run test uses (cheap: shufflenet2d with random weights, on the CPU); the same
corpus through `fetch`, `shots` and `extract` in sequence; and the comparison of two run
folders, store by store and array by array."""

from __future__ import annotations

import atexit
import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np
from conftest import shot_frames, write_h264

from t12k.pipeline.demo import LocalServer
from t12k.pipeline.extract import ExtractConfig, extract_features
from t12k.pipeline.fetch import FetchConfig, FetchItem, fetch_collection
from t12k.pipeline.shots_command import ShotsConfig, detect_shots
from t12k.storage import FeatureStore, ShotStore

GOOD = {"r1": [30, 40], "r2": [50, 20, 30], "r3": [60], "r4": [25, 25, 25], "r5": [40, 45]}
BAD = ("missing", "junk")  # 404, and a download that is not a video
FETCH = FetchConfig(workers=2)
SHOTS = ShotsConfig(device="cpu")
EXTRACT = ExtractConfig(backbones="shufflenet2d", weights="none", device="cpu", batch_size=8)


def build(folder: Path) -> Path:
    """The corpus files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (mid, lengths) in enumerate(GOOD.items()):
        write_h264(folder / f"{mid}.mp4", shot_frames(lengths, seed=10 + i))
    (folder / "junk.mp4").write_bytes(b"this is not a video\n" * 50)
    return folder


_SHARED: dict[str, object] = {}


def _scratch() -> Path:
    """A folder for this test process's corpus and reference, removed when it ends."""
    if "scratch" not in _SHARED:
        folder = Path(tempfile.mkdtemp(prefix="t12k-run-tests-"))
        atexit.register(shutil.rmtree, folder, True)
        _SHARED["scratch"] = folder
    return _SHARED["scratch"]  # type: ignore[return-value]


def served() -> str:
    """The URL of the corpus, served once per test process (the run test files share it)."""
    if "url" not in _SHARED:
        server = LocalServer(build(_scratch() / "corpus")).__enter__()
        atexit.register(server.__exit__, None, None, None)
        _SHARED["url"] = server.url
    return _SHARED["url"]  # type: ignore[return-value]


def reference() -> Path:
    """The corpus through the three stage commands, once per test process."""
    if "reference" not in _SHARED:
        out = _scratch() / "reference"
        stage_commands(served(), out)
        _SHARED["reference"] = out
    return _SHARED["reference"]  # type: ignore[return-value]


def items(url: str, ids=None) -> list[FetchItem]:
    """The corpus as fetch items (every id, or `ids`) served from `url`."""
    return [FetchItem(m, f"{url}/{m}.mp4") for m in (ids or (*GOOD, *BAD))]


def stage_commands(url: str, out: Path) -> None:
    """The corpus through `fetch`, `shots` and `extract` in sequence, into the run layout."""
    fetch_collection(items(url), out / "videos", FETCH, progress=False)
    detect_shots(out / "videos", out / "shots.zarr", SHOTS, progress=False)
    extract_features(out / "videos", out / "shots.zarr", out / "features", EXTRACT, progress=False, log=lambda m: None)


def statuses(path: Path) -> dict[str, str]:
    """id -> status of a manifest ({} when there is none)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["id"]: r["status"] for r in csv.DictReader(fh)}


MANIFESTS = ("videos/manifest.csv", "shots.manifest.csv", "features/extract.manifest.csv")


def assert_same_stores(a: Path, b: Path, ids=None) -> None:
    """The shots and feature stores of run folders `a` and `b` hold the same trailers (all, or
    `ids`) with equal arrays; features equal to float32 rounding of the batch they ran in."""
    sa, sb = ShotStore.open(a / "shots.zarr"), ShotStore.open(b / "shots.zarr")
    want = sorted(ids) if ids is not None else sb.ids()
    assert (sa.ids() == want) if ids is None else set(want) <= set(sa.ids()), (sa.ids(), want)
    for m in want:
        np.testing.assert_array_equal(sa.shots(m), sb.shots(m))
        np.testing.assert_array_equal(sa.predictions(m), sb.predictions(m))
    names = sorted(p.name for p in (b / "features").glob("*.zarr"))
    assert names and sorted(p.name for p in (a / "features").glob("*.zarr")) == names
    for name in names:
        fa, fb = FeatureStore.open(a / "features" / name), FeatureStore.open(b / "features" / name)
        assert (fa.ids() == want) if ids is None else set(want) <= set(fa.ids()), (name, fa.ids(), want)
        assert fa.settings == fb.settings, (fa.settings, fb.settings)
        for m in want:
            np.testing.assert_array_equal(fa.read(m, "clips"), fb.read(m, "clips"))
            # clips share model batches with other trailers' clips: float32 sums in another order
            x = fb.read(m)
            np.testing.assert_allclose(fa.read(m), x, rtol=1e-5, atol=1e-6 * float(np.abs(x).max()))


def assert_same_statuses(a: Path, b: Path, without: tuple[str, ...] = ()) -> None:
    """Every manifest of run folders `a` and `b` gives each id the same status (ids in
    `without` left out)."""
    for name in MANIFESTS:
        sa = {k: v for k, v in statuses(a / name).items() if k not in without}
        sb = {k: v for k, v in statuses(b / name).items() if k not in without}
        assert sa == sb, name
