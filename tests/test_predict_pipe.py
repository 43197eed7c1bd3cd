"""`t12k predict` decodes a video while it is normalized (issue 24, item 4), never writing the
normalized file. By default the one decode applies the normalizer's filters itself: the very
pictures the normalizer's x264 would encode (checked against a lossless encode), so shots and
clips are those of the normalized file and the probabilities differ by x264's loss only. With
`--reencode` the normalizer's H.264 goes through a pipe into the decode and the frames are the
normalized file's byte for byte, so shots, features and probabilities are too. A feed that
fails is one clear error; both ffmpeg processes end with the decode, whatever ends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shot_frames, write_h264

from t12k.errors import T12kError
from t12k.pipeline.media import ffmpeg_exe, normalize, normalize_command, probe
from t12k.pipeline.media.decode import iter_frame_pairs
from t12k.pipeline.predict import Piped
from t12k.shots.windows import INPUT_SIZE

pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's children from /proc (Linux)"),
]


def _quiet(*args, **kwargs) -> None:
    pass


def _children() -> set[int]:
    return {int(c) for t in Path(f"/proc/{os.getpid()}/task").iterdir() for c in (t / "children").read_text().split()}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A video `predict` normalizes: 30 fps, 480x400 (scaled to 432x360), two shots."""
    folder = tmp_path_factory.mktemp("pipe")
    return write_h264(folder / "v30.mp4", shot_frames([40, 35], size=(480, 400), seed=6), fps=30)


def test_frames_from_the_normalizers_pipe_are_the_normalized_files(source, tmp_path):
    normalize(source, tmp_path / "n.mp4")
    from_file = list(iter_frame_pairs(tmp_path / "n.mp4", INPUT_SIZE))
    piped = Piped(source, probe(source), tmp_path)
    assert piped.size == (432, 360)
    before = _children()
    from_pipe = list(piped.pairs(str(source), INPUT_SIZE))
    assert len(from_pipe) == len(from_file) == 60  # 2.5 s at 24 fps
    for (small_a, big_a), (small_b, big_b) in zip(from_file, from_pipe):
        assert big_a.shape == big_b.shape == (360, 432, 3)
        assert np.array_equal(small_a, small_b) and np.array_equal(big_a, big_b)
    assert _children() == before  # both processes ended and reaped
    assert sorted(os.listdir(tmp_path)) == ["n.mp4"]  # the pipe wrote no file


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _lossless(src: Path, dst: Path, size: tuple[int, int]) -> None:
    """`normalize`'s command with a lossless H.264 encode (x264's qp 0) instead of crf 18."""
    cmd = normalize_command(ffmpeg_exe(), src, dst, size)
    at = cmd.index("-crf")
    cmd[at : at + 2] = ["-qp", "0"]
    subprocess.run(cmd, check=True, timeout=120)


def test_unencoded_frames_are_the_pictures_the_normalizer_encodes(source, tmp_path):
    """Without `encode`, the one decode gives the frames of the normalizer's filters: byte for
    byte those of the same command with a lossless H.264 encode, and the normalized file's
    within x264's loss; one ffmpeg process, ended with the frames."""
    _lossless(source, tmp_path / "lossless.mp4", (432, 360))
    normalize(source, tmp_path / "n.mp4")
    exact = list(iter_frame_pairs(tmp_path / "lossless.mp4", INPUT_SIZE))
    normalized = list(iter_frame_pairs(tmp_path / "n.mp4", INPUT_SIZE))
    before = _children()
    raw = list(Piped(source, probe(source), tmp_path, encode=False).pairs(str(source), INPUT_SIZE))
    assert len(raw) == len(exact) == len(normalized) == 60
    for (small, big), (small_x, big_x), (_, big_n) in zip(raw, exact, normalized):
        assert big.shape == (360, 432, 3) and small.shape == (27, 48, 3)
        assert np.array_equal(small, small_x) and np.array_equal(big, big_x)
        assert 35 < _psnr(big, big_n) < float("inf")  # x264's crf 18: close, not the same
    assert _children() == before
    assert sorted(os.listdir(tmp_path)) == ["lossless.mp4", "n.mp4"]
    frames = Piped(source, probe(source), tmp_path, encode=False).pairs(str(source), INPUT_SIZE)
    next(frames)
    assert len(_children() - before) == 1
    frames.close()
    assert _children() == before


