"""The CPU path of extraction: both runtimes (PyTorch in channels-last, OpenVINO) give every
backbone's features within 1e-4 of the weights' own transforms and the eager network, the
OpenVINO form is converted once and reused, batches run in micro-batches and resizes in
slices without changing a value, chunks of 3D clips are sized from the clip, and a runtime
that cannot run says so in one line."""

import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MeanRunner, mean_features, shot_frames, write_h264

from t12k.backbones import REGISTRY, Kind, get_spec, load_backbone
from t12k.errors import T12kError
from t12k.pipeline import extract as ex
from t12k.pipeline.extract import backbone as runner_module
from t12k.pipeline.extract import engine as engine_module
from t12k.pipeline.extract import transforms
from t12k.pipeline.media import iter_frames
from t12k.shots import plan_clips

# OpenVINO is a default dependency where PyPI has its wheels: CI (CI=true) runs these tests, never skips them
needs_openvino = pytest.mark.skipif(
    not runner_module.openvino_installed() and not os.environ.get("CI"), reason="openvino is not installed"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One 24 fps trailer of two shots (20 and 10 frames) and its Shot-24 plan: two clips, one
    black-padded (the 3D networks on a CPU take seconds a clip)."""
    video = write_h264(tmp_path_factory.mktemp("cpu") / "t1.mp4", shot_frames([20, 10], size=(96, 64), seed=5))
    return video, plan_clips(np.array([[0, 19], [20, 29]]), 30, "shot", 24, 24)


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    """A cache folder of converted networks for this module (T12K_CACHE)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("T12K_CACHE", str(tmp_path_factory.mktemp("t12k-cache")))
    yield
    mp.undo()


@functools.cache
def _by_hand(key: str, video: Path, reps: tuple[int, ...]) -> np.ndarray:
    """The eager network on the clips' frames through the weights' own transforms (once per
    backbone: both runtimes are compared with it)."""
    frames = list(iter_frames(video))
    plan = plan_clips(np.array([[0, 19], [20, 29]]), 30, "shot", 24, 24)
    spec = get_spec(key)
    model, _ = load_backbone(key, "none")
    if spec.kind == Kind.IMAGE:
        x = torch.stack([torch.from_numpy(frames[r].copy()).permute(2, 0, 1) for r in reps])
    else:
        black = np.zeros_like(frames[0])
        x = torch.stack(
            [
                torch.from_numpy(np.stack([frames[i] if i >= 0 else black for i in row])).permute(0, 3, 1, 2)
                for row in plan.frames
            ]
        )
    with torch.no_grad():
        return model(spec.transforms()(x)).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["torch", pytest.param("openvino", marks=needs_openvino)])
@pytest.mark.parametrize("key", list(REGISTRY))
def test_each_runtime_gives_the_backbone_by_hand(tiny, ov_cache, key, runtime):
    video, plan = tiny
    runner = ex.BackboneRunner(get_spec(key), "none", "cpu", runtime=runtime)
    assert runner.runtime == runtime
    assert runner.channels_last == (runtime == "torch" and not key.startswith("swin"))
    feats, table = ex.clip_features(video, plan, [runner])
    expected = _by_hand(key, video, tuple(table[:, 2].tolist()))
    assert feats[key].shape == (2, get_spec(key).num_features)
    np.testing.assert_allclose(feats[key], expected, atol=1e-4, rtol=1e-4)


LEAN_RUN = """
import os, sys, numpy as np
forks = []
os.register_at_fork(before=lambda: forks.append(1))  # os.fork, as OpenVINO's telemetry sender forks
from t12k.backbones import get_spec
from t12k.pipeline import extract as ex
from t12k.shots import plan_clips
plan = plan_clips(np.array([[0, 19], [20, 29]]), 30, "shot", 24, 24)
runner = ex.BackboneRunner(get_spec("shufflenet2d"), "none", "cpu", runtime="openvino")
feats, _ = ex.clip_features(sys.argv[1], plan, [runner])
np.save(sys.argv[2], feats["shufflenet2d"])
import openvino.tools.ovc.telemetry_utils as telemetry
print(runner.weights_used, "|", runner.model is None, "torchvision" in sys.modules, telemetry.tm.__name__, len(forks))
"""


