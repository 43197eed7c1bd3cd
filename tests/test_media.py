"""media: ffmpeg lookup, probing (and its errors), normalization to H.264 24 fps, write_video."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from t12k.errors import Cancelled, T12kError
from t12k.pipeline import media
from t12k.pipeline.media import VideoInfo, ffmpeg_exe, normalize, probe, target_size, write_video


def _encoders() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True)
    return out.stdout


ENCODERS = _encoders()


def _lavfi(path: Path, size: str, rate: str, frames: int, codec_args: list[str], audio: bool = False) -> Path:
    """A synthetic clip made by the ffmpeg binary (testsrc2 pattern, exact frame count)."""
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:duration=10", "-shortest", "-c:a", "aac"]
    cmd += ["-frames:v", str(frames), *codec_args, str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
VP9 = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
SVTAV1 = ["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "log-level=0"]
AOMAV1 = ["-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime", "-b:v", "300k"]


def _frames(n: int, w: int, h: int):
    rng = np.random.default_rng(0)
    for k in range(n):
        img = np.full((h, w, 3), (k * 5) % 256, np.uint8)
        img[: h // 2, : w // 2] = rng.integers(0, 256, 3)
        yield img


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media_src")
    out = {
        # written by write_video (PyAV): H.264 at 25 fps and NTSC 29.97 / 23.976 fps
        "h264_25": write_video(d / "h264_25.mp4", _frames(50, 320, 240), fps=25),
        "h264_2997": write_video(d / "h264_2997.mp4", _frames(75, 320, 180), fps=29.97),
        "h264_23976": write_video(d / "h264_23976.mp4", _frames(55, 160, 90), fps=23.976),
        # made by the ffmpeg binary: 720p with audio, a portrait clip at 50 fps
        "h264_720p_audio": _lavfi(d / "h264_720p_audio.mp4", "1280x720", "25", 40, X264, audio=True),
        "h264_portrait_50": _lavfi(d / "h264_portrait_50.mp4", "180x400", "50", 60, X264),
    }
    if "libvpx-vp9" in ENCODERS:
        out["vp9_2997"] = _lavfi(d / "vp9_2997.webm", "320x240", "30000/1001", 75, VP9)
    if " libsvtav1 " in ENCODERS or " libaom-av1 " in ENCODERS:
        args = SVTAV1 if " libsvtav1 " in ENCODERS else AOMAV1
        out["av1_25"] = _lavfi(d / "av1_25.mkv", "320x240", "25", 50, args)
    return out


# ---- ffmpeg -----------------------------------------------------------------------------


def test_ffmpeg_exe_found_and_runs():
    exe = ffmpeg_exe()
    assert os.path.isfile(exe)
    assert "libx264" in ENCODERS


def test_ffmpeg_exe_falls_back_to_imageio(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.setattr(media.ffmpeg.shutil, "which", lambda name: None)
    assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()


def test_ffmpeg_exe_missing_is_a_clear_error(monkeypatch):
    import imageio_ffmpeg

    def boom():
        raise RuntimeError("no binary for this platform")

    monkeypatch.setattr(media.ffmpeg.shutil, "which", lambda name: None)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", boom)
    with pytest.raises(T12kError, match="no ffmpeg found; install ffmpeg"):
        ffmpeg_exe()


# ---- probe ------------------------------------------------------------------------------


def test_probe_reads_facts(sources):
    info = probe(sources["h264_2997"])
    assert (info.width, info.height, info.num_frames, info.codec) == (320, 180, 75, "h264")
    assert info.fps == pytest.approx(30000 / 1001, abs=1e-3)
    assert info.duration == pytest.approx(75 * 1001 / 30000, abs=2e-3)
    info = probe(sources["h264_25"])
    assert (info.fps, info.num_frames, info.duration) == (25.0, 50, 2.0)
    assert probe(sources["h264_25"], verify=False).num_frames == 50


def test_probe_counts_frames_when_container_does_not(sources):
    if "vp9_2997" not in sources:
        pytest.skip("this ffmpeg has no libvpx-vp9 encoder to make a webm")
    with av.open(str(sources["vp9_2997"])) as c:
        assert c.streams.video[0].frames == 0  # webm does not state a frame count
    info = probe(sources["vp9_2997"])
    assert (info.codec, info.num_frames) == ("vp9", 75)


@pytest.mark.parametrize(
    "case", ["missing", "empty", "text", "audio_only", "truncated_mp4", "truncated_webm", "folder"]
)
def test_probe_errors(case, sources, tmp_path):
    p = tmp_path / f"{case}.mp4"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "text":
        p.write_text("<html>not a video</html>")
    elif case == "audio_only":
        p = tmp_path / "tone.m4a"
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(p)],
            check=True,
        )
    elif case == "truncated_mp4":  # moov first (faststart): the header survives, frames do not
        src = tmp_path / "whole.mp4"
        _lavfi(src, "320x240", "25", 50, X264 + ["-movflags", "+faststart"])
        p.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    elif case == "truncated_webm":
        if "vp9_2997" not in sources:
            pytest.skip("this ffmpeg has no libvpx-vp9 encoder to make a webm")
        data = sources["vp9_2997"].read_bytes()
        p = tmp_path / "cut.webm"
        p.write_bytes(data[: len(data) // 3])
    elif case == "folder":
        p.mkdir()
    with pytest.raises(T12kError) as err:
        probe(p)
    msg = str(err.value)
    assert msg.startswith(f"cannot read video {p}: ") and msg.endswith("; re-download it or remove it")
    assert "\n" not in msg
    expected = {
        "missing": "no such file",
        "empty": "empty",
        "audio_only": "no video stream",
        "truncated_mp4": "truncated",
        "truncated_webm": "truncated",
        "folder": "folder",
    }
    if case in expected:
        assert expected[case] in msg


def test_video_size_reads_the_header_and_fails_as_probe_does(sources, tmp_path):
    assert media.video_size(sources["h264_2997"]) == (320, 180)
    junk = tmp_path / "junk.mp4"
    junk.write_text("<html>not a video</html>")
    for bad in (tmp_path / "missing.mp4", junk):
        with pytest.raises(media.UnreadableVideo, match=f"cannot read video {bad}: "):
            media.video_size(bad)
        with pytest.raises(T12kError, match=f"cannot read video {bad}: "):
            next(media.iter_frames(bad))


# ---- normalize --------------------------------------------------------------------------


def test_target_size():
    assert target_size(1920, 1080, 360) == (640, 360)
    assert target_size(1080, 1920, 360) == (360, 640)  # portrait: the width is the short side
    assert target_size(320, 240, 360) == (320, 240)  # never upscaled
    assert target_size(321, 241, 360) == (320, 240)  # even, and not one pixel larger
    assert target_size(1280, 720, 361) == (640, 360)  # odd limit: the even size below
    assert target_size(720, 480, 360, sar=32 / 27) == (640, 360)  # anamorphic DVD: square pixels
    w, h = target_size(4096, 1716, 360)
    assert h <= 360 and w % 2 == 0 and h % 2 == 0 and abs(w / h - 4096 / 1716) < 0.01
    with pytest.raises(T12kError):
        target_size(320, 240, 0)


CASES = ["h264_25", "h264_2997", "h264_23976", "h264_720p_audio", "h264_portrait_50", "vp9_2997", "av1_25"]


@pytest.mark.parametrize("name", CASES)
def test_normalize_to_h264_24fps(name, sources, tmp_path):
    if name not in sources:
        pytest.skip(f"this ffmpeg cannot encode the {name.split('_')[0]} test input")
    src = probe(sources[name])
    dst = tmp_path / "out" / f"{name}.mp4"
    info = normalize(sources[name], dst, max_short_side=120)
    assert dst.is_file() and info == probe(dst)
    assert info.codec == "h264" and info.fps == 24.0
    # The fps filter keeps the timeline: round(duration * 24) frames, exactly.
    assert info.num_frames == round(src.duration * 24)
    assert info.duration == pytest.approx(info.num_frames / 24, abs=1e-3)
    short, long_ = sorted((info.width, info.height))
    assert short <= 120 and info.width % 2 == 0 and info.height % 2 == 0
    assert (info.width > info.height) == (src.width > src.height)
    assert abs(info.width / info.height - src.width / src.height) < 0.05
    with av.open(str(dst)) as c:
        assert len(c.streams.audio) == 0
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    data = dst.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: the index comes first
    assert not [p for p in dst.parent.iterdir() if p != dst]  # no temporary files left


def test_normalize_keeps_size_below_limit_and_audio_on_request(sources, tmp_path):
    dst = tmp_path / "a.mp4"
    info = normalize(sources["h264_720p_audio"], dst, keep_audio=True)
    assert (info.width, info.height) == (640, 360)
    with av.open(str(dst)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.audio[0].codec_context.name == "aac"
    info = normalize(sources["h264_2997"], tmp_path / "b.mp4", max_short_side=360)
    assert (info.width, info.height) == (320, 180)  # smaller than the limit: not upscaled


def test_normalize_replaces_existing_and_accepts_threads(sources, tmp_path):
    dst = tmp_path / "x.mp4"
    dst.write_bytes(b"old")
    info = normalize(sources["h264_25"], dst, threads=1)
    assert info.num_frames == 48 and probe(dst).num_frames == 48


def test_normalize_bad_source_is_a_clear_error(tmp_path):
    src = tmp_path / "junk.mp4"
    src.write_text("junk")
    with pytest.raises(T12kError, match="cannot read video .*junk.mp4"):
        normalize(src, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_normalize_ffmpeg_failure_leaves_nothing(sources, tmp_path, monkeypatch):
    fake = tmp_path / "fake-ffmpeg"
    # Writes half a file to its last argument, complains, fails: like a crash mid-encode.
    fake.write_text(
        '#!/bin/sh\nfor a; do last="$a"; done\nprintf garbage > "$last"\n'
        'echo "some warning" >&2\necho "Conversion failed: disk on fire" >&2\nexit 1\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(media.transcode, "ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(T12kError) as err:
        normalize(sources["h264_25"], out / "v.mp4")
    assert "Conversion failed: disk on fire" in str(err.value) and "some warning" not in str(err.value)
    assert list(out.iterdir()) == []


def test_normalize_rejects_bad_settings(sources, tmp_path):
    with pytest.raises(T12kError, match="fps"):
        normalize(sources["h264_25"], tmp_path / "v.mp4", fps=0)
    with pytest.raises(T12kError, match="max_short_side"):
        normalize(sources["h264_25"], tmp_path / "v.mp4", max_short_side=1)


# ---- write_video ------------------------------------------------------------------------


def test_write_video_roundtrip(tmp_path):
    frames = [np.full((64, 96, 3), c, np.uint8) for c in (0, 80, 160, 240) for _ in range(6)]
    path = write_video(tmp_path / "w.mp4", iter(frames), fps=24)
    info = probe(path)
    assert info == VideoInfo(96, 64, 24.0, 24, 1.0, "h264")
    with av.open(str(path)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) == 24
    for a, b in zip(got, frames, strict=True):
        assert np.abs(a.astype(int) - b).mean() < 3


def test_write_video_ntsc_rate(tmp_path):
    info = probe(write_video(tmp_path / "n.mp4", _frames(30, 32, 32), fps=29.97))
    assert info.fps == pytest.approx(30000 / 1001, abs=1e-4) and info.num_frames == 30


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="at least one frame"):
        write_video(tmp_path / "a.mp4", [])
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "b.mp4", [np.zeros((31, 32, 3), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "c.mp4", [np.zeros((32, 32, 3), np.float32)])


# ---- variable frame rate, ffmpeg choice, tags, cancel, short output -----------------------


@pytest.fixture(scope="module")
def vfr_sources(tmp_path_factory) -> dict[str, Path]:
    """Variable frame rate clips made by ffmpeg: frames dropped irregularly (mp4), and a
    30 fps stretch followed by a slow-motion 12 fps one (mkv, millisecond timestamps)."""
    d = tmp_path_factory.mktemp("vfr")
    gaps = _lavfi(
        d / "vfr_gaps.mp4",
        "320x240",
        "30",
        90,
        ["-vf", "select='lt(mod(n\\,10)\\,6)+gt(n\\,60)'", "-fps_mode", "vfr"] + X264,
    )
    slow = _lavfi(
        d / "vfr_slowmo.mkv",
        "320x180",
        "30",
        90,
        ["-vf", "setpts='if(lt(N\\,45)\\,N/30\\,1.5+(N-45)/12)/TB'", "-fps_mode", "vfr"] + X264,
    )
    return {"vfr_gaps": gaps, "vfr_slowmo": slow}


def _frame_steps(path: Path) -> set:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(s) if p.size)
    return {b - a for a, b in zip(pts, pts[1:])}


@pytest.mark.parametrize("name", ["vfr_gaps", "vfr_slowmo"])
def test_normalize_variable_frame_rate_to_constant_24fps(name, vfr_sources, tmp_path):
    src_path = vfr_sources[name]
    assert len(_frame_steps(src_path)) > 1  # the source really is variable frame rate
    src = probe(src_path)
    info = normalize(src_path, tmp_path / "v.mp4", max_short_side=120)
    assert info.codec == "h264" and info.fps == 24.0
    assert info.num_frames == round(src.duration * 24)
    assert len(_frame_steps(tmp_path / "v.mp4")) == 1  # constant frame rate: one step between frames


def test_ffmpeg_exe_prefers_the_system_binary(monkeypatch, tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert ffmpeg_exe() == str(fake)


def test_normalize_writes_tags_and_uses_the_given_ffmpeg(sources, tmp_path):
    calls = tmp_path / "calls.txt"
    wrapper = tmp_path / "my-ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec "{ffmpeg_exe()}" "$@"\n')
    wrapper.chmod(0o755)
    dst = tmp_path / "t.mp4"
    normalize(sources["h264_25"], dst, ffmpeg=str(wrapper), metadata={"comment": 't12k-source {"url": "http://h/a b"}'})
    assert "libx264" in calls.read_text()
    assert media.read_tags(dst)["comment"] == 't12k-source {"url": "http://h/a b"}'
    assert media.read_tags(tmp_path / "missing.mp4") == {}


def test_normalize_cancel_stops_ffmpeg_and_leaves_nothing(sources, tmp_path):
    import time

    pidfile = tmp_path / "pid"
    slow = tmp_path / "slow-ffmpeg"  # an ffmpeg that takes forever
    slow.write_text(f'#!/bin/sh\necho $$ > "{pidfile}"\nexec sleep 30\n')
    slow.chmod(0o755)
    out = tmp_path / "out"
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        normalize(sources["h264_25"], out / "v.mp4", ffmpeg=str(slow), cancel=lambda: time.monotonic() - t0 > 0.3)
    assert time.monotonic() - t0 < 3
    assert list(out.iterdir()) == []
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_normalize_refuses_an_output_much_shorter_than_the_source(sources, tmp_path):
    import sys

    short = tmp_path / "short-ffmpeg"  # a real ffmpeg that stops after 5 frames, exit code 0
    short.write_text(
        f"#!{sys.executable}\nimport os, sys\na = sys.argv[1:]\n"
        f"os.execv({ffmpeg_exe()!r}, [{ffmpeg_exe()!r}] + a[:-1] + ['-frames:v', '5', a[-1]])\n"
    )
    short.chmod(0o755)
    with pytest.raises(T12kError, match=r"gave 5 frames where its 2.00 s call for 48"):
        normalize(sources["h264_25"], tmp_path / "v.mp4", ffmpeg=str(short))
    assert list(tmp_path.glob("*.mp4")) == []


# ---- rotated videos (phones) --------------------------------------------------------------


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    """A 160x90 clip whose picture has no symmetry (testsrc2), to be rotated by its display matrix."""
    return _lavfi(tmp_path_factory.mktemp("rot") / "land.mp4", "160x90", "24", 24, X264)


def _rotate(src: Path, degrees: int, dst: Path) -> Path:
    """`src` with a display rotation of `degrees` (counterclockwise), its stream copied, as a phone writes it."""
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-display_rotation", str(degrees), "-i", str(src)]
    subprocess.run([*cmd, "-c", "copy", str(dst)], check=True, capture_output=True)
    return dst


@pytest.mark.parametrize("degrees,turns", [(90, 1), (-90, 3), (180, 2)])
def test_a_rotated_video_is_probed_and_normalized_upright(landscape, tmp_path, degrees, turns):
    rot = _rotate(landscape, degrees, tmp_path / "rot.mp4")
    with av.open(str(rot)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (160, 90)
    shown = (90, 160) if turns % 2 else (160, 90)
    for info in (probe(rot), probe(rot, verify=False)):
        assert (info.width, info.height) == shown and info.rotation == (degrees % 360) and info.num_frames == 24
    assert media.video_size(rot) == shown
    # ffmpeg decodes it upright, at the size video_size tells
    assert next(media.iter_frames(rot)).shape == (shown[1], shown[0], 3)

    out = normalize(rot, tmp_path / "out.mp4", max_short_side=360)
    assert (out.width, out.height) == shown and out.rotation == 0
    upright = np.rot90(media.read_frames(landscape, (160, 90))[0], turns)
    got = media.read_frames(tmp_path / "out.mp4", shown)[0]
    assert got.shape == upright.shape
    assert np.abs(got.astype(int) - upright).mean() < 6  # the picture, turned as players show it
    if turns % 2:  # and not the mirror image or the other quarter turn
        assert np.abs(got.astype(int) - np.rot90(upright, 2)).mean() > 30
    small = normalize(rot, tmp_path / "small.mp4", max_short_side=46)
    assert (small.width, small.height) == ((46, 80) if turns % 2 else (80, 46))  # short side bounded, upright


def test_a_rotated_video_with_non_square_pixels(landscape, tmp_path):
    # Pixels twice as wide as tall: 160x90 stored shows as 320x90; turned, as 90x320.
    wide = tmp_path / "wide.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(landscape), "-c", "copy", "-aspect", "32:9", wide],
        check=True,
        capture_output=True,
    )
    info = probe(_rotate(wide, 90, tmp_path / "rot.mp4"))
    assert (info.width, info.height, info.sar) == (90, 160, 0.5)
    out = normalize(tmp_path / "rot.mp4", tmp_path / "out.mp4")
    assert out.height > out.width and abs(out.width / out.height - 90 / 320) < 0.02 and out.sar == 1.0
