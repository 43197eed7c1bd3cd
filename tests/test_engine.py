"""The extraction engine: transforms split between workers and device, decode workers,
batches across trailers, failures, precision, and a killed run resumed."""

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import THREE_SHOTS, MeanRunner, mean_features

from t12k.backbones import REGISTRY, get_spec
from t12k.cli import main as cli_main
from t12k.device import device_math
from t12k.errors import T12kError
from t12k.pipeline import extract as ex
from t12k.pipeline.extract import clip_inputs as decode
from t12k.pipeline.extract import inputs
from t12k.shots import plan_clips
from t12k.shots.clips import color_counts
from t12k.storage import FeatureStore, ShotStore

SHOTS = THREE_SHOTS
QUIET = {"device": "cpu", "progress": False, "log": lambda m: None}


@pytest.mark.parametrize("size", [(90, 161), (360, 640), (480, 270), (224, 224)])
@pytest.mark.parametrize("key", list(REGISTRY))
def test_split_transforms_give_the_weights_transforms_bit_for_bit(key, size):
    spec = get_spec(key)
    geometry, normalize = ex.split_transforms(spec)
    g = torch.Generator().manual_seed(1)
    if spec.kind == "2d":
        x = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8, generator=g)
        y = normalize(geometry(x))
    else:
        x = torch.randint(0, 256, (2, 5, 3, *size), dtype=torch.uint8, generator=g)
        z = geometry(x.reshape(10, 3, *size))
        assert z.dtype == torch.uint8
        y = normalize(z.reshape(2, 5, *z.shape[1:]))
    ref = spec.transforms()(x)
    assert y.shape == ref.shape
    assert torch.equal(y, ref)


@pytest.mark.parametrize("size", [(128, 171), (360, 640)])  # R(2+1)D's resize size: no resize, only the crop
@pytest.mark.parametrize("key", [k for k in REGISTRY if REGISTRY[k].kind == "3d"])
def test_the_3d_geometry_never_returns_the_memory_it_was_given(key, size):
    """A producer decodes every chunk's 3D frames into one reused buffer and resizes from it
    (`apply_geometries(..., frames_3d)`): what comes out must be new memory, also when a
    video already has the resize size and only the crop is left."""
    geometry, _ = ex.split_transforms(get_spec(key))
    raw = torch.randint(0, 256, (2, 3, *size, 3), dtype=torch.uint8)
    (y,) = ex.apply_geometries([geometry], [], frames_3d=raw)
    expected = y.clone()
    assert y.untyped_storage().data_ptr() != raw.untyped_storage().data_ptr()
    raw.zero_()  # the next chunk decoded into the buffer
    assert torch.equal(y, expected)


def test_the_split_transforms_run_without_importing_torchvision(tmp_path):
    """A decode worker resizes, and a run whose network OpenVINO holds normalizes, without
    torchvision's import (1.3 s: it pulls in torch._dynamo)."""
    geometries = [ex.split_transforms(get_spec(k)) for k in ("resnet", "r2plus1d")]
    (tmp_path / "parts.pkl").write_bytes(pickle.dumps(geometries))
    code = (
        "import pickle, sys, torch\n"
        f"parts = pickle.loads(open({str(tmp_path / 'parts.pkl')!r}, 'rb').read())\n"
        "(g2, n2), (g3, n3) = parts\n"
        "print(tuple(n2(g2(torch.zeros(1, 3, 90, 161, dtype=torch.uint8))).shape), end=' ')\n"
        "y = g3(torch.zeros(5, 3, 90, 161, dtype=torch.uint8)).reshape(1, 5, 3, 112, 112)\n"
        "print(tuple(n3(y).shape), end=' ')\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(1,", "3,", "224,", "224)", "(1,", "3,", "5,", "112,", "112)", "False"]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_cross_trailers_and_every_clip_gets_its_own_feature(three_videos, workers):
    plans = {m: plan_clips(np.array(s), s[-1][1] + 1, "shot", 24, 8) for m, s in SHOTS.items()}
    jobs = [ex.Job(m, str(three_videos / f"{m}.mp4"), p) for m, p in plans.items()]
    runners = [MeanRunner("img", "2d"), MeanRunner("vid", "3d")]
    done, failed = {}, {}
    engine = ex.Engine(runners, batch_size=5, workers=workers, chunk=4)
    stats = engine.run(jobs, lambda m, f, r: done.__setitem__(m, (f, r)), failed.__setitem__)
    assert not failed and sorted(done) == sorted(SHOTS)
    total = sum(len(p) for p in plans.values())  # 9 + 6 + 8 clips
    assert stats.clips == total == 23
    assert runners[0].batches == [5, 5, 5, 5, 3]  # 5 does not divide any trailer: batches mix trailers
    for m, plan in plans.items():
        feats, reps = done[m]
        video = three_videos / f"{m}.mp4"
        np.testing.assert_allclose(feats["img"], mean_features(video, plan, runners[0].geometry), rtol=1e-6)
        np.testing.assert_allclose(feats["vid"], mean_features(video, plan, runners[1].geometry), rtol=1e-6)
        assert ((reps >= plan.spans[:, 0]) & (reps <= plan.spans[:, 1])).all()