def test_a_feed_that_fails_mid_stream_is_normalizes_error(source, tmp_path):
    size = (432, 360)
    stream = tmp_path / "v.nut"
    normalize_cmd = normalize_command(ffmpeg_exe(), source, stream, size, container="nut")
    subprocess.run(normalize_cmd, check=True, timeout=120)
    half = stream.stat().st_size // 2
    script = f"import sys; sys.stdout.buffer.write(open({str(stream)!r}, 'rb').read({half})); sys.stdout.flush()"
    script += "; print('x264 [error]: the encoder broke', file=sys.stderr); sys.exit(3)"
    before = _children()
    with pytest.raises(T12kError) as exc:
        for _ in iter_frame_pairs(source, INPUT_SIZE, feed=[sys.executable, "-c", script], size=size):
            pass
    assert str(exc.value) == (
        f"cannot normalize video {source}: x264 [error]: the encoder broke; check the file or re-download it"
    )
    assert _children() == before
    with pytest.raises(ValueError, match="size"):
        next(iter_frame_pairs(source, INPUT_SIZE, feed=[sys.executable, "-c", script]))


def test_a_decode_killed_mid_stream_is_a_decode_error_not_the_feeds_broken_pipe(tmp_path):
    long = write_h264(tmp_path / "long.mp4", shot_frames([300, 300], size=(480, 400), seed=2), fps=30)
    piped = Piped(long, probe(long), tmp_path)
    before = _children()
    frames = piped.pairs(str(long), INPUT_SIZE)
    next(frames)
    procs = _children() - before
    assert len(procs) == 2  # the normalizer and the decode
    assert all(os.getpgid(p) != os.getpgid(0) for p in procs)  # out of the terminal's Ctrl-C
    (decode,) = [p for p in procs if "pipe:0" in Path(f"/proc/{p}/cmdline").read_text()]
    os.kill(decode, signal.SIGKILL)
    with pytest.raises(T12kError, match=f"^cannot decode video {long}: ffmpeg exited with code -9; re-fetch"):
        for _ in frames:
            pass
    assert _children() == before


def test_a_decode_closed_early_ends_both_processes(source, tmp_path):
    """As a Ctrl-C does: the generator is closed (or collected) while both processes run."""
    before = _children()
    frames = Piped(source, probe(source), tmp_path).pairs(str(source), INPUT_SIZE)
    next(frames)
    assert len(_children() - before) == 2
    frames.close()
    assert _children() == before


@pytest.fixture(scope="module")
def checkpoint(three_videos, tmp_path_factory) -> Path:
    return _checkpoint(three_videos, tmp_path_factory.mktemp("checkpoint"))


