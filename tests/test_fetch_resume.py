"""fetch survives interruptions: `t12k fetch` in a subprocess against a local server that
serves slowly, stopped with SIGKILL or Ctrl-C (SIGINT) mid-run, then run again."""

from __future__ import annotations

import csv
import functools
import http.server
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from t12k.pipeline.media import ffmpeg_exe, probe

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

IDS = ["m1", "m2", "m3", "m4"]


class _Slow(http.server.SimpleHTTPRequestHandler):
    """Serves files in small chunks with pauses: most of a second per test video."""

    chunk = 4096
    pause = 0.03

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        while True:
            buf = source.read(self.chunk)
            if not buf:
                return
            outputfile.write(buf)
            time.sleep(self.pause)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that were killed drop their connections: not an error


@pytest.fixture(scope="module")
def slow_list(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow_www")
    for k, mid in enumerate(IDS):
        subprocess.run(
            [
                ffmpeg_exe(),
                "-v",
                "error",
                "-nostdin",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size=192x144:rate=25,hue=h={40 * k}",
                "-frames:v",
                str(50 + 5 * k),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "28",
                "-pix_fmt",
                "yuv420p",
                str(root / f"{mid}.mp4"),
            ],
            check=True,
            capture_output=True,
        )
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Slow, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    lst = root / "list.csv"
    lst.write_text("id,url\n" + "".join(f"{m},{url}/{m}.mp4\n" for m in IDS))
    yield {"list": lst, "root": root}
    httpd.shutdown()
    httpd.server_close()


def _cmd(lst: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "t12k.cli",
        "fetch",
        str(lst),
        "--out",
        str(out),
        "--workers",
        "2",
        "--normalize-workers",
        "2",
        "--quiet",
    ]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(cmd: list[str]) -> subprocess.Popen:
    """Start `t12k fetch` as a user's terminal would: with Ctrl-C enabled. (A test run that
    was itself started in the background by a non-interactive shell inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler in the child.)"""
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _wait_for(proc, cond, what: str, limit: float = 40.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"fetch ended (rc {proc.returncode}) before {what}: {out} {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _videos(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.mp4") if not p.name.startswith("."))


def _tmp(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if ".t12k-tmp" in p.name]


def _ffmpeg_writing_to(out: Path) -> list[int]:
    """Pids of processes whose command line names the folder (ffmpeg writing there)."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(out) in cmdline and "ffmpeg" in cmdline:
            pids.append(int(d.name))
    return pids


def _no_orphans(out: Path, limit: float = 8.0) -> None:
    if not Path("/proc/self/cmdline").exists():
        return
    deadline = time.monotonic() + limit
    while _ffmpeg_writing_to(out):
        assert time.monotonic() < deadline, f"ffmpeg processes outlived the run: {_ffmpeg_writing_to(out)}"
        time.sleep(0.1)


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"one row per id, got {ids}"
    return {r["id"]: r for r in rows}


def _assert_complete(out: Path, root: Path) -> None:
    """Every id has a whole video and a manifest row that describes exactly that file."""
    import hashlib

    rows = _rows(out)
    assert sorted(rows) == IDS
    for mid in IDS:
        video = out / f"{mid}.mp4"
        info, src = probe(video), probe(root / f"{mid}.mp4")
        assert info.codec == "h264" and info.fps == 24.0 and info.num_frames == round(src.duration * 24)
        r = rows[mid]
        assert r["status"] in ("ok", "skipped") and r["reason"] in ("", "already fetched")
        assert int(r["bytes"]) == video.stat().st_size
        assert r["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
        assert int(r["frames"]) == info.num_frames and r["src_width"] == "192" and r["src_codec"] == "h264"
    assert not _tmp(out)
    assert sorted(p.name for p in out.iterdir() if p.name != ".manifest.csv.lock") == sorted(
        [f"{m}.mp4" for m in IDS] + ["manifest.csv", ".t12k-fetch.lock"]
    )


def test_sigkill_mid_run_then_rerun_completes(slow_list, tmp_path):
    out = tmp_path / "videos"
    proc = _start(_cmd(slow_list["list"], out))
    # Kill once one trailer is finished and others are half downloaded.
    _wait_for(proc, lambda: out.is_dir() and _videos(out) and _tmp(out), "a finished and a running trailer")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # Whatever carries a final name is whole; partial work only exists under temporary names.
    finished = _videos(out)
    assert finished and len(finished) < len(IDS)
    for video in finished:
        assert probe(video).num_frames > 0
    _no_orphans(out)  # the worker processes stop their ffmpeg when the run dies

    again = subprocess.run(_cmd(slow_list["list"], out), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "4 trailers" in again.stdout and "0 failed" in again.stdout
    _assert_complete(out, slow_list["root"])
    rows = _rows(out)
    assert {rows[p.stem]["status"] for p in finished} == {"skipped"}  # finished ones were not fetched again


def test_ctrl_c_stops_cleanly_then_rerun_completes(slow_list, tmp_path):
    out = tmp_path / "videos"
    proc = _start(_cmd(slow_list["list"], out))
    _wait_for(
        proc, lambda: out.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in _tmp(out)), "a download under way"
    )
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - t0 < 10
    assert "interrupted" in stderr and "run the same command to resume" in stderr
    assert "Traceback" not in stderr
    # Clean stop: no temporary files, no ffmpeg left, and the manifest describes what is there.
    assert not _tmp(out)
    _no_orphans(out, limit=1.0)
    videos = {p.stem for p in _videos(out)}
    rows = _rows(out) if (out / "manifest.csv").exists() else {}
    assert {m for m, r in rows.items() if r["status"] == "ok"} == videos
    assert all(r["status"] == "ok" for r in rows.values())  # an interrupted trailer is not 'failed'

    again = subprocess.run(_cmd(slow_list["list"], out), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    _assert_complete(out, slow_list["root"])


def test_sigterm_stops_like_ctrl_c(slow_list, tmp_path):
    out = tmp_path / "videos"
    proc = _start(_cmd(slow_list["list"], out))
    _wait_for(proc, lambda: out.is_dir() and bool(_tmp(out)), "a download under way")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in stderr
    assert not _tmp(out)
