"""Fetching a collection: read a list of (id, URL), download each with yt-dlp, normalize it.

`read_items` reads CSV, JSON, JSONL or a text file of URLs and refuses unsafe or duplicate
ids with the file and line. `fetch_collection` downloads with yt-dlp's Python API in a thread
pool (the normalizing ffmpeg is a subprocess, so threads suffice), re-encodes every video
with `media.normalize` to `OUT/{id}.mp4` (H.264, constant 24 fps) and records every id in
`OUT/manifest.csv`. A failed trailer is recorded with a one-line reason and the run goes on;
finished ids are skipped on the next run; transient network errors are retried with backoff.
Temporary files live in OUT under names marked `.t12k-tmp`; a killed run's leftovers are
removed when the next run starts (one run per folder at a time, enforced with a lock file).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from t12k.errors import T12kError
from t12k.pipeline import media
from t12k.storage import Manifest, check_id

MANIFEST_FIELDS = ("url", "src_width", "src_height", "src_fps", "src_codec", "duration", "frames",
                   "bytes", "sha256", "seconds")
_LOCK_NAME = ".t12k-fetch.lock"
_BACKOFF = 2.0  # seconds before the first retry; doubled for each further one (tests shrink it)
_MAX_REASON = 300


@dataclass
class FetchItem:
    id: str
    url: str


# ---- ids from URLs --------------------------------------------------------------------------

_YT_HOSTS = ("youtube.com", "youtube-nocookie.com", "youtu.be")
_YT_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


def _youtube_id(url: str) -> str | None:
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if not any(host == h or host.endswith("." + h) for h in _YT_HOSTS):
        return None
    parts = [p for p in parsed.path.split("/") if p]
    candidates: list[str] = []
    if host.endswith("youtu.be"):
        candidates += parts[:1]
    candidates += parse_qs(parsed.query).get("v", [])
    if len(parts) >= 2 and parts[0] in ("shorts", "embed", "v", "live", "e"):
        candidates.append(parts[1])
    return next((c for c in candidates if _YT_ID.match(c)), None)


def id_from_url(url: str) -> str:
    """A safe trailer id for a URL: the YouTube video id (prefixed with 'yt' when it starts
    with '-' or '_'), else a slug of the file name, else a hash of the URL."""
    yt = _youtube_id(url)
    if yt:
        return yt if yt[0].isalnum() else "yt" + yt
    path = unquote(urlparse(url).path)
    stem = path.rstrip("/").rsplit("/", 1)[-1]
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", stem)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    slug = re.sub(r"\.{2,}", ".", slug).lstrip("._-")[:100].rstrip("._-")
    if slug:
        return slug
    return "url-" + hashlib.sha1(url.encode()).hexdigest()[:12]


# ---- reading lists --------------------------------------------------------------------------

def _check_url(url, where: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise T12kError(f"{where}: the URL is empty; give every row a URL or remove the row")
    url = url.strip()
    if not _URL_RE.match(url):
        raise T12kError(f"{where}: {url[:80]!r} is not a URL (expected http(s)://...); fix the row")
    return url


def _item(raw_id, url, where: str) -> FetchItem:
    url = _check_url(url, where)
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        mid = id_from_url(url)
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        mid = str(raw_id).strip()
    else:
        raise T12kError(f"{where}: the id {raw_id!r} is not a string or integer; fix the row")
    try:
        check_id(mid)
    except T12kError as exc:
        raise T12kError(f"{where}: {exc}") from None
    return FetchItem(mid, url)


def _rows_csv(text: str, path: Path, id_field: str, url_field: str) -> Iterator[tuple[int, FetchItem]]:
    first = text.split("\n", 1)[0]
    tabs = path.suffix.lower() == ".tsv" or ("\t" in first and "," not in first)
    delimiter = "\t" if tabs else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    if url_field not in header:
        raise T12kError(f"{path}:1: no {url_field!r} column in the header ({', '.join(header)}); "
                        f"name the URL column {url_field!r} or pass --url-field")
    ui = header.index(url_field)
    ii = header.index(id_field) if id_field in header else None
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise T12kError(f"{path}:{line}: the row has {len(row)} fields, the header {len(header)}; "
                            f"fix the row (quote fields that contain '{delimiter}')")
        yield line, _item(row[ii] if ii is not None else None, row[ui], f"{path}:{line}")


def _obj_item(obj, where: str, id_field: str, url_field: str) -> FetchItem:
    if not isinstance(obj, dict):
        raise T12kError(f"{where}: expected an object with {id_field!r} and {url_field!r}, "
                        f"got {type(obj).__name__}; fix the entry")
    if url_field not in obj:
        raise T12kError(f"{where}: the object has no {url_field!r} field (has {', '.join(map(str, obj)) or 'none'}); "
                        f"add it or pass --url-field")
    return _item(obj.get(id_field), obj[url_field], where)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _rows_json(text: str, path: Path, id_field: str, url_field: str) -> Iterator[tuple[int, FetchItem]]:
    """A JSON list of objects, parsed element by element so each keeps its line number."""
    dec = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()
    if pos >= len(text) or text[pos] != "[":
        raise T12kError(f"{path}:{_line_of(text, pos)}: expected a JSON list of objects ([{{...}}, ...]); fix the file")
    pos = ws.match(text, pos + 1).end()
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line = _line_of(text, pos)
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise T12kError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); fix the file") from None
        yield line, _obj_item(obj, f"{path}:{line}", id_field, url_field)
        pos = ws.match(text, pos).end()
        if pos < len(text) and text[pos] == ",":
            pos = ws.match(text, pos + 1).end()
            continue
        if pos < len(text) and text[pos] == "]":
            if text[pos + 1:].strip():
                raise T12kError(f"{path}:{_line_of(text, pos + 1)}: extra data after the JSON list; fix the file")
            return
        raise T12kError(f"{path}:{_line_of(text, pos)}: invalid JSON (expected ',' or ']'); fix the file")


def _rows_jsonl(text: str, path: Path, id_field: str, url_field: str) -> Iterator[tuple[int, FetchItem]]:
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise T12kError(f"{path}:{line}: invalid JSON ({exc.msg}); fix the line") from None
        yield line, _obj_item(obj, f"{path}:{line}", id_field, url_field)


def _rows_text(text: str, path: Path) -> Iterator[tuple[int, FetchItem]]:
    for line, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        yield line, _item(None, s, f"{path}:{line}")


def _kind(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".json":
        return "json"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".txt", ".list", ".urls"):
        return "text"
    head = text.lstrip()
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "jsonl"
    first = head.splitlines()[0] if head else ""
    return "text" if _URL_RE.match(first.strip()) or not first else "csv"


def read_items(path: str | os.PathLike, id_field: str = "id", url_field: str = "url") -> list[FetchItem]:
    """The (id, URL) items of a list file: CSV/TSV with a header, a JSON list of objects,
    JSONL, or a text file with one URL a line ('#' comments allowed; ids from the URLs).

    A missing id (column or value) is derived from the URL. Malformed rows, unsafe ids and
    duplicate ids raise T12kError naming the file and line(s).
    """
    p = Path(path)
    if not p.is_file():
        raise T12kError(f"list file {p} not found; check the path")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise T12kError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    kind = _kind(p, text)
    if kind == "csv":
        rows = _rows_csv(text, p, id_field, url_field)
    elif kind == "json":
        rows = _rows_json(text, p, id_field, url_field)
    elif kind == "jsonl":
        rows = _rows_jsonl(text, p, id_field, url_field)
    else:
        rows = _rows_text(text, p)
    items: list[FetchItem] = []
    seen: dict[str, int] = {}
    for line, item in rows:
        if item.id in seen:
            raise T12kError(f"{p}: id {item.id!r} appears on lines {seen[item.id]} and {line}; "
                            f"give every trailer its own id (or drop the duplicate)")
        seen[item.id] = line
        items.append(item)
    return items


# ---- the summary ----------------------------------------------------------------------------

@dataclass
class FetchSummary:
    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def counts(self) -> dict[str, int]:
        return {"ok": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed)}

    def text(self) -> str:
        total = len(self.done) + len(self.skipped) + len(self.failed)
        s = (f"fetch: {total} trailers, {len(self.done)} downloaded and normalized "
             f"({self.bytes / 1e6:.1f} MB), {len(self.skipped)} already there, {len(self.failed)} failed "
             f"in {self.seconds:.1f} s; videos in {self.out_dir}, one row per id in {self.out_dir / 'manifest.csv'}.")
        if self.failed:
            shown = list(self.failed.items())[:5]
            s += " Failed: " + "; ".join(f"{k}: {v}" for k, v in shown)
            s += f" (and {len(self.failed) - 5} more, see the manifest)." if len(self.failed) > 5 else "."
        return s


# ---- downloading ----------------------------------------------------------------------------

class _Transient(Exception):
    """A download error worth retrying (connection trouble, timeouts, HTTP 5xx/408/429)."""


class _QuietLogger:
    """Swallows yt-dlp's messages; errors reach us as exceptions."""

    def debug(self, msg):
        pass

    info = warning = error = debug


