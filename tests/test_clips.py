import numpy as np
import pytest

from t12k.errors import T12kError
from t12k.shots import plan_clips, representative_frame
from t12k.shots.clips import color_histogram


def test_shot24_pads_the_last_clip_of_a_shot():
    plan = plan_clips(np.array([[0, 49]]), 50, "shot", fpc=24)
    assert plan.spans.tolist() == [[0, 23], [24, 47], [48, 49]]
    last = plan.frames[2]
    assert last[:2].tolist() == [48, 49] and (last[2:] == -1).all() and len(last) == 24


def test_shot_clips_never_cross_a_shot_boundary():
    shots = np.array([[0, 30], [32, 40], [41, 99]])
    plan = plan_clips(shots, 100, "shot", fpc=24)
    for first, last in plan.spans:
        assert any(s <= first and last <= e for s, e in shots)
    # 31 -> 24 + 7, 9 -> 9, 59 -> 24 + 24 + 11
    assert len(plan) == 2 + 1 + 3
    assert (plan.frames[plan.frames >= 0] != 31).all()  # a frame between shots is in no clip


def test_seq_clips_cover_the_whole_video():
    plan = plan_clips(np.array([[0, 10], [20, 99]]), 100, "seq", fpc=32)
    assert plan.spans.tolist() == [[0, 31], [32, 63], [64, 95], [96, 99]]


@pytest.mark.parametrize("fps,step", [(24, 1), (12, 2), (8, 3), (6, 4), (4, 6)])
def test_frame_rate_keeps_every_kth_frame(fps, step):
    plan = plan_clips(np.array([[10, 57]]), 60, "shot", fpc=24, fps=fps)
    assert plan.frames.shape == (2, 24 // step)
    assert plan.frames[0].tolist() == list(range(10, 34, step))


def test_bad_settings_raise_clear_errors():
    with pytest.raises(T12kError, match="strategy"):
        plan_clips(np.array([[0, 9]]), 10, "scene")
    with pytest.raises(T12kError, match="divide"):
        plan_clips(np.array([[0, 9]]), 10, fps=5)


def test_representative_frame_never_picks_the_odd_frame():
    rng = np.random.default_rng(0)
    base = rng.integers(90, 110, (24, 32, 48, 3)).astype(np.uint8)
    for odd in (0, 7, 23):
        frames = base.copy()
        frames[odd] = 255  # a white flash
        hists = np.stack([color_histogram(f) for f in frames])
        k = representative_frame(hists)
        assert k != odd
    # with two clusters the representative belongs to the majority
    frames = np.concatenate([np.full((18, 8, 8, 3), 40, np.uint8), np.full((6, 8, 8, 3), 200, np.uint8)])
    assert representative_frame(np.stack([color_histogram(f) for f in frames])) < 18


def test_color_histogram_is_normalized_per_channel():
    h = color_histogram(np.zeros((10, 10, 3), np.uint8)).reshape(3, -1)
    assert np.allclose(h.sum(1), 1) and (h[:, 0] == 1).all()


def test_opencv_histogram_equals_the_numpy_definition():
    from t12k.shots.clips import _color_histogram_numpy

    rng = np.random.default_rng(3)
    every_value = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)
    for frame in (
        every_value,
        rng.integers(0, 256, (27, 48, 3), dtype=np.uint8),
        rng.integers(0, 256, (360, 641, 3), dtype=np.uint8)[:, ::2],
    ):  # non-contiguous too
        np.testing.assert_array_equal(color_histogram(frame), _color_histogram_numpy(frame))


def test_integer_representative_agrees_with_the_float_definition():
    from t12k.shots.clips import color_counts, representative_from_counts

    rng = np.random.default_rng(5)
    for trial in range(30):
        k = int(rng.integers(1, 25))
        base = rng.integers(0, 256, (1, 18, 32, 3))
        frames = np.clip(base + rng.integers(-60, 60, (k, 18, 32, 3)), 0, 255).astype(np.uint8)
        if trial % 3 == 0 and k > 2:
            frames[1] = frames[0]  # an exact tie: both pick the first
        counts = np.stack([color_counts(f) for f in frames])
        hists = np.stack([color_histogram(f) for f in frames])
        np.testing.assert_array_equal(counts / (18 * 32), hists)
        assert representative_from_counts(counts) == representative_frame(hists)