def test_workers_and_batches_do_not_change_the_stores(three_videos, shots_store, tmp_path):
    keys = "shufflenet2d,r2plus1d"
    ex.extract_features(
        three_videos,
        shots_store,
        tmp_path / "a",
        backbones=keys,
        weights="none",
        fps=4,
        workers=0,
        batch_size=32,
        **QUIET,
    )
    ex.extract_features(
        three_videos,
        shots_store,
        tmp_path / "b",
        backbones=keys,
        weights="none",
        fps=4,
        workers=2,
        batch_size=5,
        **QUIET,
    )
    for key in keys.split(","):
        name = get_spec(key).store_name(24, 4)
        a, b = FeatureStore.open(tmp_path / "a" / name), FeatureStore.open(tmp_path / "b" / name)
        assert a.ids() == b.ids() == sorted(SHOTS)
        for m in SHOTS:
            np.testing.assert_allclose(a.read(m), b.read(m), atol=1e-5, rtol=1e-5)
            np.testing.assert_array_equal(a.read(m, "clips"), b.read(m, "clips"))


def test_resizing_on_the_device_gives_the_same_store(three_videos, shots_store, tmp_path):
    keys = "shufflenet2d,swin2d,shufflenet3d"
    for where in ("workers", "device"):
        ex.extract_features(
            three_videos,
            shots_store,
            tmp_path / where,
            backbones=keys,
            weights="none",
            fps=6,
            workers=1,
            resize_on=where,
            batch_size=3,
            ids=["b2", "c3"],
            **QUIET,
        )
    for key in keys.split(","):
        name = get_spec(key).store_name(24, 6)
        a, b = FeatureStore.open(tmp_path / "workers" / name), FeatureStore.open(tmp_path / "device" / name)
        assert a.ids() == b.ids() == ["b2", "c3"]
        for m in a.ids():
            np.testing.assert_allclose(a.read(m), b.read(m), atol=1e-5, rtol=1e-5)
            np.testing.assert_array_equal(a.read(m, "clips"), b.read(m, "clips"))


def test_each_trailer_is_decoded_once_for_all_backbones(three_videos, shots_store, tmp_path, monkeypatch):
    calls = []
    real = decode.iter_frames

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decode, "iter_frames", counting)
    ex.extract_features(
        three_videos,
        shots_store,
        tmp_path,
        backbones="shufflenet2d,resnet",
        weights="none",
        workers=0,
        ids=["b2", "c3"],
        **QUIET,
    )
    assert sorted(calls) == ["b2.mp4", "c3.mp4"]