def test_predict_pipes_and_gives_the_normalized_files_results(source, checkpoint, tmp_path, monkeypatch, capsys):
    """The whole of `predict` on a video it normalizes: with `reencode`, shots, frames, clips
    and probabilities are those of the same video normalized to a file first (which `predict`
    uses as is); by default (uncompressed frames) the shots, frames and clips are, and the
    probabilities differ by x264's loss only. No normalized file is written on the way."""
    import t12k.pipeline.media as media
    from t12k.pipeline.predict import predict_trailer

    normalized = tmp_path / "n.mp4"
    normalize(source, normalized)
    ckpt = checkpoint
    from_file = predict_trailer(str(normalized), ckpt, weights="none", device="cpu", log=_quiet)
    assert from_file["seconds"]["normalize"] < 1  # a normalized file is used as is

    def no_file(*args, **kwargs):
        raise AssertionError("predict wrote the normalized file")

    monkeypatch.setattr(media, "normalize", no_file)
    (tmp_path / "work").mkdir()
    work = {"weights": "none", "device": "cpu", "work_dir": tmp_path / "work", "log": _quiet}
    piped = predict_trailer(str(source), ckpt, reencode=True, **work)
    for key in ("shots", "frames", "clips", "probabilities"):
        assert piped[key] == from_file[key], key
    assert piped["frames"] == 60 and piped["shots"] == 2
    raw = predict_trailer(str(source), ckpt, **work)
    for key in ("shots", "frames", "clips"):
        assert raw[key] == from_file[key], key
    gaps = [abs(raw["probabilities"][g] - p) for g, p in from_file["probabilities"].items()]
    assert 0 < max(gaps) < 0.02, gaps  # the features of frames without x264's loss
    assert os.listdir(tmp_path / "work") == []

    from t12k.cli import main as cli_main  # the option of the command line

    options = ["--weights", "none", "--device", "cpu", "--json", "--reencode"]
    assert cli_main(["predict", str(source), "--checkpoint", str(ckpt), *options]) == 0
    assert json.loads(capsys.readouterr().out)["probabilities"] == from_file["probabilities"]


def test_a_normalizer_that_fails_is_predicts_one_line_error(source, checkpoint, tmp_path, monkeypatch, capsys):
    import t12k.pipeline.media as media
    from t12k.cli import main as cli_main

    command = media.normalize_command  # the same, with an option ffmpeg refuses
    monkeypatch.setattr(media, "normalize_command", lambda *a, **k: [*command(*a, **k)[:-1], "-bsf:v", "no", "pipe:1"])
    before = _children()
    command_line = ["predict", str(source), "--checkpoint", str(checkpoint), "--device", "cpu", "--reencode"]
    assert cli_main(command_line) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"t12k predict: error: cannot normalize video {source}: ")
    assert line.endswith(": Error opening output files: Bitstream filter not found; check the file or re-download it")
    assert _children() == before


def _checkpoint(videos: Path, folder: Path) -> Path:
    """A DIViTA head trained for an epoch on shufflenet2d features (random weights) of the
    three trailers: a checkpoint whose store records how its features were made."""
    from t12k.cli import main as cli_main
    from t12k.storage import MTGC, write_mtgc

    quiet = ["--device", "cpu", "--quiet"]
    assert cli_main(["shots", "--videos", str(videos), "--store", str(folder / "shots.zarr"), *quiet]) == 0
    extract = ["extract", "--videos", str(videos), "--shots", str(folder / "shots.zarr"), "--out", str(folder / "f")]
    assert cli_main([*extract, "--backbone", "shufflenet2d", "--weights", "none", *quiet]) == 0
    y = np.eye(10, dtype=np.int8)[[0, 4, 6]]
    write_mtgc(folder / "mtgc.csv", MTGC(["a1", "b2", "c3"], y, np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.int8)))
    (store,) = (folder / "f").glob("*.zarr")
    train = ["train", "--image-store", str(store), "--labels", str(folder / "mtgc.csv"), "--out", str(folder / "run")]
    assert cli_main([*train, "--max-epochs", "1", *quiet]) == 0
    return folder / "run" / "checkpoint.pt"


def test_a_second_decode_reads_the_normalized_file_written_for_it(source, tmp_path):
    """`OnePass` decodes a video twice only when it is one transition throughout: then the
    piped video is normalized to a file (the file `normalize` writes) and read from there."""
    from t12k.pipeline.extract import iter_clip_inputs
    from t12k.shots import plan_clips

    normalize(source, tmp_path / "n.mp4")
    plan = plan_clips(np.array([[0, 59]]), 60, "shot", 24, 24)
    expected = list(iter_clip_inputs(tmp_path / "n.mp4", plan, True, True))
    (tmp_path / "work").mkdir()
    piped = Piped(source, probe(source), tmp_path / "work")
    got = list(piped.again(str(source), plan, True, True))
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert a.representative == b.representative
        assert np.array_equal(a.frame, b.frame) and np.array_equal(a.frames, b.frames)
    assert os.listdir(tmp_path / "work") == ["trailer.mp4"]


