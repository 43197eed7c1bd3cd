"""The extract engine's device paths against the CPU.

On a CUDA machine these check what the CPU tests cannot: pinned memory, copies on a side
stream, features read back one batch late, resize and crop on the GPU, channels-last and the
float32 math modes. Tests parametrized over the device also run on "cpu", so their logic is
exercised on every machine; the "cuda" cases run where a GPU is visible
(`pytest tests/test_gpu.py -s` prints the measured differences).
"""

import numpy as np
import pytest
import torch
from conftest import THREE_SHOTS, MeanRunner, mean_features

from t12k.backbones import REGISTRY, get_spec
from t12k.pipeline import extract as ex
from t12k.pipeline.media import iter_frames
from t12k.shots import plan_clips
from t12k.storage import FeatureStore

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU visible")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("workers", [0, 2])
def test_engine_on_the_device_gives_every_clip_its_own_feature(three_videos, device, workers):
    plans = {m: plan_clips(np.array(s), s[-1][1] + 1, "shot", 24, 8) for m, s in THREE_SHOTS.items()}
    jobs = [ex.Job(m, str(three_videos / f"{m}.mp4"), p) for m, p in plans.items()]
    runners = [MeanRunner("img", "2d", device), MeanRunner("vid", "3d", device)]
    done, failed = {}, {}
    stats = ex.Engine(runners, batch_size=5, workers=workers, chunk=4).run(
        jobs, lambda m, f, r: done.__setitem__(m, f), failed.__setitem__
    )
    assert not failed and sorted(done) == sorted(THREE_SHOTS)
    assert stats.clips == 23 and set(stats.model_s) == {"img", "vid"}
    assert all(s >= 0 for s in stats.model_s.values())
    for m, plan in plans.items():
        video = three_videos / f"{m}.mp4"
        for r in runners:
            np.testing.assert_allclose(done[m][r.spec.key], mean_features(video, plan, r.geometry), rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_device_io_round_trips_and_times(device):
    io = ex.DeviceIO(device)
    x = torch.arange(4 * 3 * 5 * 7, dtype=torch.int64).reshape(4, 3, 5, 7).to(torch.uint8)
    src = x.pin_memory() if device == "cuda" else x
    a = io.mark()
    y = io.to_device(src)
    z = (y.float() * 2).sum((1, 2, 3))
    b = io.mark()
    (back,) = io.wait(io.to_host([z]))
    assert back.device.type == "cpu"
    torch.testing.assert_close(back, (x.float() * 2).sum((1, 2, 3)), rtol=0, atol=0)
    assert io.seconds(a, b) >= 0


def _frames(video, n=6):
    out = []
    for i, f in enumerate(iter_frames(video)):
        out.append(torch.from_numpy(f.copy()))
        if i + 1 == n:
            break
    return torch.stack(out).permute(0, 3, 1, 2).contiguous()  # (n, 3, H, W) uint8


@pytest.mark.parametrize("device", DEVICES)
def test_resize_on_the_device_matches_the_workers(three_videos, device):
    x = _frames(three_videos / "a1.mp4")
    geometries = sorted({ex.split_transforms(get_spec(k))[0] for k in REGISTRY}, key=repr)
    assert len(geometries) >= 4
    for g in geometries:
        cpu = g(x)
        dev = g(x.to(device)).cpu()
        assert dev.shape == cpu.shape and dev.dtype == torch.uint8
        diff = (dev.int() - cpu.int()).abs()
        # float rounding may land a pixel on the other side of .5 on a GPU, never further
        assert diff.max() <= 1, (g, int(diff.max()))
        assert (diff > 0).float().mean() < 0.01, (g, float((diff > 0).float().mean()))
        if device == "cpu":
            assert torch.equal(dev, cpu)


def _store_pair(three_videos, shots_store, tmp_path, key, precision, resize_on):
    common = dict(
        backbones=key, weights="none", ids=["c3"], fps=6, workers=0, batch_size=4, progress=False, log=lambda m: None
    )
    # the CPU reference in PyTorch (not OpenVINO, which `auto` picks on a CPU): only the device differs
    ex.extract_features(three_videos, shots_store, tmp_path / "cpu", device="cpu", runtime="torch", **common)
    ex.extract_features(
        three_videos, shots_store, tmp_path / "gpu", device="cuda", precision=precision, resize_on=resize_on, **common
    )
    name = get_spec(key).store_name(24, 6)
    a = FeatureStore.open(tmp_path / "cpu" / name).read("c3").astype(np.float64)
    b = FeatureStore.open(tmp_path / "gpu" / name).read("c3").astype(np.float64)
    rel = np.abs(a - b).max() / np.abs(a).max()
    cos = ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min()
    print(f"\n{key} {precision} resize on {resize_on}: max|d|/max|f| {rel:.2e}, min cosine {cos:.6f}")
    return rel, cos


@needs_cuda
@pytest.mark.parametrize("key", list(REGISTRY))
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_gpu_features_match_the_cpu(three_videos, shots_store, tmp_path, key, precision):
    # resize in the workers: the GPU sees the CPU's very inputs, so only the model math differs
    rel, cos = _store_pair(three_videos, shots_store, tmp_path, key, precision, "workers")
    if precision == "fp32":  # strict float32: the 1e-4
        assert rel < 1e-4
    else:
        assert rel < 0.05 and cos > 0.999


@needs_cuda
@pytest.mark.parametrize("key", ["shufflenet2d", "swin3d"])
def test_gpu_resize_gives_nearly_the_cpu_store(three_videos, shots_store, tmp_path, key):
    rel, cos = _store_pair(three_videos, shots_store, tmp_path, key, "fp32", "device")
    assert cos > 0.9999 and rel < 0.01
