"""fetch against a local HTTP server that misbehaves: dropped connections, stalls, truncated
and empty files; permanent site errors, bot checks, cookies, pacing, concurrency, worker
processes and the paper's quality rules (offline)."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from t12k.errors import T12kError
from t12k.pipeline import fetch as fetch_mod
from t12k.pipeline.fetch import (
    FetchItem,
    download,
    fetch_collection,
    pacing,
    quality,
    quality_report,
    resolution_lines,
)
from t12k.pipeline.media import ffmpeg_exe, probe


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; `plan[path]` lists what to do on the next requests of a path (a
    status code, 'drop' half-way, 'stall' after the headers, 'slow'), then serves normally."""

    hits: Counter = Counter()
    plan: dict[str, list] = {}
    starts: list[tuple[float, str]] = []
    active = 0
    most_active = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):
        with self.lock:
            self.hits[self.path] += 1
            self.starts.append((time.monotonic(), self.path))
            queue = self.plan.get(self.path)
            action = queue.pop(0) if queue else None
        self._serve(action)

    def _slow(self, data: bytes) -> None:
        """Serve slowly, counting the slow downloads under way."""
        cls = type(self)
        with self.lock:
            cls.active += 1
            cls.most_active = max(cls.most_active, cls.active)
        try:
            for k in range(0, len(data), 16384):
                self.wfile.write(data[k : k + 16384])
                time.sleep(0.05)
        finally:
            with self.lock:
                cls.active -= 1

    def _serve(self, action):
        if isinstance(action, int):
            self.send_response(action)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if action is None:
            return super().do_GET()
        data = (Path(self.directory) / self.path.split("?")[0].lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if action == "drop":  # half the promised bytes, then hang up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif action == "stall":  # a few bytes, then nothing
            self.wfile.write(data[:100])
            self.wfile.flush()
            time.sleep(5)
            self.close_connection = True
        elif action == "slow":
            self._slow(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def _lavfi(path: Path, size: str, rate: str, frames: int, extra: list[str] | None = None) -> Path:
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
            f"testsrc2=size={size}:rate={rate}",
            "-frames:v",
            str(frames),
            *(extra or []),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www_bad")
    _lavfi(root / "pal.mp4", "320x240", "25", 50)  # 2.0 s, 240p
    _lavfi(root / "ntsc.mp4", "320x240", "30000/1001", 75)  # 2.5 s, 240p
    _lavfi(root / "tiny.mp4", "160x90", "25", 40)  # 1.6 s, 90p
    whole = _lavfi(root / "whole.mp4", "320x240", "25", 50, ["-movflags", "+faststart"])
    (root / "trunc.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    (root / "empty.mp4").write_bytes(b"")
    for k in range(4):
        (root / f"copy{k}.mp4").write_bytes((root / "pal.mp4").read_bytes())
    _Handler.hits.clear()
    _Handler.plan.clear()
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield {
        "url": f"http://127.0.0.1:{httpd.server_address[1]}",
        "root": root,
        "hits": _Handler.hits,
        "plan": _Handler.plan,
    }
    httpd.shutdown()
    httpd.server_close()


from conftest import manifest_rows  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_backoff")
_rows = manifest_rows


def _only_results(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock"))  # the run's and the manifest's


# ---- bad input from the server ----------------------------------------------------------------


def test_connection_dropped_mid_file_is_retried_then_recorded(server, tmp_path):
    u = server["url"]
    server["plan"]["/pal.mp4?dropped-once"] = [None, "drop", "drop"]  # the extractor's look, then two drops
    server["plan"]["/pal.mp4?always"] = [None] + ["drop"] * 20
    s = fetch_collection(
        [FetchItem("once", f"{u}/pal.mp4?dropped-once"), FetchItem("always", f"{u}/pal.mp4?always")],
        tmp_path,
        retries=1,
        timeout=5,
        progress=False,
    )
    assert s.done == ["once"], s.text()
    assert probe(tmp_path / "once.mp4").num_frames == 48  # whole, not half
    rows = _rows(tmp_path)
    assert rows["always"]["status"] == "failed" and rows["always"]["error"] == "transient"
    assert "after 2 attempts" in s.failed["always"]
    assert _only_results(tmp_path) == ["manifest.csv", "once.mp4"]


def test_stalled_server_times_out(server, tmp_path):
    server["plan"]["/pal.mp4?stall"] = ["stall"] * 10
    t0 = time.monotonic()
    s = fetch_collection(
        [FetchItem("stalled", f"{server['url']}/pal.mp4?stall")], tmp_path, retries=0, timeout=0.5, progress=False
    )
    assert time.monotonic() - t0 < 4.5
    assert "timed out" in s.failed["stalled"].lower()
    assert _rows(tmp_path)["stalled"]["error"] == "transient"
    assert _only_results(tmp_path) == ["manifest.csv"]


def test_truncated_and_empty_files_fail_without_retries(server, tmp_path):
    u = server["url"]
    s = fetch_collection(
        [FetchItem("cut", f"{u}/trunc.mp4"), FetchItem("zero", f"{u}/empty.mp4")], tmp_path, retries=3, progress=False
    )
    assert "truncated" in s.failed["cut"] and "not a readable video" in s.failed["cut"]
    assert "empty file (0 bytes)" in s.failed["zero"]
    rows = _rows(tmp_path)
    assert rows["cut"]["error"] == "not-a-video" and rows["zero"]["error"] == "empty"
    assert rows["cut"]["attempts"] == "1" and rows["zero"]["attempts"] == "1"
    assert _only_results(tmp_path) == ["manifest.csv"]


def test_ids_without_url_are_recorded_and_the_run_goes_on(server, tmp_path):
    s = fetch_collection(
        [FetchItem("nourl", ""), FetchItem("pal", f"{server['url']}/pal.mp4")], tmp_path, progress=False
    )
    assert s.done == ["pal"] and "no URL" in s.failed["nourl"]
    assert _rows(tmp_path)["nourl"]["error"] == "no-url"


# ---- permanent site errors, bot checks, cookies -----------------------------------------------

YOUTUBE_ERRORS = {
    "removed": "ERROR: [youtube] aaaaaaaaaaa: Video unavailable. This video has been removed by the uploader",
    "private": "ERROR: [youtube] bbbbbbbbbbb: Private video. Sign in if you've been granted access to this video. "
    "Use --cookies-from-browser or --cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki",
    "geo-blocked": "ERROR: [youtube] ccccccccccc: Video unavailable. The uploader has not made this video available "
    "in your country",
    "age-restricted": "ERROR: [youtube] ddddddddddd: Sign in to confirm your age. This video may be inappropriate for "
    "some users. Use --cookies-from-browser or --cookies for the authentication.",
    "copyright": "ERROR: [youtube] eeeeeeeeeee: Video unavailable. This video contains content from Studio, who has "
    "blocked it on copyright grounds",
    "members-only": "ERROR: [youtube] fffffffffff: Join this channel to get access to members-only content "
    "like this video",
}


def _fake_extract(monkeypatch, messages: dict[str, str], calls: Counter, seen_params: list | None = None):
    """yt-dlp's extract_info answering with the message given for the video id of the URL."""
    import yt_dlp
    from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

    def extract_info(self, url, download=True, process=True, **kw):
        vid = url.rsplit("=", 1)[-1]
        calls[vid] += 1
        if seen_params is not None:
            seen_params.append(dict(self.params))
        msg = messages[vid]
        cause = GeoRestrictedError(msg) if "country" in msg else ExtractorError(msg, expected=True)
        raise DownloadError(msg, exc_info=(type(cause), cause, None))

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", extract_info)


def test_permanent_site_errors_are_classified_and_not_retried(monkeypatch, tmp_path):
    calls: Counter = Counter()
    _fake_extract(monkeypatch, {k: v for k, v in YOUTUBE_ERRORS.items()}, calls)
    items = [FetchItem(k.replace("-", ""), f"https://www.youtube.com/watch?v={k}") for k in YOUTUBE_ERRORS]
    s = fetch_collection(items, tmp_path, retries=3, sleep=0, sleep_requests=0, progress=False)
    assert set(calls.values()) == {1}  # no retries
    rows = _rows(tmp_path)
    for kind in YOUTUBE_ERRORS:
        r = rows[kind.replace("-", "")]
        assert r["status"] == "failed" and r["error"] == kind and r["attempts"] == "1"
        assert r["reason"].startswith(f"{kind} (not retried): ") and len(r["reason"]) <= 300
    assert "cookies" in rows["agerestricted"]["reason"]
    assert "drop the id" in rows["private"]["reason"]
    assert s.stopped is None


def test_repeated_bot_checks_stop_the_run(monkeypatch, tmp_path):
    calls: Counter = Counter()
    bot = "ERROR: [youtube] x: Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies"
    _fake_extract(monkeypatch, {f"v{k}": bot for k in range(6)}, calls)
    items = [FetchItem(f"t{k}", f"https://youtu.be/watch?v=v{k}") for k in range(6)]
    s = fetch_collection(items, tmp_path, workers=1, retries=3, sleep=0, sleep_requests=0, progress=False)
    assert sum(calls.values()) == 3 and len(s.failed) == 3 and s.not_attempted == 3
    assert s.stopped and "--cookies" in s.stopped and not s.ok
    assert "Stopped early, 3 not attempted" in s.text()
    assert {r["error"] for r in _rows(tmp_path).values()} == {"bot-check"}


def test_cookies_and_pauses_reach_yt_dlp(monkeypatch, tmp_path):
    calls: Counter = Counter()
    params: list = []
    _fake_extract(monkeypatch, {"abc": YOUTUBE_ERRORS["private"], "def": YOUTUBE_ERRORS["private"]}, calls, params)
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    fetch_collection(
        [FetchItem("a", "https://www.youtube.com/watch?v=abc")],
        tmp_path / "o1",
        cookies=cookies,
        sleep=0,
        progress=False,
    )
    assert params[-1]["cookiefile"] == str(cookies)
    assert params[-1]["sleep_interval_requests"] == fetch_mod.DEFAULT_SLEEP_REQUESTS  # remote host: polite default
    fetch_collection(
        [FetchItem("b", "https://www.youtube.com/watch?v=def")],
        tmp_path / "o2",
        cookies_from_browser="firefox:default",
        sleep=0,
        sleep_requests=0.25,
        progress=False,
    )
    assert params[-1]["cookiesfrombrowser"] == ("firefox", "default", None, None)
    assert params[-1]["sleep_interval_requests"] == 0.25 and "cookiefile" not in params[-1]


def test_default_pauses_spare_loopback_hosts():
    s = fetch_mod.FetchConfig(
        fps=24,
        max_short_side=360,
        keep_audio=False,
        retries=0,
        timeout=1,
        sleep=None,
        sleep_requests=None,
        cookies=None,
        ffmpeg="ffmpeg",
    )
    remote = (fetch_mod.DEFAULT_SLEEP, fetch_mod.DEFAULT_SLEEP_REQUESTS)
    assert pacing.pauses("https://www.youtube.com/watch?v=x", s) == remote and remote[0] >= 1
    for url in ("http://127.0.0.1:8000/a.mp4", "http://localhost/a.mp4", "http://[::1]:9/a.mp4"):
        assert pacing.pauses(url, s) == (0.0, 0.0)
    s.sleep, s.sleep_requests = 0.5, 0.1
    assert pacing.pauses("http://127.0.0.1/a.mp4", s) == (0.5, 0.1)


# ---- pacing, concurrency, worker processes ------------------------------------------------------


def test_pause_between_download_starts(server, tmp_path, monkeypatch):
    pacers = []

    class Pacer(pacing.Pacer):
        def __init__(self):
            super().__init__()
            pacers.append(self)

    monkeypatch.setattr(pacing, "Pacer", Pacer)  # the download stage's clock, made when it is set up
    u = server["url"]
    items = [FetchItem(f"p{k}", f"{u}/copy{k}.mp4?paced") for k in range(3)]
    s = fetch_collection(items, tmp_path, workers=3, sleep=0.4, progress=False)
    assert len(s.done) == 3
    turns = pacers[0].turns
    assert len(turns) == 3 and all(b - a > 0.4 - 1e-6 for a, b in zip(turns, turns[1:]))
    # The server saw the three downloads begin at least about that far apart (threads wake with some jitter).
    with _Handler.lock:
        firsts = sorted(min(t for t, p in _Handler.starts if p == f"/copy{k}.mp4?paced") for k in range(3))
    assert firsts[0] >= turns[0] and firsts[2] - firsts[0] > 0.5, firsts

    # The pause also applies to retries, and an interrupted run stops waiting at once.
    pacer, stop = pacing.Pacer(), threading.Event()
    assert pacer.wait(10, stop)
    stop.set()
    t0 = time.monotonic()
    assert pacer.wait(10, stop) is False and time.monotonic() - t0 < 1


def test_downloads_run_workers_at_once(server, tmp_path):
    u = server["url"]
    for k in range(4):
        server["plan"][f"/copy{k}.mp4?conc"] = [None, "slow"]
    with _Handler.lock:
        _Handler.most_active = 0
    s = fetch_collection(
        [FetchItem(f"c{k}", f"{u}/copy{k}.mp4?conc") for k in range(4)], tmp_path, workers=3, progress=False
    )
    assert len(s.done) == 4
    assert _Handler.most_active == 3


def _fake_ffmpeg(tmp_path: Path, body: str) -> Path:
    """An `ffmpeg` first on PATH (so t12k picks it as the system binary) that runs `body`
    for encodes (libx264 in its arguments) and passes everything else to the real one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "ffmpeg"
    exe.write_text(f'#!/bin/sh\ncase "$*" in *libx264*) {body} ;; esac\nexec "{ffmpeg_exe()}" "$@"\n')
    exe.chmod(0o755)
    return folder


def test_normalization_runs_in_parallel_worker_processes(server, tmp_path, monkeypatch):
    log = tmp_path / "encodes.log"
    now = f'$("{sys.executable}" -c "import time; print(time.time())")'
    folder = _fake_ffmpeg(
        tmp_path,
        f'echo "start $PPID {now}" >> "{log}"; "{ffmpeg_exe()}" "$@"; rc=$?; '
        f'sleep 0.6; echo "end $PPID {now}" >> "{log}"; exit $rc',
    )
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    u = server["url"]
    s = fetch_collection(
        [FetchItem("n1", f"{u}/pal.mp4"), FetchItem("n2", f"{u}/ntsc.mp4")],
        tmp_path / "out",
        workers=2,
        normalize_workers=2,
        progress=False,
    )
    assert sorted(s.done) == ["n1", "n2"], s.text()
    events = [line.split() for line in log.read_text().splitlines()]
    starts = [float(t) for e, _, t in events if e == "start"]
    ends = [float(t) for e, _, t in events if e == "end"]
    parents = {int(p) for _, p, _ in events}
    assert len(parents) == 2 and os.getpid() not in parents  # two worker processes, not this one
    assert max(starts) < min(ends)  # the two encodes overlapped


def test_a_dying_worker_process_gets_one_more_try(server, tmp_path, monkeypatch):
    marker = tmp_path / "crashed-once"
    # The first encode kills the worker process that started it (as the OOM killer would).
    folder = _fake_ffmpeg(tmp_path, f'if [ ! -e "{marker}" ]; then touch "{marker}"; kill -9 $PPID; exit 1; fi')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    u = server["url"]
    s = fetch_collection([FetchItem("k1", f"{u}/pal.mp4")], tmp_path / "a", normalize_workers=1, progress=False)
    assert s.done == ["k1"] and marker.exists()

    (tmp_path / "again").mkdir()
    always = _fake_ffmpeg(tmp_path / "again", "kill -9 $PPID; exit 1")  # every encode kills its worker
    monkeypatch.setenv("PATH", f"{always}{os.pathsep}{os.environ['PATH']}")
    s = fetch_collection([FetchItem("k2", f"{u}/pal.mp4")], tmp_path / "b", normalize_workers=1, progress=False)
    assert "normalizing process died" in s.failed["k2"]
    assert _only_results(tmp_path / "b") == ["manifest.csv"]


# ---- the paper's quality rules ---------------------------------------------------------------------


def test_quality_report_rules():
    assert quality_report(60, 854, 480) == "ok" and quality_report(210, 640, 480) == "ok"
    assert quality_report(59.9, 1280, 720) == "shorter than 60 s (59.9 s)"
    assert quality_report(211, 1920, 1080) == "longer than 210 s (211.0 s)"
    assert quality_report(90, 640, 360) == "below 480p (360p)"
    assert quality_report(30, 426, 240) == "shorter than 60 s (30.0 s); below 480p (240p)"
    assert quality_report(None, None, None) == "ok"  # nothing known, nothing held against it
    assert resolution_lines(1920, 800) == 1080  # scope trailers are named by their width
    assert resolution_lines(480, 854) == 480  # portrait: the short side
    assert resolution_lines(720, 576, sar=16 / 15) == 576


def test_quality_precheck_from_site_facts():
    s = fetch_mod.FetchConfig(
        fps=24,
        max_short_side=360,
        keep_audio=False,
        retries=0,
        timeout=1,
        sleep=0,
        sleep_requests=0,
        cookies=None,
        ffmpeg="ffmpeg",
    )
    fmts = [{"width": 640, "height": 360}, {"width": 1280, "height": 720}]
    assert download.precheck({"duration": 120, "formats": fmts}, s) == "ok"
    assert download.precheck({"duration": 300, "formats": fmts}, s) == "longer than 210 s (300.0 s)"
    assert download.precheck({"duration": 100, "formats": fmts[:1]}, s) == "below 480p (360p)"
    assert download.precheck({"url": "http://h/a.mp4"}, s) == "ok"


def test_format_selection_prefers_h264_up_to_720p():
    import yt_dlp

    formats = [
        {
            "format_id": "av1-1080",
            "vcodec": "av01.0.08M.08",
            "acodec": "none",
            "height": 1080,
            "width": 1920,
            "tbr": 2000,
        },
        {"format_id": "vp9-720", "vcodec": "vp9", "acodec": "none", "height": 720, "width": 1280, "tbr": 1500},
        {
            "format_id": "avc-1080",
            "vcodec": "avc1.640028",
            "acodec": "none",
            "height": 1080,
            "width": 1920,
            "tbr": 3000,
        },
        {"format_id": "avc-720", "vcodec": "avc1.64001f", "acodec": "none", "height": 720, "width": 1280, "tbr": 1200},
        {"format_id": "avc-360", "vcodec": "avc1.4d401e", "acodec": "none", "height": 360, "width": 640, "tbr": 400},
        {"format_id": "aac", "vcodec": "none", "acodec": "mp4a.40.2", "abr": 128},
    ]
    for f in formats:
        f.update(url=f"http://h/{f['format_id']}", ext="mp4", protocol="https")

    def pick(fmt, available):
        with yt_dlp.YoutubeDL({"quiet": True, "logger": download.QuietLogger()}) as ydl:
            info = {"formats": [dict(f) for f in available]}
            ydl.sort_formats(info)  # worst to best, as yt-dlp orders them before selecting
            return [f["format_id"] for f in ydl.build_format_selector(fmt)(info)]

    assert pick(download.ytdlp_format(False, 360), formats) == ["avc-720"]
    assert pick(download.ytdlp_format(False, 360), formats[:2]) == ["vp9-720"]  # AV1 only when nothing else fits
    assert pick(download.ytdlp_format(True, 360), formats) == ["avc-720+aac"]


def test_quality_rules_reported_and_enforced(server, tmp_path, monkeypatch):
    # Rules scaled to the test videos: 1.8 to 2.2 s and 200p (pal passes, ntsc is too long, tiny too small).
    monkeypatch.setattr(quality, "QUALITY_SECONDS", (1.8, 2.2))
    monkeypatch.setattr(quality, "QUALITY_MIN_LINES", 200)
    u = server["url"]
    items = [
        FetchItem("pal", f"{u}/pal.mp4?q"),
        FetchItem("ntsc", f"{u}/ntsc.mp4?q"),
        FetchItem("tiny", f"{u}/tiny.mp4?q"),
    ]
    out = tmp_path / "report"
    s = fetch_collection(items, out, progress=False)  # reported only
    assert sorted(s.done) == ["ntsc", "pal", "tiny"]
    rows = _rows(out)
    assert rows["pal"]["quality"] == "ok"
    assert rows["ntsc"]["quality"] == "longer than 2.2 s (2.5 s)"
    assert rows["tiny"]["quality"] == "shorter than 1.8 s (1.6 s); below 200p (90p)"
    assert set(s.quality) == {"ntsc", "tiny"} and "do not meet the paper's quality rules" in s.text()

    # Enforced on the same folder: the videos that break the rules go, without a download.
    before = sum(server["hits"].values())
    s = fetch_collection(items, out, enforce_quality=True, progress=False)
    assert s.skipped == ["pal"] and set(s.rejected) == {"ntsc", "tiny"} and s.ok
    assert sum(server["hits"].values()) == before
    assert _only_results(out) == ["manifest.csv", "pal.mp4"]
    assert {m: r["status"] for m, r in _rows(out).items()} == {"pal": "skipped", "ntsc": "rejected", "tiny": "rejected"}

    # Enforced from scratch: rejected after probing the download, nothing kept; a re-run
    # does not download them again.
    fresh = tmp_path / "fresh"
    s = fetch_collection(items, fresh, enforce_quality=True, progress=False)
    assert s.done == ["pal"] and set(s.rejected) == {"ntsc", "tiny"}
    assert "2 kept out by the quality rules" in s.text()
    assert _rows(fresh)["tiny"]["error"] == "quality" and _rows(fresh)["tiny"]["src_height"] == "90"
    hits = server["hits"]["/tiny.mp4?q"]
    s = fetch_collection(items, fresh, enforce_quality=True, progress=False)
    assert set(s.rejected) == {"ntsc", "tiny"} and server["hits"]["/tiny.mp4?q"] == hits
    assert _only_results(fresh) == ["manifest.csv", "pal.mp4"]


# ---- the command line -----------------------------------------------------------------------------


def test_cli_fetch_labels_with_a_url_table(server, tmp_path, capsys):
    from t12k import GENRES
    from t12k.cli import main

    u = server["url"]
    labels = tmp_path / "mtgc.csv"
    header = ["mid", *GENRES, "split0", "split1", "split2"]
    labels.write_text(
        ",".join(header)
        + "\n"
        + "".join(
            ",".join([m] + ["1"] + ["0"] * 9 + ["0", "1", "2"]) + "\n" for m in ("tt0000002", "tt0000001", "tt0000003")
        )
    )
    table = tmp_path / "urls.csv"
    table.write_text(f"mid,url\n1,{u}/pal.mp4\n0000002,{u}/tiny.mp4\ntt0000009,{u}/ntsc.mp4\n")
    out = tmp_path / "videos"
    rc = main(["fetch", str(table), "--labels", str(labels), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1 and "3 trailers, 2 downloaded" in printed and "1 failed" in printed
    rows = _rows(out)
    assert list(rows) == ["tt0000002", "tt0000001", "tt0000003"]  # mtgc order, mtgc ids
    assert rows["tt0000003"]["status"] == "failed" and rows["tt0000003"]["error"] == "no-url"
    assert _only_results(out) == ["manifest.csv", "tt0000001.mp4", "tt0000002.mp4"]

    rc = main(["fetch", str(labels), "--out", str(out), "--quiet"])
    assert rc == 2 and "looks like an mtgc.csv" in capsys.readouterr().err


def test_cli_fetch_refuses_bad_settings(tmp_path, capsys):
    from t12k.cli import main

    assert main(["fetch", "--url", "http://127.0.0.1:9/a.mp4", "--out", str(tmp_path), "--normalize-workers", "0"]) == 2
    assert "--normalize-workers must be at least 1; got 0" in capsys.readouterr().err
    assert main(["fetch", "--url", "http://127.0.0.1:9/a.mp4", "--out", str(tmp_path), "--sleep", "-1"]) == 2
    assert "sleep must be 0 or more" in capsys.readouterr().err
    with pytest.raises(T12kError, match="--labels needs the URLs"):
        from t12k.cli import build_parser, cmd_fetch

        cmd_fetch(build_parser().parse_args(["fetch", "--labels", str(tmp_path / "m.csv")]))