def test_a_rotated_video_is_decoded_upright_through_the_normalizers_filters(tmp_path):
    """A phone's video (a display rotation): the one decode turns it upright before the
    normalizer's filters, as `normalize` does, at the size `Piped` expects."""
    land = tmp_path / "land.mp4"
    lavfi = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30"]
    subprocess.run([*lavfi, "-frames:v", "30", "-c:v", "libx264", "-crf", "12", str(land)], check=True, timeout=60)
    rot = tmp_path / "rot.mp4"
    turn = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-display_rotation", "90", "-i", str(land)]
    subprocess.run([*turn, "-c", "copy", str(rot)], check=True, timeout=60)
    piped = Piped(rot, probe(rot), tmp_path, encode=False)
    assert piped.size == (90, 160)
    _lossless(rot, tmp_path / "lossless.mp4", piped.size)
    expected = list(iter_frame_pairs(tmp_path / "lossless.mp4", INPUT_SIZE))
    got = list(piped.pairs(str(rot), INPUT_SIZE))
    assert len(got) == len(expected) == 24
    for (small, big), (small_x, big_x) in zip(got, expected):
        assert big.shape == (160, 90, 3)
        assert np.array_equal(big, big_x) and np.array_equal(small, small_x)
    first = np.rot90(next(iter_frame_pairs(land, INPUT_SIZE))[1], 1).astype(int)  # as players show it
    assert np.abs(got[0][1] - first).mean() < 6 and np.abs(got[0][1] - np.rot90(first, 2)).mean() > 30


def test_a_second_decode_of_unencoded_frames_goes_through_the_filters_again(source, tmp_path):
    """Without `encode`, `OnePass`'s second decode gives the first decode's frames (those of a
    lossless normalize) and writes no file."""
    from t12k.pipeline.extract import iter_clip_inputs
    from t12k.shots import plan_clips

    _lossless(source, tmp_path / "lossless.mp4", (432, 360))
    plan = plan_clips(np.array([[0, 59]]), 60, "shot", 24, 24)
    expected = list(iter_clip_inputs(tmp_path / "lossless.mp4", plan, True, True))
    (tmp_path / "work").mkdir()
    before = _children()
    got = list(Piped(source, probe(source), tmp_path / "work", encode=False).again(str(source), plan, True, True))
    assert len(got) == len(expected) == 3
    for a, b in zip(got, expected):
        assert a.representative == b.representative
        assert np.array_equal(a.frame, b.frame) and np.array_equal(a.frames, b.frames)
    assert os.listdir(tmp_path / "work") == []
    assert _children() == before


def test_a_ten_bit_444_source_becomes_the_8_bit_420_pictures_the_normalizer_encodes(tmp_path):
    """The filters' yuv420p is the conversion the normalizer's encoder asks for: a 10-bit
    4:4:4 source gives, byte for byte, the frames of a lossless normalize of it."""
    src = tmp_path / "ten.mp4"
    lavfi = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]
    x264 = ["-frames:v", "30", "-c:v", "libx264", "-pix_fmt", "yuv444p10le", "-crf", "10", str(src)]
    subprocess.run([*lavfi, *x264], check=True, timeout=60)
    piped = Piped(src, probe(src), tmp_path, encode=False)
    _lossless(src, tmp_path / "lossless.mp4", piped.size)
    expected = list(iter_frame_pairs(tmp_path / "lossless.mp4", INPUT_SIZE))
    got = list(piped.pairs(str(src), INPUT_SIZE))
    assert len(got) == len(expected) == 24
    for (small, big), (small_x, big_x) in zip(got, expected):
        assert np.array_equal(big, big_x) and np.array_equal(small, small_x)