def test_a_corrupt_trailer_fails_alone_with_workers(three_videos, shots_store, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(three_videos, videos)
    data = (videos / "b2.mp4").read_bytes()
    (videos / "b2.mp4").write_bytes(data[: len(data) // 3])  # truncated mid-stream
    out = tmp_path / "out"
    summary = ex.extract_features(
        videos, shots_store, out, backbones="shufflenet2d", weights="none", workers=2, batch_size=4, **QUIET
    )
    assert sorted(summary.done) == ["a1", "c3"] and list(summary.failed) == ["b2"]
    assert "b2" in summary.failed["b2"] and "\n" not in summary.failed["b2"]
    store = FeatureStore.open(out / get_spec("shufflenet2d").store_name())
    assert store.ids() == ["a1", "c3"]
    rows = (out / "extract.manifest.csv").read_text()
    assert "b2,failed" in rows


def test_bf16_is_close_to_fp32_and_a_store_keeps_one_precision(three_videos, shots_store, tmp_path):
    common = dict(backbones="shufflenet2d", weights="none", ids=["a1"], workers=0, **QUIET)
    ex.extract_features(three_videos, shots_store, tmp_path / "fp32", **common)
    ex.extract_features(three_videos, shots_store, tmp_path / "bf16", precision="bf16", **common)
    name = get_spec("shufflenet2d").store_name()
    a = FeatureStore.open(tmp_path / "fp32" / name).read("a1")
    b = FeatureStore.open(tmp_path / "bf16" / name).read("a1")
    rel = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < rel < 0.05
    with pytest.raises(T12kError, match="precision"):
        ex.extract_features(three_videos, shots_store, tmp_path / "bf16", **common)


def test_unknown_precision_and_bad_workers_are_one_line_errors(three_videos, shots_store, tmp_path, capsys):
    base = [
        "extract",
        "--weights",
        "none",
        "--videos",
        str(three_videos),
        "--shots",
        str(shots_store),
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
        "--quiet",
    ]
    assert cli_main(base + ["--workers", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--workers" in err and len(err.splitlines()) == 1
    with pytest.raises(T12kError, match="precision"):
        ex.BackboneRunner(get_spec("shufflenet2d"), "none", "cpu", precision="fp8")


def test_a_killed_run_resumes_to_the_same_store(three_videos, shots_store, tmp_path):
    """SIGKILL `t12k extract` once a trailer is in the store; the re-run completes the store
    and it equals an uninterrupted run's."""
    videos = tmp_path / "videos"
    videos.mkdir()
    store = ShotStore.open(shots_store)
    shots2 = ShotStore.create_or_append(tmp_path / "shots.zarr", store.settings)
    for k in range(3):
        for m in SHOTS:
            shutil.copyfile(three_videos / f"{m}.mp4", videos / f"{m}{k}.mp4")
            shots2.write_shots(f"{m}{k}", store.shots(m), store.predictions(m))
    args = [
        "extract",
        "--backbone",
        "resnet",
        "--weights",
        "none",
        "--videos",
        str(videos),
        "--shots",
        str(tmp_path / "shots.zarr"),
        "--device",
        "cpu",
        "--quiet",
        "--batch-size",
        "2",
        "--workers",
        "1",
    ]
    name = get_spec("resnet").store_name()
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "t12k.cli", *args, "--out", str(killed)],
        env=env,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed / name).is_dir() and any(
            not p.name.startswith(".") and p.is_dir() and (p / ".zarray").exists() for p in (killed / name).iterdir()
        ):
            break
        time.sleep(0.05)
    was_running = proc.poll() is None
    proc.kill()
    proc.wait()
    partial = FeatureStore.open(killed / name)
    n_before = len(partial.ids())
    for m in partial.ids():  # whatever is visible is whole
        assert partial.read(m).shape[0] == partial.read(m, "clips").shape[0] > 0
    assert cli_main([*args, "--out", str(killed)]) == 0
    assert cli_main([*args, "--out", str(tmp_path / "whole")]) == 0
    a, b = FeatureStore.open(killed / name), FeatureStore.open(tmp_path / "whole" / name)
    assert a.ids() == b.ids() and len(a.ids()) == 9
    for m in a.ids():  # float noise only: other batches and thread counts sum in another order
        np.testing.assert_allclose(a.read(m), b.read(m), atol=1e-6 * np.abs(b.read(m)).max(), rtol=1e-5)
        np.testing.assert_array_equal(a.read(m, "clips"), b.read(m, "clips"))
    assert was_running and 0 < n_before < 9


@pytest.mark.parametrize("key", list(REGISTRY))
def test_every_spec_describes_the_preprocessing_the_engine_applies(key):
    spec = get_spec(key)
    d = spec.preprocessing()
    geometry, normalize = ex.split_transforms(spec)
    assert (d["resize"], d["crop"]) == (list(geometry.resize_size), list(geometry.crop_size))
    assert (d["interpolation"], d["antialias"]) == (geometry.interpolation, geometry.antialias)
    assert np.allclose(d["mean"], normalize.mean, atol=1e-6) and np.allclose(d["std"], normalize.std, atol=1e-6)
    assert d["channel_order"].startswith("BGR" if key == "shufflenet3d" else "RGB")
    assert d["weights"]


@pytest.mark.parametrize("precision, mode", [("fp32", "ieee"), ("bf16", "ieee"), ("tf32", "tf32")])
def test_device_math_sets_the_float32_mode_on_cuda_and_restores_it(precision, mode):
    # The switches are plain settings: they can be checked without a GPU.
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (conv.fp32_precision, matmul.fp32_precision, torch.backends.cudnn.benchmark)
    with device_math("cuda", precision):
        assert (conv.fp32_precision, matmul.fp32_precision) == (mode, mode)
        assert torch.backends.cudnn.benchmark is True
    assert (conv.fp32_precision, matmul.fp32_precision, torch.backends.cudnn.benchmark) == before
    with device_math("cpu", "tf32"):  # nothing changes for a CPU run
        assert (conv.fp32_precision, matmul.fp32_precision, torch.backends.cudnn.benchmark) == before


def test_tf32_is_recorded_and_not_mixed_with_fp32(three_videos, shots_store, tmp_path):
    common = dict(backbones="shufflenet2d", weights="none", runtime="torch", ids=["c3"], workers=0, **QUIET)
    ex.extract_features(three_videos, shots_store, tmp_path / "fp32", **common)
    ex.extract_features(three_videos, shots_store, tmp_path / "tf32", precision="tf32", **common)
    name = get_spec("shufflenet2d").store_name()
    a, b = FeatureStore.open(tmp_path / "fp32" / name), FeatureStore.open(tmp_path / "tf32" / name)
    assert b.settings["precision"] == "tf32" and a.settings["precision"] == "fp32"
    np.testing.assert_array_equal(a.read("c3"), b.read("c3"))  # a CPU has no TF32: the same features
    with pytest.raises(T12kError, match="precision"):
        ex.extract_features(three_videos, shots_store, tmp_path / "tf32", **common)


def test_a_trailer_failing_while_its_batch_is_in_flight_is_dropped_alone(three_videos):
    """Features come back one batch late; a trailer whose decode fails after some of its clips
    were launched must be reported failed, never written, and its batch-mates still done."""
    plans = {m: plan_clips(np.array(s), s[-1][1] + 1, "shot", 24, 8) for m, s in SHOTS.items()}
    jobs = [ex.Job(m, str(three_videos / f"{m}.mp4"), p) for m, p in plans.items()]
    # b2's shots claim more frames than the video has: its decode fails after its first clip
    jobs[1] = ex.Job("b2", jobs[1].video, plan_clips(np.array([[0, 39], [40, 300]]), 301, "shot", 24, 8))
    runners = [MeanRunner("img", "2d")]
    done, failed = {}, {}
    ex.Engine(runners, batch_size=2, workers=0, chunk=1).run(
        jobs, lambda m, f, r: done.__setitem__(m, f), failed.__setitem__
    )
    assert sorted(done) == ["a1", "c3"] and list(failed) == ["b2"]
    assert "shots store does not match" in failed["b2"]
    for m in ("a1", "c3"):
        np.testing.assert_allclose(
            done[m]["img"], mean_features(three_videos / f"{m}.mp4", plans[m], runners[0].geometry), rtol=1e-6
        )


def _drain(ring) -> list[int]:
    import queue

    out = []
    while True:
        try:
            out.append(ring.free.get(timeout=1.0))
        except queue.Empty:
            return sorted(out)


@pytest.mark.parametrize("slot_clips", [1, 3])
def test_ring_slots_are_reused_without_overwriting_frames_in_use(three_videos, monkeypatch, slot_clips):
    """Raw 3D frames travel through a few reused shared-memory slots; a slot handed back too
    early would let a worker overwrite frames before the main process used them."""
    plans = {m: plan_clips(np.array(s), s[-1][1] + 1, "shot", 24, 8) for m, s in SHOTS.items()}
    jobs = [ex.Job(m, str(three_videos / f"{m}.mp4"), p) for m, p in plans.items()]
    clip_bytes = 8 * 72 * 128 * 3  # 8 frames of 128x72
    monkeypatch.setattr(ex.Engine, "SLOT_BYTES", slot_clips * clip_bytes)
    monkeypatch.setattr(ex.Engine, "RING_SLOTS", 2)  # fewer than the workers could use: reuse at once
    runners = [MeanRunner("vid", "3d"), MeanRunner("img", "2d")]
    engine = ex.Engine(runners, batch_size=5, workers=2, prefetch=1, chunk=4, resize_on="device")
    done, failed = {}, {}
    engine.run(jobs, lambda m, f, r: done.__setitem__(m, f), failed.__setitem__)
    assert not failed and sorted(done) == sorted(SHOTS)
    ring = engine.ring
    assert ring is not None and len(ring) == 2
    for m, plan in plans.items():
        video = three_videos / f"{m}.mp4"
        for r in runners:
            np.testing.assert_allclose(done[m][r.spec.key], mean_features(video, plan, r.geometry), rtol=1e-6)
    assert _drain(ring) == list(range(len(ring)))  # every slot came back


def test_failing_trailers_hand_their_ring_slots_back(three_videos, tmp_path, monkeypatch):
    import threading

    videos = tmp_path / "videos"
    videos.mkdir()
    good = plan_clips(np.array(SHOTS["c3"]), 135, "shot", 24, 8)
    bad = plan_clips(np.array([[0, 29], [30, 400]]), 401, "shot", 24, 8)  # decode fails after clip 1
    jobs = []
    for i in range(6):
        shutil.copy(three_videos / "c3.mp4", videos / f"t{i}.mp4")
        jobs.append(ex.Job(f"t{i}", str(videos / f"t{i}.mp4"), bad if i % 2 else good))
    # chunks of 4 clips: a bad trailer fails with clips 5 and 6 written into a slot not yet sent
    monkeypatch.setattr(ex.Engine, "SLOT_BYTES", 4 * 8 * 72 * 128 * 3)
    monkeypatch.setattr(ex.Engine, "RING_SLOTS", 1)  # one leaked slot and the run would hang
    engine = ex.Engine([MeanRunner("vid", "3d")], batch_size=2, workers=1, prefetch=1, chunk=4, resize_on="device")
    done, failed = [], {}
    run = threading.Thread(
        target=engine.run, args=(jobs, lambda m, f, r: done.append(m), failed.__setitem__), daemon=True
    )
    run.start()
    run.join(60)
    assert not run.is_alive(), "the engine hung: a failed trailer kept its ring slot"
    assert sorted(done) == ["t0", "t2", "t4"] and sorted(failed) == ["t1", "t3", "t5"]
    assert _drain(engine.ring) == list(range(len(engine.ring)))


def test_representatives_on_the_device_pick_the_workers_frames():
    from t12k.shots.clips import color_counts, representative_from_counts

    rng = np.random.default_rng(11)
    n, t = 5, 8
    frames = np.clip(rng.integers(0, 256, (n, 1, 12, 20, 3)) + rng.integers(-70, 70, (n, t, 12, 20, 3)), 0, 255).astype(
        np.uint8
    )
    real = np.ones((n, t), bool)
    real[1, 5:] = False  # a short shot: black padding
    real[3, 1:] = False  # a single real frame
    frames[~real] = 0
    frames[2, 4] = frames[2, 2]  # an exact tie
    got = ex.device_representatives(torch.from_numpy(frames), torch.from_numpy(real)).numpy()
    for i in range(n):
        k = int(real[i].sum())
        assert got[i] == representative_from_counts(np.stack([color_counts(f) for f in frames[i, :k]])), i


def test_covers_every_frame_only_at_the_video_frame_rate():
    shots = np.array([[0, 29], [30, 100], [101, 130]])
    assert ex.covers_every_frame(plan_clips(shots, 131, "shot", 24, 24))
    assert ex.covers_every_frame(plan_clips(shots, 131, "seq", 16, 24))
    assert not ex.covers_every_frame(plan_clips(shots, 131, "shot", 24, 12))


@pytest.mark.parametrize("workers", [0, 1])
def test_representatives_on_the_device_give_the_same_stores(three_videos, shots_store, tmp_path, workers, monkeypatch):
    keys = "shufflenet2d,shufflenet3d"
    calls = []
    real = ex.device_representatives
    monkeypatch.setattr(inputs, "device_representatives", lambda f, r: calls.append(len(f)) or real(f, r))
    monkeypatch.setattr(decode, "color_counts", lambda f: calls.append("worker") or color_counts(f))
    for where in ("workers", "device"):
        calls.clear()
        ex.extract_features(
            three_videos,
            shots_store,
            tmp_path / where,
            backbones=keys,
            weights="none",
            fps=24,
            workers=workers,
            resize_on="device",
            reps_on=where,
            batch_size=3,
            ids=["b2", "c3"],
            **QUIET,
        )
        clips = sum(len(plan_clips(np.array(SHOTS[m]), SHOTS[m][-1][1] + 1, "shot", 24, 24)) for m in ("b2", "c3"))
        if where == "device":  # every clip picked in this process, no histogram in the workers
            assert sum(calls) == clips and "worker" not in calls
        elif workers == 0:  # every frame of b2 and c3 got its histogram in the (in-process) worker
            assert calls == ["worker"] * (130 + 135)
    for key in keys.split(","):
        name = get_spec(key).store_name(24, 24)
        a, b = FeatureStore.open(tmp_path / "workers" / name), FeatureStore.open(tmp_path / "device" / name)
        assert a.ids() == b.ids() == ["b2", "c3"]
        for m in a.ids():
            np.testing.assert_array_equal(a.read(m, "clips"), b.read(m, "clips"))
            np.testing.assert_allclose(a.read(m), b.read(m), atol=1e-6, rtol=1e-6)
    reps = FeatureStore.open(tmp_path / "device" / get_spec("shufflenet2d").store_name()).read("b2", "clips")[:, 2]
    assert (reps >= 0).all()