_TRANSIENT_TEXT = re.compile(r"HTTP Error (5\d\d|408|429)|timed out|Connection (reset|aborted|refused)|"
                             r"Remote end closed|IncompleteRead|Temporary failure in name resolution|"
                             r"giving up after \d+ retries|ContentTooShort", re.I)
# A name that does not resolve will not resolve a minute later either.
_UNKNOWN_HOST = re.compile(r"Name or service not known|nodename nor servname|No address associated|getaddrinfo failed", re.I)
_PERMANENT_HTTP = re.compile(r"HTTP Error (4(0[0-7]|09|1\d|2[0-8]|[3-9]\d))\b")


def _is_transient(exc: BaseException) -> bool:
    from yt_dlp.networking.exceptions import HTTPError, SSLError, TransportError

    if _UNKNOWN_HOST.search(str(exc)):
        return False
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, HTTPError):
            return e.status >= 500 or e.status in (408, 429)
        if isinstance(e, SSLError):
            return False
        if isinstance(e, (TransportError, TimeoutError, ConnectionError)):
            return True
        info = getattr(e, "exc_info", None)
        todo += [getattr(e, "cause", None), e.__cause__, info[1] if info else None]
    msg = str(exc)
    return bool(_TRANSIENT_TEXT.search(msg)) and not _PERMANENT_HTTP.search(msg)