@needs_openvino
def test_the_openvino_form_is_converted_once_and_reused(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("T12K_CACHE", str(cache))
    video, plan = tiny
    spec = get_spec("shufflenet2d")
    first = ex.BackboneRunner(spec, "none", "cpu", runtime="openvino")
    feats, _ = ex.clip_features(video, plan, [first])
    saved = sorted((cache / "openvino").glob("shufflenet2d-*.xml"))
    assert len(saved) == 1 and saved[0].with_suffix(".bin").stat().st_size > 4_000_000  # 2.3 M float32 weights
    assert saved[0].stem.endswith("-3x224x224")
    assert first.model is None  # the PyTorch network is let go once OpenVINO has its own form

    # a later run starts from the converted form: no conversion, no PyTorch network, no torchvision;
    # and OpenVINO's usage telemetry is its stub: nothing sent, no fork of the process
    env = {**os.environ, "T12K_CACHE": str(cache)}
    cmd = [sys.executable, "-c", LEAN_RUN, str(video), str(tmp_path / "again.npy")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"{first.weights_used} | True False openvino.tools.ovc.telemetry_stub 0"
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), feats["shufflenet2d"])
    assert sorted((cache / "openvino").glob("shufflenet2d-*.xml")) == saved

    # other weights are another network: converted anew, never confused with the cached one
    model, _ = load_backbone("shufflenet2d", "none")
    torch.nn.init.zeros_(model.conv1[0].weight)
    torch.save(model.state_dict(), tmp_path / "other.pth")
    other = ex.BackboneRunner(spec, str(tmp_path / "other.pth"), "cpu", runtime="openvino")
    assert other.model is not None  # nothing kept for these weights: built from PyTorch
    feats_other, _ = ex.clip_features(video, plan, [other])
    assert len(list((cache / "openvino").glob("shufflenet2d-*.xml"))) == 2
    assert not np.allclose(feats_other["shufflenet2d"], feats["shufflenet2d"])
    assert other.weights_used.startswith("file:other.pth:sha256:")


