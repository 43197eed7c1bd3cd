"""fetch: list files, ids from URLs, and yt-dlp downloads from a local HTTP server (offline)."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from t12k.errors import T12kError
from t12k.pipeline.fetch import FetchItem, FetchSummary, classify, config, fetch_collection, id_from_url, read_items
from t12k.pipeline.media import ffmpeg_exe, probe, write_video

# ---- a local web server -----------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    hits: Counter = Counter()
    # path -> HTTP statuses to answer (one per request) before serving the file normally
    plan: dict[str, list[int]] = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _planned(self) -> bool:
        with self.lock:
            self.hits[self.path] += 1
            queue = self.plan.get(self.path)
            status = queue.pop(0) if queue else None
        if status is None:
            return False
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_GET(self):
        if not self._planned():
            super().do_GET()

    def do_HEAD(self):
        if not self._planned():
            super().do_HEAD()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # yt-dlp closes the connection once it has what it needs: not an error


def _lavfi(path: Path, size: str, rate: str, frames: int, codec_args: list[str]) -> Path:
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
            *codec_args,
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


def _has_encoder(name: str) -> bool:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return f" {name} " in out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    rng = np.random.default_rng(1)
    frames = [np.full((240, 320, 3), rng.integers(0, 256, 3), np.uint8) for _ in range(50)]
    write_video(root / "pal.mp4", frames, fps=25)  # 2 s, 25 fps, 320x240
    _lavfi(
        root / "ntsc.mp4",
        "160x90",
        "30000/1001",
        75,  # 2.5 s, 29.97 fps
        ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    )
    if _has_encoder("libvpx-vp9"):
        _lavfi(
            root / "vp9.webm",
            "320x240",
            "30000/1001",
            60,
            ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"],
        )
    (root / "notvideo.mp4").write_text("this is not a video\n" * 20)
    (root / "two.html").write_text(
        '<html><body><video src="pal.mp4"></video><video src="ntsc.mp4"></video></body></html>'
    )
    (root / "plain.html").write_text("<html><body>no video here</body></html>")
    _Handler.hits.clear()
    _Handler.plan.clear()
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield {"url": f"http://{host}:{port}", "root": root, "hits": _Handler.hits, "plan": _Handler.plan}
    httpd.shutdown()
    httpd.server_close()


from conftest import manifest_rows  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_backoff")
_rows = manifest_rows


# ---- fetching ---------------------------------------------------------------------------


def test_fetch_normalizes_records_and_resumes(server, tmp_path):
    u = server["url"]
    items = [
        FetchItem("pal", f"{u}/pal.mp4"),
        FetchItem("ntsc", f"{u}/ntsc.mp4"),
        FetchItem("gone", f"{u}/gone.mp4"),
        FetchItem("junk", f"{u}/notvideo.mp4"),
    ]
    sources = {"pal": "pal.mp4", "ntsc": "ntsc.mp4"}
    if (server["root"] / "vp9.webm").exists():
        items.append(FetchItem("vp9", f"{u}/vp9.webm"))
        sources["vp9"] = "vp9.webm"
    out = tmp_path / "videos"
    summary = fetch_collection(items, out, workers=2, max_short_side=120, progress=False)

    assert isinstance(summary, FetchSummary)
    assert sorted(summary.done) == sorted(sources) and summary.skipped == []
    assert set(summary.failed) == {"gone", "junk"}
    assert "404" in summary.failed["gone"]
    assert "not a readable video" in summary.failed["junk"]
    assert summary.counts == {"ok": len(sources), "skipped": 0, "failed": 2} and not summary.ok
    text = summary.text()
    assert "\n" not in text and f"{len(sources)} downloaded" in text and "2 failed" in text and "gone:" in text

    rows = _rows(out)
    assert set(rows) == {it.id for it in items}
    for mid, name in sources.items():
        src, info = probe(server["root"] / name), probe(out / f"{mid}.mp4")
        assert info.codec == "h264" and info.fps == 24.0
        assert info.num_frames == round(src.duration * 24)
        assert min(info.width, info.height) <= 120
        r = rows[mid]
        assert r["status"] == "ok" and r["reason"] == "" and r["url"] == f"{u}/{name}"
        assert (int(r["src_width"]), int(r["src_height"])) == (src.width, src.height)
        assert float(r["src_fps"]) == pytest.approx(src.fps, abs=1e-3) and r["src_codec"] == src.codec
        assert int(r["frames"]) == info.num_frames and float(r["duration"]) == pytest.approx(info.duration, abs=1e-3)
        assert int(r["bytes"]) == (out / f"{mid}.mp4").stat().st_size and len(r["sha256"]) == 64
        assert float(r["seconds"]) > 0 and r["attempts"] == "1" and r["error"] == ""
        assert float(r["src_duration"]) == pytest.approx(src.duration, abs=1e-3)
        assert r["quality"].startswith("shorter than 60 s") and "below 480p" in r["quality"]
    assert list(rows) == [it.id for it in items]  # in the order of the list
    assert rows["gone"]["status"] == "failed" and "404" in rows["gone"]["reason"]
    assert rows["gone"]["error"] == "not-found" and rows["junk"]["error"] == "not-a-video"
    assert rows["junk"]["status"] == "failed" and rows["junk"]["reason"]
    # only the videos and the manifest (plus the hidden lock file) are left
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [f"{m}.mp4" for m in sources] + ["manifest.csv"]
    )
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert ".t12k-fetch.lock" in hidden and all(n.endswith(".lock") for n in hidden)  # lock files, no leftovers

    # Second run: finished ids are skipped without a download; failed ones are tried again.
    before = server["hits"]["/pal.mp4"]
    again = fetch_collection(items, out, progress=False)
    assert sorted(again.skipped) == sorted(sources) and again.done == []
    assert set(again.failed) == {"gone", "junk"}
    assert server["hits"]["/pal.mp4"] == before
    rows2 = _rows(out)
    assert rows2["pal"]["status"] == "skipped" and rows2["pal"]["sha256"] == rows["pal"]["sha256"]
    assert rows2["pal"]["src_codec"] == "h264"

    # overwrite: downloaded again
    third = fetch_collection(items[:1], out, overwrite=True, progress=False)
    assert third.done == ["pal"] and server["hits"]["/pal.mp4"] > before


def test_video_without_manifest_row_keeps_its_source_facts(server, tmp_path):
    # A run killed between renaming a video into place and writing its row: the video
    # carries its source facts, so the next run's row is complete without a download.
    u = server["url"]
    out = tmp_path / "v"
    fetch_collection([FetchItem("ntsc", f"{u}/ntsc.mp4")], out, progress=False)
    first = _rows(out)["ntsc"]
    (out / "manifest.csv").unlink()
    hits = server["hits"]["/ntsc.mp4"]
    s = fetch_collection([FetchItem("ntsc", f"{u}/ntsc.mp4")], out, progress=False)
    assert s.skipped == ["ntsc"] and server["hits"]["/ntsc.mp4"] == hits
    row = _rows(out)["ntsc"]
    for k in (
        "src_width",
        "src_height",
        "src_fps",
        "src_codec",
        "src_duration",
        "quality",
        "frames",
        "bytes",
        "sha256",
    ):
        assert row[k] == first[k], k
    # The same file under an id whose list now names another source is fetched again.
    (out / "manifest.csv").unlink()
    s = fetch_collection([FetchItem("ntsc", f"{u}/pal.mp4")], out, progress=False)
    assert s.done == ["ntsc"] and probe(out / "ntsc.mp4").num_frames == 48


def test_broken_existing_video_is_fetched_again(server, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    (out / "pal.mp4").write_bytes(b"half a video")
    s = fetch_collection([FetchItem("pal", f"{server['url']}/pal.mp4")], out, progress=False)
    assert s.done == ["pal"] and probe(out / "pal.mp4").num_frames == 48


def test_transient_errors_are_retried(server, tmp_path):
    server["plan"]["/ntsc.mp4?flaky"] = [503, 503]
    s = fetch_collection([FetchItem("flaky", f"{server['url']}/ntsc.mp4?flaky")], tmp_path, retries=2, progress=False)
    assert s.done == ["flaky"], s.text()
    assert server["hits"]["/ntsc.mp4?flaky"] >= 3


def test_transient_errors_give_up_after_retries(server, tmp_path):
    server["plan"]["/ntsc.mp4?down"] = [503] * 10
    s = fetch_collection([FetchItem("down", f"{server['url']}/ntsc.mp4?down")], tmp_path, retries=1, progress=False)
    assert "after 2 attempts" in s.failed["down"] and "503" in s.failed["down"]
    assert server["hits"]["/ntsc.mp4?down"] == 2


def test_retries_mean_at_most_retries_plus_one_requests(server, tmp_path):
    # The page names one video, which the server refuses with 503 every time it is asked for.
    # yt-dlp must not retry on its own (its download retries would ask again within each
    # attempt): with retries=2 the video is requested exactly 3 times, then recorded failed.
    (server["root"] / "one503.html").write_text('<html><body><video src="pal.mp4?always503"></video></body></html>')
    server["plan"]["/pal.mp4?always503"] = [503] * 50
    s = fetch_collection([FetchItem("busy", f"{server['url']}/one503.html")], tmp_path, retries=2, progress=False)
    assert server["hits"]["/pal.mp4?always503"] == 3
    assert server["hits"]["/one503.html"] == 3  # each attempt looks at the page once
    assert "after 3 attempts" in s.failed["busy"] and "503" in s.failed["busy"]
    row = _rows(tmp_path)["busy"]
    assert row["status"] == "failed" and row["error"] == "transient" and row["attempts"] == "3"


def test_not_found_and_forbidden_are_not_retried(server, tmp_path):
    u = server["url"]
    server["plan"]["/pal.mp4?forbidden"] = [403] * 10
    s = fetch_collection(
        [FetchItem("missing", f"{u}/nothing-here.mp4"), FetchItem("forbidden", f"{u}/pal.mp4?forbidden")],
        tmp_path,
        retries=3,
        progress=False,
    )
    assert set(s.failed) == {"missing", "forbidden"}
    assert "404" in s.failed["missing"] and "403" in s.failed["forbidden"]
    assert "attempts" not in s.failed["missing"]
    assert server["hits"]["/nothing-here.mp4"] == 1 and server["hits"]["/pal.mp4?forbidden"] == 1


def test_web_pages_without_one_video_are_refused(server, tmp_path):
    u = server["url"]
    s = fetch_collection(
        [FetchItem("two", f"{u}/two.html"), FetchItem("plain", f"{u}/plain.html")], tmp_path, progress=False
    )
    assert "is a playlist, not one video" in s.failed["two"]
    assert "Unsupported URL" in s.failed["plain"]
    assert not list(tmp_path.glob("*.mp4"))


def test_connection_refused_is_recorded(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = fetch_collection(
        [FetchItem("x", f"http://127.0.0.1:{port}/x.mp4")], tmp_path, retries=1, timeout=5, progress=False
    )
    assert "refused" in s.failed["x"].lower() and _rows(tmp_path)["x"]["status"] == "failed"


def test_leftovers_of_a_killed_run_are_removed(server, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    (out / ".t12k-tmp-pal-0123abcd").mkdir()
    (out / ".t12k-tmp-pal-0123abcd" / "source.mp4.part").write_bytes(b"x" * 100)
    (out / ".pal.t12k-tmp-89abcdef.mp4").write_bytes(b"x" * 100)
    (out / ".keep-me").write_text("user file")
    s = fetch_collection([], out, progress=False)
    assert s.counts == {"ok": 0, "skipped": 0, "failed": 0}
    assert sorted(p.name for p in out.iterdir() if p.name != ".manifest.csv.lock") == [".keep-me", ".t12k-fetch.lock"]


def test_one_run_per_folder(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    with open(tmp_path / ".t12k-fetch.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(T12kError, match="another t12k fetch is writing to"):
            fetch_collection([], tmp_path, progress=False)


def test_fetch_refuses_bad_input(tmp_path):
    with pytest.raises(T12kError, match="given twice"):
        fetch_collection([FetchItem("a", "http://x/1.mp4"), FetchItem("a", "http://x/2.mp4")], tmp_path, progress=False)
    with pytest.raises(T12kError, match="invalid trailer id"):
        fetch_collection([FetchItem("../a", "http://x/1.mp4")], tmp_path, progress=False)
    with pytest.raises(T12kError, match="cookies file"):
        fetch_collection([], tmp_path, cookies=tmp_path / "nope.txt", progress=False)
    with pytest.raises(T12kError, match="unsupported browser"):
        fetch_collection([], tmp_path, cookies_from_browser="netscape4", progress=False)
    with pytest.raises(T12kError, match="workers"):
        fetch_collection([], tmp_path, workers=0, progress=False)


def test_transient_classification():
    import io

    from yt_dlp.networking import Response
    from yt_dlp.networking.exceptions import CertificateVerifyError, HTTPError, TransportError
    from yt_dlp.utils import DownloadError, ExtractorError

    def dl(cause, msg="ERROR: [generic] x: Unable to download webpage"):
        return DownloadError(msg, exc_info=(type(cause), cause, None))

    def http(status):
        return HTTPError(Response(io.BytesIO(b""), "http://h/x", {}, status=status))

    transient = classify.is_transient
    assert transient(dl(http(503))) and transient(dl(http(500))) and transient(dl(http(429)))
    assert not transient(dl(http(404))) and not transient(dl(http(403))) and not transient(dl(http(410)))
    assert transient(dl(TransportError("[Errno 104] Connection reset by peer")))
    assert transient(dl(TimeoutError("timed out")))
    assert not transient(dl(CertificateVerifyError("certificate verify failed")))
    assert not transient(
        dl(TransportError("[Errno -2] Name or service not known"), "ERROR: x: [Errno -2] Name or service not known")
    )
    assert transient(dl(ExtractorError("wrapped", cause=http(502))))  # followed through .cause
    assert not transient(DownloadError("ERROR: [youtube] abc: Video unavailable"))
    assert transient(DownloadError("ERROR: unable to download video data: HTTP Error 502: Bad Gateway"))
    assert not transient(DownloadError("ERROR: unable to download video data: HTTP Error 404: Not Found"))
    # a connection dropped mid-file, as this yt-dlp words it (http.client's IncompleteRead, no cause kept)
    assert transient(DownloadError("ERROR: \r[download] Got error: 87696 bytes read, 87697 more expected"))


def test_browser_spec():
    assert config.browser_spec("firefox") == ("firefox", None, None, None)
    assert config.browser_spec("chrome+gnomekeyring:Profile 1") == ("chrome", "Profile 1", "GNOMEKEYRING", None)


# ---- ids from URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,mid",
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://youtube.com/watch?feature=share&v=dQw4w9WgXcQ&t=10", "dQw4w9WgXcQ"),
        ("https://youtu.be/dQw4w9WgXcQ?si=abc", "dQw4w9WgXcQ"),
        ("https://m.youtube.com/shorts/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://www.youtube.com/watch?v=-bcdefghijk", "yt-bcdefghijk"),
        ("https://www.youtube.com/watch?v=_bcdefghijk", "yt_bcdefghijk"),
        ("http://127.0.0.1:8000/trailers/The%20Matrix%20(1999).mp4", "The-Matrix-1999"),
        ("https://cdn.example.com/a/b/clip_01.webm?token=xyz", "clip_01"),
        ("https://cdn.example.com/../../etc/passwd", "passwd"),
    ],
)
def test_id_from_url(url, mid):
    from t12k.storage import check_id

    got = id_from_url(url)
    assert got == mid
    assert check_id(got) == got


def test_id_from_url_without_a_name_is_a_hash():
    a, b = id_from_url("https://example.com/"), id_from_url("https://example.org/")
    assert a.startswith("url-") and a != b


# ---- list files -------------------------------------------------------------------------


def test_read_csv(tmp_path):
    p = tmp_path / "list.csv"
    p.write_text('id,url,title\ntt001,https://youtu.be/dQw4w9WgXcQ,"Title, with comma"\n\ntt002,http://h/x.mp4,Two\n')
    assert read_items(p) == [FetchItem("tt001", "https://youtu.be/dQw4w9WgXcQ"), FetchItem("tt002", "http://h/x.mp4")]


def test_read_csv_other_fields_and_derived_ids(tmp_path):
    p = tmp_path / "list.csv"
    p.write_text("mid,link\n1234,http://h/a.mp4\n,https://youtu.be/dQw4w9WgXcQ\n")
    assert read_items(p, id_field="mid", url_field="link") == [
        FetchItem("1234", "http://h/a.mp4"),
        FetchItem("dQw4w9WgXcQ", "https://youtu.be/dQw4w9WgXcQ"),
    ]
    q = tmp_path / "urls_only.csv"
    q.write_text("url\nhttp://h/a.mp4\n")
    assert read_items(q) == [FetchItem("a", "http://h/a.mp4")]


def test_read_tsv(tmp_path):
    p = tmp_path / "list.tsv"
    p.write_text("id\turl\nm1\thttp://h/a.mp4\n")
    assert read_items(p) == [FetchItem("m1", "http://h/a.mp4")]


def test_read_json_and_jsonl(tmp_path):
    items = [{"id": "m1", "url": "http://h/a.mp4", "genres": ["drama"]}, {"id": 7, "url": "http://h/b.mp4"}]
    p = tmp_path / "list.json"
    p.write_text(json.dumps(items, indent=2))
    expected = [FetchItem("m1", "http://h/a.mp4"), FetchItem("7", "http://h/b.mp4")]
    assert read_items(p) == expected
    q = tmp_path / "list.jsonl"
    q.write_text("\n".join(json.dumps(i) for i in items) + "\n\n")
    assert read_items(q) == expected
    (tmp_path / "empty.json").write_text("[ ]")
    assert read_items(tmp_path / "empty.json") == []


def test_read_text_of_urls(tmp_path):
    p = tmp_path / "urls.txt"
    p.write_text("# trailers\nhttps://www.youtube.com/watch?v=dQw4w9WgXcQ\n\n  http://h/films/b.mp4  \n")
    assert read_items(p) == [
        FetchItem("dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
        FetchItem("b", "http://h/films/b.mp4"),
    ]


def test_read_sniffs_unknown_suffix(tmp_path):
    (tmp_path / "a.list2").write_text("http://h/a.mp4\n")
    (tmp_path / "b.data").write_text('[{"id": "b", "url": "http://h/b.mp4"}]')
    (tmp_path / "c.data").write_text("id,url\nc,http://h/c.mp4\n")
    assert read_items(tmp_path / "a.list2")[0].id == "a"
    assert read_items(tmp_path / "b.data")[0].id == "b"
    assert read_items(tmp_path / "c.data")[0].id == "c"


@pytest.mark.parametrize(
    "name,content,pattern",
    [
        ("bad_row.csv", "id,url\na,http://h/a.mp4\nb,http://h/b.mp4,extra\n", r"bad_row.csv:3: the row has 3 fields"),
        ("no_url.csv", "id,link\na,http://h/a.mp4\n", r"no_url.csv:1: no 'url' column"),
        ("empty_url.csv", "id,url\na,\n", r"empty_url.csv:2: the URL is empty"),
        ("not_url.csv", "id,url\na,http://h/a.mp4\nb,just-a-name\n", r"not_url.csv:3: 'just-a-name' is not a URL"),
        ("dotdot.csv", "id,url\n../x,http://h/a.mp4\n", r"dotdot.csv:2: invalid trailer id '../x'"),
        (
            "absolute.csv",
            "id,url\nok,http://h/a.mp4\n/etc/x,http://h/b.mp4\n",
            r"absolute.csv:3: invalid trailer id '/etc/x'",
        ),
        (
            "dup.csv",
            "id,url\na,http://h/1.mp4\nb,http://h/2.mp4\na,http://h/3.mp4\n",
            r"id 'a' appears on lines 2 and 4",
        ),
        ("dup.txt", "http://h/x/a.mp4\n\nhttp://h/y/a.mp4\n", r"id 'a' appears on lines 1 and 3"),
        ("bad.txt", "http://h/a.mp4\nnot a url\n", r"bad.txt:2: 'not a url' is not a URL"),
        ("bad.jsonl", '{"id": "a", "url": "http://h/a.mp4"}\n{"id": "b", "url": \n', r"bad.jsonl:2: invalid JSON"),
        (
            "nourl.jsonl",
            '{"id": "a", "url": "http://h/a.mp4"}\n{"id": "b"}\n',
            r"nourl.jsonl:2: the object has no 'url' field",
        ),
        (
            "list.json",
            '[\n  {"id": "a", "url": "http://h/a.mp4"},\n  {"id": "../b", "url": "http://h/b.mp4"}\n]',
            r"list.json:3: invalid trailer id '../b'",
        ),
        ("obj.json", '{"a": "http://h/a.mp4"}', r"obj.json:1: expected a JSON list of objects"),
        (
            "broken.json",
            '[\n{"id": "a", "url": "http://h/a.mp4"},\n{"id": "b" "url": 1}\n]',
            r"broken.json:3: invalid JSON",
        ),
        ("strings.json", '["http://h/a.mp4"]', r"strings.json:1: expected an object"),
        ("bool_id.json", '[{"id": true, "url": "http://h/a.mp4"}]', r"bool_id.json:1: the id True"),
    ],
)
def test_read_items_errors(tmp_path, name, content, pattern):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(T12kError, match=pattern) as err:
        read_items(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_read_items_missing_file(tmp_path):
    with pytest.raises(T12kError, match="list file .* not found"):
        read_items(tmp_path / "nope.csv")