def _reason(exc: BaseException) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    msg = msg.splitlines()[0] if msg else type(exc).__name__
    msg = re.sub(r"^ERROR:\s*", "", msg)
    msg = re.sub(r"\s*\(caused by .*\)\s*$", "", msg)
    return msg[:_MAX_REASON]


def _browser_spec(spec: str) -> tuple:
    """yt-dlp's BROWSER[+KEYRING][:PROFILE][::CONTAINER] as the tuple its API takes."""
    m = re.fullmatch(r"(?P<name>[^+:]+)(?:\s*\+\s*(?P<keyring>[^:]+))?(?:\s*:\s*(?!:)(?P<profile>.+?))?"
                     r"(?:\s*::\s*(?P<container>.+))?", spec.strip())
    if not m:
        raise T12kError(f"cannot parse cookies-from-browser {spec!r}; use BROWSER[+KEYRING][:PROFILE][::CONTAINER], e.g. firefox")
    from yt_dlp.cookies import SUPPORTED_BROWSERS

    name = m.group("name").lower().strip()
    if name not in SUPPORTED_BROWSERS:
        raise T12kError(f"unsupported browser {name!r} for cookies; use one of {', '.join(sorted(SUPPORTED_BROWSERS))}")
    keyring = m.group("keyring")
    return (name, m.group("profile"), keyring.upper() if keyring else None, m.group("container"))


@dataclass
class _Settings:
    fps: int
    max_short_side: int
    keep_audio: bool
    retries: int
    timeout: float
    sleep: float
    cookies: str | None
    browser: tuple | None
    ffmpeg: str
    threads: int | None


def _format(keep_audio: bool, max_short_side: int) -> str:
    cap = max(720, max_short_side)  # enough pixels for the short side we keep, no more
    if keep_audio:
        return (f"bv*[vcodec^=avc1][height<={cap}]+ba/b[vcodec^=avc1][height<={cap}]/"
                f"bv*[height<={cap}]+ba/b[height<={cap}]/bv*+ba/b")
    # No audio wanted: take the video alone (nothing to merge, less to download).
    return f"bv*[vcodec^=avc1][height<={cap}]/bv*[height<={cap}]/bv*/b"