@pytest.mark.parametrize("runtime", ["torch", pytest.param("openvino", marks=needs_openvino)])
def test_micro_batches_give_the_features_of_whole_batches(ov_cache, monkeypatch, runtime):
    runner = ex.BackboneRunner(get_spec("shufflenet3d"), "none", "cpu", runtime=runtime)
    x = torch.randint(0, 256, (5, 8, 3, 112, 112), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(runner_module, "CPU_MICRO_CLIPS", 2)
    assert runner_module.micro_batch(tuple(x.shape[1:]), 32) == 2
    small = runner.forward(x)
    monkeypatch.setattr(runner_module, "CPU_MICRO_CLIPS", 64)
    monkeypatch.setattr(runner_module, "CPU_MICRO_BYTES", 1 << 30)
    whole = runner.forward(x)
    assert small.shape == whole.shape == (5, 1024)
    torch.testing.assert_close(small, whole, atol=1e-4, rtol=1e-5)


def test_micro_batches_are_sized_from_the_clip():
    assert runner_module.micro_batch((3, 224, 224), 32) == 8  # 2D: 8 clips
    assert runner_module.micro_batch((24, 3, 112, 112), 32) == 4  # R(2+1)D, ShuffleNet 3D: 4 clips
    assert runner_module.micro_batch((24, 3, 224, 224), 32) == 1  # Swin 3D: 1 clip
    assert runner_module.micro_batch((3, 224, 224), 3) == 3  # never more than the batch


@pytest.mark.parametrize("key", ["resnet", "r2plus1d"])
def test_resizing_in_slices_gives_the_same_frames(monkeypatch, key):
    geometry, _ = ex.split_transforms(get_spec(key))
    x = torch.randint(0, 256, (19, 3, 90, 161), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    sliced = geometry(x)
    monkeypatch.setattr(transforms, "CPU_SLICE", 1000)
    assert torch.equal(sliced, geometry(x))


def test_chunks_of_3d_clips_hold_a_bounded_number_of_frames(three_videos, monkeypatch):
    seen = []

    class Recording(ex.ClipStream):
        def __init__(self, jobs, geometries, chunk=32, *a, **k):
            seen.append(chunk)
            super().__init__(jobs, geometries, chunk, *a, **k)

    monkeypatch.setattr(engine_module, "ClipStream", Recording)
    shots = np.array([[0, 59], [60, 109], [110, 179]])
    # clips of 24 frames of 360p: 4 in 64 MiB; of 8 frames: 12 would fit, but a CPU launches 8
    for fps, chunk in ((24, 4), (8, runner_module.CPU_MICRO_CLIPS)):
        plan = plan_clips(shots, 180, "shot", 24, fps)
        runner = MeanRunner("vid", "3d")
        done: dict = {}
        engine = ex.Engine([runner], batch_size=32, workers=0)
        engine.run([ex.Job("a1", str(three_videos / "a1.mp4"), plan)], lambda m, f, r, d=done: d.update(f), print)
        assert seen[-1] == chunk
        np.testing.assert_allclose(done["vid"], mean_features(three_videos / "a1.mp4", plan, runner.geometry))
    ex.Engine([MeanRunner("vid", "3d")], batch_size=32, workers=0, chunk=7).run(
        [ex.Job("a1", str(three_videos / "a1.mp4"), plan)], lambda m, f, r: None, print
    )
    assert seen[-1] == 7  # a chunk size given is kept


def test_a_cpu_launches_the_model_a_micro_batch_at_a_time(three_videos):
    """A CPU runs a batch in micro-batches anyway: the engine launches the model as soon as a
    micro-batch of clips is decoded (the largest of its runners'), not after a whole batch, so
    decoding the next clips overlaps the model. A GPU keeps whole batches."""
    shots = np.array([[0, 59], [60, 109], [110, 179]])
    plan = plan_clips(shots, 180, "shot", 24, 24)  # 9 clips: launched as 8 and 1, not as one batch of 9
    runner = MeanRunner("img", "2d")
    engine = ex.Engine([runner], batch_size=32, workers=0)
    done: dict = {}
    engine.run([ex.Job("a1", str(three_videos / "a1.mp4"), plan)], lambda m, f, r: done.update(f), print)
    step = runner_module.CPU_MICRO_CLIPS
    assert runner.batches == [step] * (len(plan) // step) + ([len(plan) % step] if len(plan) % step else [])
    np.testing.assert_allclose(done["img"], mean_features(three_videos / "a1.mp4", plan, runner.geometry))

    r2plus1d = ex.BackboneRunner(get_spec("r2plus1d"), "none", "cpu", runtime="torch")
    plans = {"a1": plan}
    assert ex.Engine([r2plus1d], batch_size=32).launch_size(plans) == 4  # 4 clips of 24x112x112
    assert ex.Engine([r2plus1d, runner], batch_size=32).launch_size(plans) == step  # each gets whole ones
    assert ex.Engine([MeanRunner("img", "2d", device="cuda")], batch_size=32).launch_size(plans) == 32


def test_the_engine_prepares_the_networks_while_the_first_clips_are_decoded(three_videos):
    """Each runner's `prepare` gets the plan's frames per clip from a thread of the engine (an
    OpenVINO network is read and compiled meanwhile, not after the first chunk)."""
    asked = []

    class Preparing(MeanRunner):
        def prepare(self, frames):
            asked.append((frames, threading.current_thread().name))

    shots = np.array([[0, 59], [60, 109], [110, 179]])
    for fps in (24, 8):
        plan = plan_clips(shots, 180, "shot", 24, fps)
        runner = Preparing("vid", "3d")
        done: dict = {}
        ex.Engine([runner], batch_size=32, workers=0).run(
            [ex.Job("a1", str(three_videos / "a1.mp4"), plan)], lambda m, f, r, d=done: d.update(f), print
        )
        assert asked[-1] == (fps, "t12k-prepare")
        np.testing.assert_allclose(done["vid"], mean_features(three_videos / "a1.mp4", plan, runner.geometry))


@needs_openvino
@pytest.mark.parametrize("key", ["shufflenet2d", "shufflenet3d"])
def test_a_prepared_openvino_network_is_the_one_the_batches_use(tiny, ov_cache, key):
    video, plan = tiny
    runner = ex.BackboneRunner(get_spec(key), "none", "cpu", runtime="openvino")
    runner.prepare(plan.frames.shape[1])
    (made,) = runner.nets.values()
    feats, _ = ex.clip_features(video, plan, [runner])
    assert list(runner.nets.values()) == [made]  # no second network for another shape
    assert feats[key].shape == (len(plan), runner.spec.num_features)


def test_runtimes_that_cannot_run_are_one_line_errors(monkeypatch):
    assert runner_module.resolve_runtime("torch", "cpu", "fp32") == "torch"
    assert runner_module.resolve_runtime("auto", "cpu", "bf16") == "torch"  # OpenVINO is fp32 here
    cases = [
        (("banana", "cpu", "fp32"), "--runtime must be one of auto, torch, openvino"),
        (("openvino", "cuda", "fp32"), "--runtime openvino runs on the CPU"),
        (("openvino", "cpu", "bf16"), "--runtime openvino computes in fp32"),
    ]
    monkeypatch.setattr(runner_module, "openvino_installed", lambda: True)
    assert runner_module.resolve_runtime("auto", "cpu", "fp32") == "openvino"
    for args, message in cases:
        with pytest.raises(T12kError, match=message):
            runner_module.resolve_runtime(*args)
    monkeypatch.setattr(runner_module, "openvino_installed", lambda: False)
    assert runner_module.resolve_runtime("auto", "cpu", "fp32") == "torch"
    with pytest.raises(T12kError, match="pip install openvino"):
        runner_module.resolve_runtime("openvino", "cpu", "fp32")
    with pytest.raises(T12kError, match="--runtime must be one of"):
        ex.ExtractConfig(runtime="onnx")


@needs_openvino
def test_decode_workers_run_after_the_openvino_networks_are_let_go(tmp_path):
    """OpenVINO's CPU plugin gives the main thread an alternate signal stack; before t12k kept
    one OpenVINO Core for the whole process, the sequence below (networks converted, compiled
    and let go, then an engine with decode workers) ended in a SIGSEGV from the kernel at the
    workers' SIGCHLD. It is run in a pytest of its own, where it crashed."""
    here = Path(__file__).parent
    tests = [
        f"{here / 'test_cpu_path.py'}::test_the_openvino_form_is_converted_once_and_reused",
        f"{here / 'test_engine.py'}::test_batches_cross_trailers_and_every_clip_gets_its_own_feature[2]",
    ]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *tests]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=here.parent)
    assert run.returncode == 0, (run.returncode, run.stdout[-1500:])
    assert "2 passed" in run.stdout
