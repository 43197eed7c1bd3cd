"""fetch: downloads are bounded in size (--max-filesize) and time (--download-deadline), against
a local server on 127.0.0.1 that sends an endless body, announces a huge one, or trickles."""

from __future__ import annotations

import argparse
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import manifest_rows  # noqa: E402

from t12k.errors import T12kError
from t12k.pipeline.fetch import FetchConfig, FetchItem, fetch_collection
from t12k.pipeline.fetch.config import DEADLINE_BASE, DEADLINE_PER_SECOND, UNKNOWN_DURATION, parse_size

_BLOCK = b"\0" * 65536


class _Handler(BaseHTTPRequestHandler):
    """/endless.mp4: video/mp4 without a Content-Length, forever; /huge.mp4: announces 10 GB;
    /trickle.mp4: one byte every 0.5 s, forever. The server stops each after 60 s (a test
    that does not stop them fails, but ends)."""

    sent: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        if self.path == "/huge.mp4":
            self.send_header("Content-Length", str(10 * 10**9))
        self.end_headers()
        t0, sent = time.monotonic(), 0
        try:
            while time.monotonic() - t0 < 60:
                if self.path == "/trickle.mp4":
                    self.wfile.write(b"x")
                    sent += 1
                    time.sleep(0.5)
                else:
                    self.wfile.write(_BLOCK)
                    sent += len(_BLOCK)
                self.wfile.flush()
        except OSError:  # the client hung up: what the tests want
            pass
        finally:
            self.sent[self.path] = sent


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _results(folder) -> list[str]:
    """What a run left in `folder`, but for the lock files (the run's and the manifest's)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def _wait_sent(path: str) -> int:
    """The bytes the server sent on `path` before the client hung up (its handler has ended)."""
    for _ in range(200):
        if path in _Handler.sent:
            return _Handler.sent[path]
        time.sleep(0.05)
    raise AssertionError(f"the server is still sending {path}")


def test_an_endless_body_stops_at_the_cap(server, tmp_path):
    cap = parse_size("2M")
    s = fetch_collection(
        [FetchItem("endless", f"{server}/endless.mp4")], tmp_path, max_filesize=cap, retries=2, progress=False
    )
    row = manifest_rows(tmp_path)["endless"]
    assert row["status"] == "failed" and row["error"] == "too-large" and row["attempts"] == "1"
    assert "larger than the 2 MiB cap (stopped after receiving " in row["reason"] and "--max-filesize" in row["reason"]
    assert s.failed["endless"] == row["reason"]
    # stopped near the cap (yt-dlp reads blocks of at most 4 MiB), not filling the disk
    received = float(re.search(r"receiving ([\d.]+) MiB", row["reason"]).group(1)) * (1 << 20)
    assert cap < received <= cap + (4 << 20) + 1024
    assert _wait_sent("/endless.mp4") < 64 << 20  # the server's handler ended: the connection was closed
    assert _results(tmp_path) == ["manifest.csv"]


def test_an_announced_size_above_the_cap_is_refused_before_downloading(server, tmp_path):
    fetch_collection([FetchItem("huge", f"{server}/huge.mp4")], tmp_path, max_filesize=parse_size("1G"), progress=False)
    row = manifest_rows(tmp_path)["huge"]
    assert row["status"] == "failed" and row["error"] == "too-large"
    assert "larger than the 1 GiB cap (the server announces 9.313 GiB)" in row["reason"]


def test_a_trickling_body_stops_at_the_deadline(server, tmp_path):
    fetch_collection(
        [FetchItem("slow", f"{server}/trickle.mp4")],
        tmp_path,
        download_deadline=2,
        timeout=5,
        retries=2,
        progress=False,
    )
    row = manifest_rows(tmp_path)["slow"]
    assert row["status"] == "failed" and row["error"] == "too-slow" and row["attempts"] == "1"
    assert "longer than its deadline of 2 s" in row["reason"] and "--download-deadline" in row["reason"]
    # the connection was cut at the deadline: the server's handler ended long before its own
    # 60 s limit (120 bytes), instead of the read waiting for the next byte for ever
    assert _wait_sent("/trickle.mp4") < 60
    assert _results(tmp_path) == ["manifest.csv"]


def test_the_default_deadline_follows_the_duration():
    c = FetchConfig()
    assert c.deadline(210.0) == DEADLINE_BASE + DEADLINE_PER_SECOND * 210 == 1170.0  # about 20 minutes
    assert c.deadline(60) == 420.0
    assert c.deadline(None) == c.deadline(0) == DEADLINE_BASE + DEADLINE_PER_SECOND * UNKNOWN_DURATION
    assert FetchConfig(download_deadline=30).deadline(210.0) == 30.0


def test_bounds_options_and_their_checks():
    from t12k.settings import add_settings, settings_from

    p = argparse.ArgumentParser()
    add_settings(p, FetchConfig)
    a = p.parse_args(["--max-filesize", "500M", "--download-deadline", "90"])
    c = FetchConfig(**settings_from(a, FetchConfig))
    assert c.max_filesize == 500 << 20 and c.download_deadline == 90.0
    assert FetchConfig().max_filesize == 2 << 30 and parse_size("2GiB") == parse_size("2G") == 2 << 30
    assert parse_size("1000") == 1000
    with pytest.raises(T12kError, match="cannot read the size 'lots'"):
        parse_size("lots")
    with pytest.raises(SystemExit):
        p.parse_args(["--max-filesize", "lots"])
    with pytest.raises(T12kError, match="--download-deadline must be a positive number of seconds; got 0"):
        FetchConfig(download_deadline=0).validate()
    with pytest.raises(T12kError, match="--max-filesize must be at least 1 byte; got 0"):
        FetchConfig(max_filesize=0).validate()