def _download(url: str, folder: Path, s: _Settings) -> Path:
    """Download `url` into `folder` with yt-dlp; the path of the media file."""
    import yt_dlp

    opts = {
        "outtmpl": {"default": str(folder / "source.%(ext)s")},
        "paths": {"home": str(folder), "temp": str(folder)},
        "format": _format(s.keep_audio, s.max_short_side),
        "merge_output_format": "mkv",  # holds any codec pair; we re-encode anyway
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(),
        "socket_timeout": s.timeout,
        "retries": s.retries,
        "fragment_retries": s.retries,
        "ffmpeg_location": s.ffmpeg,
        "overwrites": True,
        "continuedl": False,
        "writethumbnail": False,
        "writesubtitles": False,
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    if s.sleep > 0:
        opts["sleep_interval_requests"] = s.sleep
        opts["sleep_interval"] = s.sleep
    if s.cookies:
        opts["cookiefile"] = s.cookies
    if s.browser:
        opts["cookiesfrombrowser"] = s.browser
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            raw = ydl.extract_info(url, download=False, process=False)
            if raw and raw.get("_type") in ("playlist", "multi_video"):
                raise T12kError(f"{url} is a playlist, not one video; give the URL of a single video")
            info = ydl.process_ie_result(raw, download=True)
    except T12kError:
        raise
    except Exception as exc:
        if isinstance(exc, yt_dlp.utils.YoutubeDLError) or isinstance(exc, OSError):
            if _is_transient(exc):
                raise _Transient(_reason(exc)) from exc
            raise T12kError(f"download failed: {_reason(exc)}") from exc
        raise
    paths = [Path(d["filepath"]) for d in (info or {}).get("requested_downloads") or [] if d.get("filepath")]
    paths = [p for p in paths if p.is_file()]
    if not paths:  # fall back to whatever landed in the folder
        paths = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl"))),
                       key=lambda p: p.stat().st_size, reverse=True)
    if not paths:
        raise T12kError(f"yt-dlp reported no file for {url}; check the URL")
    return paths[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_one(item: FetchItem, out: Path, s: _Settings) -> dict:
    """Download and normalize one item into out/{id}.mp4; the manifest fields, or T12kError."""
    t0 = time.perf_counter()
    folder = out / f"{media.TMP_MARK}-{item.id}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        attempt = 0
        while True:
            try:
                src = _download(item.url, folder, s)
                break
            except _Transient as exc:
                if attempt >= s.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise T12kError(f"download failed{tries}: {exc}") from None
                time.sleep(_BACKOFF * (2 ** attempt) * (0.75 + 0.5 * random.random()))
                attempt += 1
                for p in folder.iterdir():  # start the next attempt clean
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        try:
            src_info = media._probe(src)
        except media._Unreadable as exc:
            raise T12kError(f"the download is not a readable video ({exc}); check that {item.url} points to a video") from None
        dst = out / f"{item.id}.mp4"
        info = media.normalize(src, dst, fps=s.fps, max_short_side=s.max_short_side,
                               keep_audio=s.keep_audio, threads=s.threads, src_info=src_info)
        return {"url": item.url, "src_width": src_info.width, "src_height": src_info.height,
                "src_fps": f"{src_info.fps:.3f}", "src_codec": src_info.codec,
                "duration": f"{info.duration:.3f}", "frames": info.num_frames,
                "bytes": dst.stat().st_size, "sha256": _sha256(dst),
                "seconds": f"{time.perf_counter() - t0:.2f}"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _attempt(item: FetchItem, out: Path, s: _Settings) -> tuple[dict, str | None]:
    """(manifest fields, None) for a fetched item, (some fields, one-line reason) for a failed one."""
    t0 = time.perf_counter()
    try:
        return _fetch_one(item, out, s), None
    except T12kError as exc:
        reason = str(exc)
    except Exception as exc:  # an unexpected per-item failure (a yt-dlp bug, say): record it, go on
        reason = f"unexpected {type(exc).__name__}: {_reason(exc)}"
    reason = " ".join(reason.split())[:_MAX_REASON]
    return {"url": item.url, "seconds": f"{time.perf_counter() - t0:.2f}"}, reason


# ---- the collection -------------------------------------------------------------------------

@contextmanager
def _folder_lock(out: Path):
    """One fetch at a time per output folder (POSIX advisory lock; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    fh = open(out / _LOCK_NAME, "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise T12kError(f"another t12k fetch is writing to {out}; wait for it to finish "
                            f"or choose another output folder") from None
        yield
    finally:
        fh.close()


def _clean_leftovers(out: Path) -> int:
    n = 0
    for p in out.iterdir():
        if p.name.startswith(".") and media.TMP_MARK in p.name:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n


def _existing(item: FetchItem, dst: Path, manifest: Manifest) -> dict | None:
    """Manifest fields of an id whose video is already there and readable, else None."""
    if not dst.is_file():
        return None
    row = manifest.rows.get(item.id) or {}
    if row and row.get("url") and row.get("url") != item.url:
        return None  # the list now names another source for this id: fetch it again
    size = dst.stat().st_size
    trusted = row.get("status") in ("ok", "skipped") and row.get("bytes") == str(size) and row.get("sha256")
    try:
        info = media.probe(dst, verify=not trusted)
    except T12kError:
        return None
    return {"url": item.url, **{k: row.get(k, "") for k in ("src_width", "src_height", "src_fps", "src_codec")},
            "duration": f"{info.duration:.3f}", "frames": info.num_frames, "bytes": size,
            "sha256": row["sha256"] if trusted else _sha256(dst), "seconds": "0.00"}


def fetch_collection(items: Iterable[FetchItem], out_dir: str | os.PathLike, *, workers: int = 2, fps: int = 24,
                     max_short_side: int = 360, keep_audio: bool = False, retries: int = 2, timeout: float = 30,
                     sleep: float = 0.0, cookies: str | os.PathLike | None = None,
                     cookies_from_browser: str | None = None, overwrite: bool = False,
                     progress: bool = True) -> FetchSummary:
    """Download and normalize every item into `out_dir/{id}.mp4`; one manifest row per id.

    Ids whose video is already there and readable are skipped unless `overwrite`. A failed
    item is recorded with its reason and the others go on. Transient network errors are
    retried `retries` times with exponential backoff; HTTP 4xx errors are not.
    """
    items = list(items)
    seen: dict[str, str] = {}
    for it in items:
        check_id(it.id)
        if it.id in seen:
            raise T12kError(f"id {it.id!r} is given twice ({seen[it.id]} and {it.url}); give every trailer its own id")
        seen[it.id] = it.url
    if workers < 1:
        raise T12kError(f"workers must be at least 1, not {workers}")
    if retries < 0:
        raise T12kError(f"retries must be 0 or more, not {retries}")
    if timeout <= 0:
        raise T12kError(f"timeout must be positive, not {timeout}")
    if cookies is not None and not Path(cookies).is_file():
        raise T12kError(f"cookies file {cookies} not found; export it from your browser (Netscape format) or fix the path")
    settings = _Settings(fps=fps, max_short_side=max_short_side, keep_audio=keep_audio, retries=retries,
                         timeout=float(timeout), sleep=float(sleep), cookies=str(cookies) if cookies else None,
                         browser=_browser_spec(cookies_from_browser) if cookies_from_browser else None,
                         ffmpeg=media.ffmpeg_exe(), threads=None)
    media.target_size(16, 16, max_short_side)  # validates max_short_side early
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = FetchSummary(out)
    t0 = time.perf_counter()
    from tqdm import tqdm

    with _folder_lock(out):
        _clean_leftovers(out)
        manifest = Manifest(out / "manifest.csv", MANIFEST_FIELDS)
        bar = tqdm(total=len(items), desc="fetch", unit="trailer", disable=not progress, leave=False)
        todo: list[FetchItem] = []
        for it in items:
            fields = None if overwrite else _existing(it, out / f"{it.id}.mp4", manifest)
            if fields is None:
                todo.append(it)
                continue
            manifest.record(it.id, "skipped", "already fetched", **fields)
            summary.skipped.append(it.id)
            bar.update(1)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="t12k-fetch")
        pending: dict[Future, FetchItem] = {}
        try:
            queue = iter(todo)
            # Submit lazily (at most 2 per worker in flight) so an interrupt leaves little queued.
            for it in queue:
                pending[pool.submit(_attempt, it, out, settings)] = it
                if len(pending) >= 2 * workers:
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    it = pending.pop(fut)
                    fields, reason = fut.result()
                    if reason is None:
                        manifest.record(it.id, "ok", **fields)
                        summary.done.append(it.id)
                        summary.bytes += int(fields["bytes"])
                    else:
                        manifest.record(it.id, "failed", reason, **fields)
                        summary.failed[it.id] = reason
                        bar.set_postfix(failed=len(summary.failed))
                    bar.update(1)
                for it in queue:
                    pending[pool.submit(_attempt, it, out, settings)] = it
                    if len(pending) >= 2 * workers:
                        break
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        finally:
            pool.shutdown(wait=True)
            bar.close()
            manifest.compact()
    summary.seconds = time.perf_counter() - t0
    return summary
