"""Fetching a collection: read a list of (id, URL), download each with yt-dlp, normalize it.

`read_items` reads the Trailers12k `metadata.json`, CSV/TSV, JSON, JSONL or a text file of
URLs and refuses malformed rows, unsafe ids and duplicate ids with the file and line;
`select_labelled` keeps the ids of an `mtgc.csv` (in its order) from such a list.

`fetch_collection` turns the items into `OUT/{id}.mp4` (H.264, constant 24 fps) and one row
per id in `OUT/manifest.csv`:

- downloads run in a thread pool (`workers` at once), paced politely: at least `sleep`
  seconds between the starts of two downloads (all workers together) and yt-dlp's pause
  between the requests of one extraction; transient network errors are retried with
  exponential backoff, permanent ones (removed, private, geo-blocked, age-restricted, 404,
  ...) are recorded at once with their reason; repeated "confirm you are not a bot" answers
  stop the run before the site bans the address;
- normalization (probe, ffmpeg, check, checksum) runs in worker processes, so several
  trailers re-encode at once on all cores while the next ones download;
- files appear whole or not at all: downloads and re-encodes go to temporary names in OUT
  (marked `.t12k-tmp`) and are renamed when complete; a killed run's leftovers are removed
  when the next run starts (one run per folder at a time, enforced with a lock file), and a
  re-run skips ids whose video is there and passes its check;
- Ctrl-C stops downloads and ffmpeg, removes the temporary files and keeps the manifest
  consistent; the paper's quality rules (60 to 210 s, at least 480p) are reported per
  trailer and, with `enforce_quality`, keep failing trailers out of OUT.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from t12k.errors import Cancelled, T12kError
from t12k.pipeline import media
from t12k.storage.checksum import file_digest

MANIFEST_FIELDS = (
    "url",
    "error",
    "src_width",
    "src_height",
    "src_fps",
    "src_codec",
    "src_duration",
    "quality",
    "duration",
    "frames",
    "bytes",
    "sha256",
    "attempts",
    "seconds",
)
_LOCK_NAME = ".t12k-fetch.lock"
_BACKOFF = 2.0  # seconds before the first retry; doubled for each further one (tests shrink it)
_MAX_REASON = 300
# Politeness towards remote sites (loopback hosts get no pause unless one is asked for).
DEFAULT_SLEEP = 5.0  # seconds between the starts of two downloads, all workers together
DEFAULT_SLEEP_REQUESTS = 1.0  # seconds between the requests yt-dlp makes to extract one video
_BLOCK_LIMIT = 3  # consecutive "confirm you are not a bot" / rate-limit answers that stop the run
# The paper's quality rules (Trailers12k, section 3): 60 to 210 s, at least 480p.
QUALITY_SECONDS = (60.0, 210.0)
QUALITY_MIN_LINES = 480
_TAG = "t12k-source "  # prefix of the container comment in which a normalized video keeps its source facts


@dataclass
class FetchItem:
    """One trailer to fetch: a safe id (the file is OUT/{id}.mp4) and its URL. An empty URL
    (an id of a label file with no URL in the list) is recorded as failed, not fetched."""

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


def youtube_url(video_id: str) -> str:
    """The watch URL of a YouTube video id."""
    return f"https://www.youtube.com/watch?v={video_id}"


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

# Fields tried when the default ones ('id', 'url') are absent: mtgc.csv names its ids 'mid';
# URL tables often hold bare YouTube ids.
_ID_FALLBACKS = ("mid",)
_URL_FALLBACKS = ("youtube_id", "youtube", "yt_id", "ytid", "youtube_url", "trailer_url")
_YT_FIELD = re.compile(r"(^|[^a-z])(youtube|yt)", re.I)
_IMDB_ID = re.compile(r"^(?:tt)?0*(\d+)$", re.I)


def _imdb_mid(value) -> str | None:
    """'tt0347149' for an IMDb id given as 'tt0347149', '0347149' or 347149; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    m = _IMDB_ID.match(str(value).strip())
    return f"tt{int(m.group(1)):07d}" if m else None


def _check_url(url, where: str, field_name: str | None = None) -> str:
    if url is None or (isinstance(url, str) and not url.strip()):
        raise T12kError(f"{where}: the URL is empty; give every row a URL or remove the row")
    if not isinstance(url, str):
        raise T12kError(f"{where}: the URL {url!r} is not a string; fix the row")
    url = url.strip()
    if _URL_RE.match(url):
        return url
    if field_name is not None and _YT_FIELD.search(field_name) and _YT_ID.match(url):
        return youtube_url(url)  # a bare YouTube id in a YouTube field
    hint = " (a bare YouTube id belongs in a field named like youtube_id)" if _YT_ID.match(url) else ""
    raise T12kError(f"{where}: {url[:80]!r} is not a URL (expected http(s)://...){hint}; fix the row")


def _check_id(mid: str) -> str:
    from t12k.storage import check_id  # imported lazily: normalizing processes start without zarr

    return check_id(mid)


def _item(raw_id, url, where: str, url_field: str | None = None) -> FetchItem:
    url = _check_url(url, where, url_field)
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        mid = id_from_url(url)
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        mid = str(raw_id).strip()
    else:
        raise T12kError(f"{where}: the id {raw_id!r} is not a string or integer; fix the row")
    try:
        _check_id(mid)
    except T12kError as exc:
        raise T12kError(f"{where}: {exc}") from None
    return FetchItem(mid, url)


def _rows_csv(text: str, path: Path, id_field: str, url_field: str):
    first = text.split("\n", 1)[0]
    tabs = path.suffix.lower() == ".tsv" or ("\t" in first and "," not in first)
    delimiter = "\t" if tabs else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    def next_row():
        start = reader.line_num + 1
        try:
            return start, next(reader)
        except StopIteration:
            return start, None
        except csv.Error as exc:
            raise T12kError(f"{path}:{start}: malformed CSV ({exc}); fix the quoting of that row") from None

    _, header = next_row()
    if header is None:
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    if url_field not in header and url_field == "url":
        url_field = next((h for h in header if h.lower() in _URL_FALLBACKS), url_field)
    if url_field not in header:
        if "mid" in header and "split0" in header:
            raise T12kError(
                f"{path} looks like an mtgc.csv (labels and splits, no URLs); give the URL table or "
                f"metadata.json as the list and this file with --labels"
            )
        raise T12kError(
            f"{path}:1: no {url_field!r} column in the header ({', '.join(header)}); "
            f"name the URL column {url_field!r} or pass --url-field"
        )
    if id_field not in header and id_field == "id":
        id_field = next((h for h in header if h in _ID_FALLBACKS), id_field)
    ui = header.index(url_field)
    ii = header.index(id_field) if id_field in header else None
    while True:
        line, row = next_row()
        if row is None:
            return
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise T12kError(
                f"{path}:{line}: the row has {len(row)} fields, the header {len(header)}; "
                f"fix the row (quote fields that contain '{delimiter}')"
            )
        yield line, _item(row[ii] if ii is not None else None, row[ui], f"{path}:{line}", url_field)


def _get(obj, name: str):
    """(value, True) for a field of a JSON object, dotted paths allowed ('imdb.id',
    'youtube.trailers.0.id'); (None, False) when absent."""
    if isinstance(obj, dict) and name in obj:
        return obj[name], True
    cur = obj
    for part in name.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and re.fullmatch(r"-?\d+", part) and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None, False
    return cur, True


def _metadata_video(entry: dict):
    """The YouTube video of a Trailers12k metadata entry: youtube.trailers[0] (its 'id', or
    'url'), else youtube.id / youtube (a string)."""
    yt = entry.get("youtube")
    if isinstance(yt, str):
        return yt
    if not isinstance(yt, dict):
        return None
    trailers = yt.get("trailers")
    if isinstance(trailers, list) and trailers:
        first = trailers[0]
        if isinstance(first, dict):
            return first.get("id") or first.get("url") or first.get("key")
        return first
    return yt.get("id") or yt.get("url")


def _obj_item(obj, where: str, id_field: str, url_field: str, key: str | None = None) -> FetchItem:
    """The item of a JSON object: a record with id and URL fields, or a Trailers12k metadata
    entry (imdb.id and youtube.trailers[0].id)."""
    if not isinstance(obj, dict):
        raise T12kError(
            f"{where}: expected an object with {id_field!r} and {url_field!r}, got {type(obj).__name__}; fix the entry"
        )
    url, found = _get(obj, url_field)
    used = url_field
    if not found and url_field == "url":
        if "youtube" in obj and not isinstance(obj["youtube"], str):
            url, found, used = _metadata_video(obj), True, "youtube"
            if url is None:
                raise T12kError(
                    f"{where}: the entry has no YouTube trailer (youtube.trailers[0].id); add one or remove the entry"
                )
        else:
            used = next((f for f in _URL_FALLBACKS if f in obj), url_field)
            url, found = _get(obj, used)
    if not found:
        raise T12kError(
            f"{where}: the object has no {url_field!r} field (has {', '.join(map(str, obj)) or 'none'}); "
            f"add it or pass --url-field"
        )
    raw_id, found = _get(obj, id_field)
    if not found and id_field == "id":
        if "mid" in obj:
            raw_id = obj["mid"]
        elif isinstance(obj.get("imdb"), dict) and obj["imdb"].get("id") not in (None, ""):
            raw_id = _imdb_mid(obj["imdb"]["id"]) or obj["imdb"]["id"]
        elif key is not None:
            raw_id = _imdb_mid(key) if str(key).lower().startswith("tt") else key
    return _item(raw_id, url, where, used)


class _Lines:
    """Line numbers of increasing positions in a text, counted incrementally."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def __call__(self, pos: int) -> int:
        if pos < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


_WS = re.compile(r"\s*")


def _json_members(text: str, pos: int, path: Path, lines: _Lines) -> tuple[list[tuple[int, str | None, int, int]], int]:
    """(line, key, start, end) of each element of the JSON array or object opening at
    text[pos], so every record keeps its line number (the key is None in arrays), and the
    position after its closing bracket."""
    dec = json.JSONDecoder()
    opener = text[pos]
    closer = "]" if opener == "[" else "}"
    out: list[tuple[int, str | None, int, int]] = []
    pos = _WS.match(text, pos + 1).end()
    if pos < len(text) and text[pos] == closer:
        return out, pos + 1
    while True:
        key = None
        try:
            if opener == "{":
                key, pos = dec.raw_decode(text, pos)
                if not isinstance(key, str):
                    raise json.JSONDecodeError("expected a string key", text, pos)
                pos = _WS.match(text, pos).end()
                if pos >= len(text) or text[pos] != ":":
                    raise json.JSONDecodeError("expected ':'", text, pos)
                pos = _WS.match(text, pos + 1).end()
            start = pos
            _, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise T12kError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); fix the file") from None
        out.append((lines(start), key, start, pos))
        pos = _WS.match(text, pos).end()
        if pos < len(text) and text[pos] == ",":
            pos = _WS.match(text, pos + 1).end()
            continue
        if pos < len(text) and text[pos] == closer:
            return out, pos + 1
        raise T12kError(f"{path}:{lines(pos)}: invalid JSON (expected ',' or '{closer}'); fix the file")


def _rows_json(text: str, path: Path, id_field: str, url_field: str):
    """A JSON list of records, or the Trailers12k metadata.json ({"trailers12k": {key: entry}}
    or {key: entry}); each record keeps its line number."""
    lines = _Lines(text)
    pos = _WS.match(text, 0).end()
    if pos >= len(text) or text[pos] not in "[{":
        raise T12kError(
            f"{path}:{lines(pos)}: expected a JSON list of objects ([{{...}}, ...]) or the "
            f"Trailers12k metadata.json; fix the file"
        )
    top, end = _json_members(text, pos, path, lines)
    if text[end:].strip():
        raise T12kError(
            f"{path}:{lines(_WS.match(text, end).end())}: extra data after the JSON "
            f"{'list' if text[pos] == '[' else 'object'}; fix the file"
        )
    if text[pos] == "{":
        wrapped = [m for m in top if m[1] == "trailers12k"]
        if wrapped:
            _, _, start, _ = wrapped[0]
            if text[start] not in "[{":
                raise T12kError(
                    f"{path}:{lines(start)}: 'trailers12k' holds no entries; give the Trailers12k metadata.json"
                )
            top, _ = _json_members(text, start, path, lines)
        else:
            first = json.loads(text[top[0][2] : top[0][3]]) if top else None
            if not isinstance(first, dict) or not ({"youtube", "imdb", url_field} & set(first)):
                raise T12kError(
                    f"{path}:{lines(pos)}: expected a JSON list of objects ([{{...}}, ...]) or the "
                    f"Trailers12k metadata.json; fix the file"
                )
    for line, key, start, stop in top:
        obj = json.loads(text[start:stop])
        yield line, _obj_item(obj, f"{path}:{line}", id_field, url_field, key)


def _rows_jsonl(text: str, path: Path, id_field: str, url_field: str):
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise T12kError(f"{path}:{line}: invalid JSON ({exc.msg}); fix the line") from None
        yield line, _obj_item(obj, f"{path}:{line}", id_field, url_field)


def _rows_text(text: str, path: Path):
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
        first = head.splitlines()[0].strip()
        try:
            json.loads(first)
            return "jsonl"
        except json.JSONDecodeError:
            return "json"  # an object over several lines: metadata.json
    first = head.splitlines()[0] if head else ""
    return "text" if _URL_RE.match(first.strip()) or not first else "csv"


def read_items(path: str | os.PathLike, id_field: str = "id", url_field: str = "url") -> list[FetchItem]:
    """The (id, URL) items of a list file.

    - the Trailers12k `metadata.json` (`{"trailers12k": {KEY: ENTRY}}`, or the entries
      alone): the id is `ENTRY.imdb.id` as an IMDb id ('tt' and at least 7 digits, as the
      mids of mtgc.csv and the published stores; KEY when there is no imdb.id) and the URL
      is that of the YouTube video `ENTRY.youtube.trailers[0].id`;
    - CSV/TSV with a header; JSON lists and JSONL of objects: `id_field` and `url_field`
      (dotted paths like `imdb.id` reach into JSON objects). Without an `id` field, `mid` is
      used, else the id comes from the URL; without a `url` field, a YouTube field
      (`youtube_id`, `youtube`, `yt_id`, ...) may hold bare YouTube ids;
    - a text file with one URL a line ('#' comments allowed; ids from the URLs).

    Malformed rows, unsafe ids and duplicate ids raise T12kError naming the file and line(s).
    """
    p = Path(path)
    if not p.is_file():
        raise T12kError(f"list file {p} not found; check the path")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise T12kError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    if "\x00" in text:
        raise T12kError(
            f"{p}:{text.count(chr(10), 0, text.index(chr(0))) + 1}: the file contains NUL bytes; "
            f"give a text list (CSV, JSON, JSONL or URLs)"
        )
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
            raise T12kError(
                f"{p}: id {item.id!r} appears on lines {seen[item.id]} and {line}; "
                f"give every trailer its own id (or drop the duplicate)"
            )
        seen[item.id] = line
        items.append(item)
    return items


def _match_key(mid: str) -> str:
    return _imdb_mid(mid) or mid


def select_labelled(items: Iterable[FetchItem], labels: str | os.PathLike) -> list[FetchItem]:
    """The items of the ids of an mtgc.csv, in its order, under its ids (IMDb ids match
    with or without 'tt' and leading zeros). An id the list has no URL for comes back with
    an empty URL, so the fetch records it as failed and goes on."""
    from t12k.storage import read_mtgc

    by_key = {_match_key(it.id): it for it in items}
    out = []
    for mid in read_mtgc(labels).ids:
        try:
            _check_id(mid)
        except T12kError as exc:
            raise T12kError(f"{labels}: {exc}") from None
        it = by_key.get(_match_key(mid))
        out.append(FetchItem(mid, it.url if it else ""))
    return out


# ---- quality rules --------------------------------------------------------------------------


def resolution_lines(width: float, height: float, sar: float = 1.0) -> int:
    """The 'p' of a video as sites name it: the short side, or 9/16 of the long side for
    frames wider than 16:9 (a 1920x800 scope trailer is 1080p, 640x480 is 480p)."""
    w = width * (sar if sar and sar > 0 else 1.0)
    short, long_ = sorted((w, float(height)))
    return int(round(max(short, long_ * 9 / 16)))


def quality_report(
    duration: float | None,
    width: float | None,
    height: float | None,
    sar: float = 1.0,
    *,
    seconds: tuple[float, float] = QUALITY_SECONDS,
    min_lines: int = QUALITY_MIN_LINES,
) -> str:
    """'ok', or what breaks the paper's rules (duration 60 to 210 s, at least 480p), '; '-joined.
    Unknown facts (None) are not held against the trailer."""
    problems = []
    lo, hi = seconds
    if duration is not None and duration < lo:
        problems.append(f"shorter than {lo:g} s ({duration:.1f} s)")
    elif duration is not None and duration > hi:
        problems.append(f"longer than {hi:g} s ({duration:.1f} s)")
    if width and height:
        p = resolution_lines(width, height, sar)
        if p < min_lines:
            problems.append(f"below {min_lines}p ({p}p)")
    return "; ".join(problems) or "ok"


# ---- the summary ----------------------------------------------------------------------------


@dataclass
class FetchSummary:
    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # kept out by enforce_quality
    quality: dict[str, str] = field(default_factory=dict)  # fetched, but breaking the quality rules
    stopped: str | None = None  # why the run stopped before the end
    not_attempted: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stopped

    @property
    def counts(self) -> dict[str, int]:
        c = {"ok": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed)}
        if self.rejected:
            c["rejected"] = len(self.rejected)
        return c

    def text(self) -> str:
        total = len(self.done) + len(self.skipped) + len(self.failed) + len(self.rejected) + self.not_attempted
        s = (
            f"fetch: {total} trailers, {len(self.done)} downloaded and normalized "
            f"({self.bytes / 1e6:.1f} MB), {len(self.skipped)} already there, {len(self.failed)} failed"
        )
        if self.rejected:
            s += f", {len(self.rejected)} kept out by the quality rules"
        s += f" in {self.seconds:.1f} s; videos in {self.out_dir}, one row per id in {self.out_dir / 'manifest.csv'}."
        if self.quality:
            lo, hi = QUALITY_SECONDS
            s += (
                f" {len(self.quality)} do not meet the paper's quality rules ({lo:g}-{hi:g} s, at least "
                f"{QUALITY_MIN_LINES}p; see the quality column, --enforce-quality keeps such trailers out)."
            )
        if self.stopped:
            s += f" Stopped early, {self.not_attempted} not attempted: {self.stopped}."
        if self.failed:
            shown = list(self.failed.items())[:5]
            s += " Failed: " + "; ".join(f"{k}: {v}" for k, v in shown)
            s += f" (and {len(self.failed) - 5} more, see the manifest)." if len(self.failed) > 5 else "."
        return s


# ---- classifying download errors --------------------------------------------------------------


class _Transient(Exception):
    """A download error worth retrying (connection trouble, timeouts, HTTP 5xx/408/429)."""


class _Permanent(Exception):
    """A download error not worth retrying; `kind` names it for the manifest's error column."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


class _Cancelled(Exception):
    """The run is stopping (Ctrl-C): not a failure of the trailer."""


class _QuietLogger:
    """Swallows yt-dlp's messages; errors reach us as exceptions."""

    def debug(self, msg):
        pass

    info = warning = error = debug


_TRANSIENT_TEXT = re.compile(
    r"HTTP Error (5\d\d|408|429)|timed out|Connection (reset|aborted|refused)|"
    r"Remote end closed|IncompleteRead|Temporary failure in name resolution|"
    r"giving up after \d+ retries|ContentTooShort|did not match the expected",
    re.I,
)
# A name that does not resolve will not resolve a minute later either.
_UNKNOWN_HOST = re.compile(
    r"Name or service not known|nodename nor servname|No address associated|getaddrinfo failed", re.I
)
_PERMANENT_HTTP = re.compile(r"HTTP Error (4(0[0-7]|09|1\d|2[0-8]|[3-9]\d))\b")

# What sites (YouTube above all) answer for videos that cannot be had, in the order tried:
# (kind, pattern of yt-dlp's message, what the user can do).
_PERMANENT_TEXT: tuple[tuple[str, re.Pattern, str], ...] = (
    (
        "bot-check",
        re.compile(
            r"confirm you.{0,3}re not a bot|captcha|content isn.?t available, try again later|"
            r"rate-limited by YouTube",
            re.I,
        ),
        "the site asks to confirm you are not a bot; pass --cookies or --cookies-from-browser, or raise --sleep",
    ),
    (
        "age-restricted",
        re.compile(
            r"confirm your age|age[- ]restricted|inappropriate for some users|"
            r"age[- ]verification|age[- ]gate",
            re.I,
        ),
        "age-restricted video; pass the cookies of a signed-in adult account (--cookies or --cookies-from-browser)",
    ),
    (
        "private",
        re.compile(r"private video|video is private", re.I),
        "private video; find another trailer of this title or drop the id",
    ),
    (
        "members-only",
        re.compile(r"members[- ]only|channel's members|join this channel", re.I),
        "members-only video; find another trailer of this title or drop the id",
    ),
    (
        "geo-blocked",
        re.compile(
            r"not available (?:from|in) your (?:location|country)|geo[- ]?restrict|"
            r"available in your country|is available in .{1,200} only|blocked it in your country",
            re.I,
        ),
        "not available in this country; find another trailer of this title or drop the id",
    ),
    (
        "copyright",
        re.compile(r"copyright", re.I),
        "blocked on copyright grounds; find another trailer of this title or drop the id",
    ),
    (
        "removed",
        re.compile(
            r"removed by the uploader|has been removed|account associated with this video has been "
            r"terminated|no longer available|video unavailable|video is unavailable|"
            r"video does not exist|video not found",
            re.I,
        ),
        "video removed or unavailable; find another trailer of this title or drop the id",
    ),
    (
        "paid",
        re.compile(r"requires payment|rent this video|purchase", re.I),
        "paid video; find another trailer of this title or drop the id",
    ),
    (
        "drm",
        re.compile(r"DRM protected", re.I),
        "DRM-protected video; find another trailer of this title or drop the id",
    ),
    (
        "not-yet-live",
        re.compile(r"live event will begin|premieres in|is upcoming", re.I),
        "the video is not out yet; fetch it again later",
    ),
    (
        "empty",
        re.compile(r"did not get any data blocks|downloaded file is empty", re.I),
        "the server sent an empty file (0 bytes); check the URL",
    ),
)


def _chain(exc: BaseException):
    """An exception and its causes (yt-dlp wraps them in .exc_info and .cause)."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        info = getattr(e, "exc_info", None)
        todo += [getattr(e, "cause", None), e.__cause__, info[1] if isinstance(info, tuple) and len(info) > 1 else None]


def _is_transient(exc: BaseException) -> bool:
    from yt_dlp.networking.exceptions import HTTPError, SSLError, TransportError

    msg = str(exc)
    if _UNKNOWN_HOST.search(msg) or any(p.search(msg) for _, p, _ in _PERMANENT_TEXT):
        return False
    for e in _chain(exc):
        if isinstance(e, HTTPError):
            return e.status >= 500 or e.status in (408, 429)
        if isinstance(e, SSLError):
            return False
        if isinstance(e, (TransportError, TimeoutError, ConnectionError)):
            return True
    return bool(_TRANSIENT_TEXT.search(msg)) and not _PERMANENT_HTTP.search(msg)


def _http_status(exc: BaseException) -> int | None:
    from yt_dlp.networking.exceptions import HTTPError

    for e in _chain(exc):
        if isinstance(e, HTTPError):
            return e.status
    m = re.search(r"HTTP Error (\d{3})", str(exc))
    return int(m.group(1)) if m else None


def _classify(exc: BaseException) -> tuple[str, str | None]:
    """(kind, what to do) of a download error; kind 'transient' is worth a retry."""
    from yt_dlp.utils import GeoRestrictedError

    msg = str(exc)
    for kind, pattern, hint in _PERMANENT_TEXT:
        if pattern.search(msg):
            return kind, hint
    if any(isinstance(e, GeoRestrictedError) for e in _chain(exc)):
        return "geo-blocked", _PERMANENT_TEXT[4][2]
    if _is_transient(exc):
        return "transient", None
    status = _http_status(exc)
    if status == 404 or status == 410:
        return "not-found", "check the URL"
    if status == 401 or status == 403:
        return "forbidden", "the server refuses it; check the URL, or pass cookies if it needs a login"
    if "Unsupported URL" in msg:
        return "unsupported", "give the URL of a video page or file"
    return "error", None


def _reason(exc: BaseException) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).replace("\r", " ")
    lines = [ln.strip() for ln in msg.split("\n") if ln.strip()]
    msg = lines[0] if lines else type(exc).__name__
    msg = re.sub(r"^ERROR:\s*", "", msg)
    msg = re.sub(r"^\[download\]\s*Got error:\s*", "", msg)
    msg = re.sub(r"\s*\(caused by .*\)\s*$", "", msg)
    msg = re.sub(r"\s*Use --cookies-from-browser or --cookies for the authentication\..*$", "", msg)
    return msg[:_MAX_REASON]


def _browser_spec(spec: str) -> tuple:
    """yt-dlp's BROWSER[+KEYRING][:PROFILE][::CONTAINER] as the tuple its API takes."""
    m = re.fullmatch(
        r"(?P<name>[^+:]+)(?:\s*\+\s*(?P<keyring>[^:]+))?(?:\s*:\s*(?!:)(?P<profile>.+?))?"
        r"(?:\s*::\s*(?P<container>.+))?",
        spec.strip(),
    )
    if not m:
        raise T12kError(
            f"cannot parse cookies-from-browser {spec!r}; use BROWSER[+KEYRING][:PROFILE][::CONTAINER], e.g. firefox"
        )
    from yt_dlp.cookies import SUPPORTED_BROWSERS

    name = m.group("name").lower().strip()
    if name not in SUPPORTED_BROWSERS:
        raise T12kError(f"unsupported browser {name!r} for cookies; use one of {', '.join(sorted(SUPPORTED_BROWSERS))}")
    keyring = m.group("keyring")
    return (name, m.group("profile"), keyring.upper() if keyring else None, m.group("container"))


# ---- downloading (threads of the main process) -----------------------------------------------


@dataclass
class _Settings:
    fps: int
    max_short_side: int
    keep_audio: bool
    retries: int
    timeout: float
    sleep: float | None  # None: DEFAULT_SLEEP for remote hosts, 0 for loopback ones
    sleep_requests: float | None  # None: DEFAULT_SLEEP_REQUESTS for remote hosts, 0 for loopback ones
    cookies: str | None
    browser: tuple | None
    ffmpeg: str
    threads: int | None
    enforce_quality: bool = False
    quality_seconds: tuple[float, float] = QUALITY_SECONDS
    quality_min_lines: int = QUALITY_MIN_LINES


def _is_loopback(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pauses(url: str, s: _Settings) -> tuple[float, float]:
    """(pause between download starts, pause between extraction requests) for `url`."""
    local = _is_loopback(url)
    sleep = s.sleep if s.sleep is not None else (0.0 if local else DEFAULT_SLEEP)
    requests = s.sleep_requests if s.sleep_requests is not None else (0.0 if local else DEFAULT_SLEEP_REQUESTS)
    return sleep, requests


class _Pacer:
    """At least `interval` seconds between the starts of two downloads, whatever thread asks."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next = 0.0
        self.turns: list[float] = []  # the monotonic times granted, in order

    def wait(self, interval: float, stop: threading.Event) -> bool:
        """Wait for this download's turn; False if the run is stopping."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + max(0.0, interval)
            self.turns.append(start)
        return not (start > now and stop.wait(start - now))


def _format(keep_audio: bool, max_short_side: int) -> str:
    cap = max(720, max_short_side)  # enough pixels for the short side we keep, no more
    if keep_audio:
        return (
            f"bv*[vcodec^=avc1][height<={cap}]+ba/b[vcodec^=avc1][height<={cap}]/"
            f"bv*[height<={cap}]+ba/b[height<={cap}]/bv*+ba/b"
        )
    # No audio wanted: take the video alone (nothing to merge, less to download).
    return f"bv*[vcodec^=avc1][height<={cap}]/bv*[height<={cap}]/bv*/b"


def _precheck(raw: dict, s: _Settings) -> str:
    """The quality report of what yt-dlp tells before downloading (duration, best frame
    size); 'ok' when it tells nothing."""
    duration = raw.get("duration")
    sizes = [(f.get("width"), f.get("height")) for f in raw.get("formats") or [] if f.get("height")]
    if not sizes and raw.get("height"):
        sizes = [(raw.get("width"), raw.get("height"))]
    width, height = None, None
    if sizes:
        width, height = max(sizes, key=lambda wh: resolution_lines(wh[0] or wh[1] * 16 / 9, wh[1]))
        width = width or height * 16 / 9
    return quality_report(
        float(duration) if isinstance(duration, (int, float)) and duration > 0 else None,
        width,
        height,
        seconds=s.quality_seconds,
        min_lines=s.quality_min_lines,
    )


def _download(url: str, folder: Path, s: _Settings, stop: threading.Event, turn=None) -> Path:
    """Download `url` into `folder` with yt-dlp; the path of the media file. `turn()`, called
    just before the first request, waits for this download's turn (False: stop)."""
    import yt_dlp

    def hook(_status):
        if stop.is_set():
            raise _Cancelled()

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
        "extractor_retries": 0,  # ours, with backoff and the pacer, replace them
        "ffmpeg_location": s.ffmpeg,
        "overwrites": True,
        "continuedl": False,
        "writethumbnail": False,
        "writesubtitles": False,
        "progress_hooks": [hook],
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    _, requests = _pauses(url, s)
    if requests > 0:
        opts["sleep_interval_requests"] = requests
    if s.cookies:
        opts["cookiefile"] = s.cookies
    if s.browser:
        opts["cookiesfrombrowser"] = s.browser
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            if turn is not None and not turn():
                raise _Cancelled()
            raw = ydl.extract_info(url, download=False, process=False)
            if raw and raw.get("_type") in ("playlist", "multi_video"):
                raise _Permanent("playlist", f"{url} is a playlist, not one video; give the URL of a single video")
            if s.enforce_quality and raw:
                report = _precheck(raw, s)
                if report != "ok":
                    raise _Permanent("quality", report)
            if stop.is_set():
                raise _Cancelled()
            info = ydl.process_ie_result(raw, download=True)
    except (_Permanent, _Cancelled):
        raise
    except Exception as exc:
        if stop.is_set() or any(isinstance(e, _Cancelled) for e in _chain(exc)):
            raise _Cancelled() from None
        if isinstance(exc, (yt_dlp.utils.YoutubeDLError, OSError)):
            kind, hint = _classify(exc)
            if kind == "transient":
                raise _Transient(_reason(exc)) from exc
            if kind == "error":
                raise _Permanent(kind, f"download failed: {_reason(exc)}") from exc
            status = _http_status(exc)
            what = f"HTTP {status}; " if status and kind in ("not-found", "forbidden") else ""
            raise _Permanent(kind, f"{kind} ({what}not retried): {hint} [{_reason(exc)}]") from exc
        raise
    paths = [Path(d["filepath"]) for d in (info or {}).get("requested_downloads") or [] if d.get("filepath")]
    paths = [p for p in paths if p.is_file()]
    if not paths:  # fall back to whatever landed in the folder
        paths = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl"))),
            key=lambda p: p.stat().st_size,
            reverse=True,
        )
    if not paths:
        raise _Permanent("error", f"yt-dlp reported no file for {url}; check the URL")
    return paths[0]


_WARM = False


def _warm_up_yt_dlp() -> None:
    """Compile the URL patterns of yt-dlp's extractors once per process (half a second), so
    that the first downloads do not do it all at once and the pauses between requests hold."""
    global _WARM
    if not _WARM:
        from yt_dlp.extractor import gen_extractor_classes

        for ie in gen_extractor_classes():
            ie.suitable("https://t12k.invalid/warm-up")
        _WARM = True


@dataclass
class _Downloaded:
    item: FetchItem
    folder: Path
    t0: float
    src: Path | None = None
    attempts: int = 0
    kind: str = ""  # '' when downloaded; else the error kind
    reason: str = ""


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _download_item(item: FetchItem, out: Path, s: _Settings, pacer: _Pacer, stop: threading.Event) -> _Downloaded:
    """Download one item with retries; never raises (the outcome is in the result)."""
    d = _Downloaded(item, out / f"{media.TMP_MARK}-{item.id}-{uuid.uuid4().hex[:8]}", time.perf_counter())
    interval, _ = _pauses(item.url, s)
    try:
        d.folder.mkdir()
        while True:
            d.attempts += 1
            try:
                d.src = _download(item.url, d.folder, s, stop, lambda: pacer.wait(interval, stop))
                return d
            except _Transient as exc:
                if d.attempts > s.retries:
                    tries = f" after {d.attempts} attempts" if d.attempts > 1 else ""
                    d.kind = "rate-limited" if "429" in str(exc) else "transient"
                    d.reason = f"download failed{tries}: {exc}"
                    return d
                delay = _BACKOFF * (2 ** (d.attempts - 1)) * (0.75 + 0.5 * random.random())
                if stop.wait(delay):
                    raise _Cancelled() from None
                _clear(d.folder)  # start the next attempt clean
    except _Permanent as exc:
        d.kind, d.reason = exc.kind, str(exc)
    except _Cancelled:
        d.kind = "cancelled"
    except T12kError as exc:
        d.kind, d.reason = "error", str(exc)
    except Exception as exc:  # a yt-dlp bug, say: record it, go on
        d.kind, d.reason = "error", f"unexpected {type(exc).__name__}: {_reason(exc)}"
    return d


# ---- normalizing (worker processes) ------------------------------------------------------------


def _source_fields(info: media.VideoInfo, seconds, min_lines) -> dict:
    return {
        "src_width": info.width,
        "src_height": info.height,
        "src_fps": f"{info.fps:.3f}",
        "src_codec": info.codec,
        "src_duration": f"{info.duration:.3f}",
        "quality": quality_report(
            info.duration, info.width, info.height, info.sar, seconds=tuple(seconds), min_lines=min_lines
        ),
    }


def _normalize_job(job: dict, cancel) -> dict:
    """Probe, check and normalize one download: {'status': 'ok' | 'rejected' | 'failed' |
    'cancelled', 'fields': manifest fields, 'reason': one line}."""
    src, dst, url = Path(job["src"]), Path(job["dst"]), job["url"]
    fields: dict = {}
    try:
        try:
            src_info = media.probe(src)
        except media.UnreadableVideo as exc:
            return {
                "status": "failed",
                "fields": {"error": "not-a-video"},
                "reason": f"the download is not a readable video ({exc.why}); check that {url} points to a video",
            }
        fields = _source_fields(src_info, job["quality_seconds"], job["quality_min_lines"])
        if job["enforce_quality"] and fields["quality"] != "ok":
            return {"status": "rejected", "fields": {**fields, "error": "quality"}, "reason": fields["quality"]}
        tag = json.dumps({"url": url, **fields}, separators=(",", ":"))
        info = media.normalize(
            src,
            dst,
            fps=job["fps"],
            max_short_side=job["max_short_side"],
            keep_audio=job["keep_audio"],
            threads=job["threads"],
            src_info=src_info,
            ffmpeg=job["ffmpeg"],
            metadata={"comment": _TAG + tag},
            cancel=cancel,
        )
        fields.update(
            duration=f"{info.duration:.3f}", frames=info.num_frames, bytes=dst.stat().st_size, sha256=file_digest(dst)
        )
        return {"status": "ok", "fields": fields, "reason": ""}
    except Cancelled:
        return {"status": "cancelled", "fields": fields, "reason": ""}
    except T12kError as exc:
        return {"status": "failed", "fields": {**fields, "error": "normalize"}, "reason": str(exc)}
    except Exception as exc:
        return {
            "status": "failed",
            "fields": {**fields, "error": "normalize"},
            "reason": f"unexpected {type(exc).__name__}: {_reason(exc)}",
        }


def _worker_main() -> None:
    """The loop of a normalizing process that `fetch_collection` starts: one JSON job a line
    on stdin, one JSON answer a line on stdout. The end of stdin (the run is stopping, or
    its process died, even by SIGKILL) cancels the job at hand: ffmpeg is stopped, its
    temporary file removed, and the process exits."""
    import queue
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints must not corrupt the answers
    sys.stdout = sys.stderr
    jobs: queue.Queue = queue.Queue()
    ended = threading.Event()

    def read():
        try:
            for line in sys.stdin:
                if line.strip():
                    jobs.put(json.loads(line))
        finally:
            ended.set()
            jobs.put(None)

    threading.Thread(target=read, name="t12k-jobs", daemon=True).start()
    while True:
        job = jobs.get()
        if job is None or ended.is_set():
            return
        answer = _normalize_job(job, ended.is_set)
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class _WorkerDied(Exception):
    pass


class _Worker:
    """A normalizing process (`_worker_main`) and its pipes. Its own session keeps a Ctrl-C
    in the terminal away from it and its ffmpeg: the run stops them by closing stdin."""

    def __init__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from t12k.pipeline.fetch import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            start_new_session=True,
        )
        self.lock = threading.Lock()

    def run(self, job: dict) -> dict:
        try:
            with self.lock:
                self.proc.stdin.write(json.dumps(job) + "\n")
                self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (OSError, ValueError):  # stdin closed by stop(), or the process is gone
            line = ""
        if not line:
            raise _WorkerDied(f"exit code {self.proc.poll()}")
        return json.loads(line)

    def stop(self) -> None:
        """Close stdin: the job at hand is cancelled and the process exits."""
        with self.lock:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self, timeout: float = 10.0) -> None:
        self.stop()
        try:
            self.proc.wait(timeout=timeout)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class _Workers:
    """The normalizing processes of a run, started on demand, reused, and stopped together."""

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []
        self.all: list[_Worker] = []
        self.stopping = False

    def run(self, job: dict) -> dict:
        with self.lock:
            if self.stopping:
                return {"status": "cancelled", "fields": {}, "reason": ""}
            worker = self.idle.pop() if self.idle else None
            if worker is None:
                worker = _Worker()
                self.all.append(worker)
        try:
            answer = worker.run(job)
        except _WorkerDied:
            with self.lock:
                self.all.remove(worker)
                stopping = self.stopping
            worker.close(timeout=1.0)
            if stopping:
                return {"status": "cancelled", "fields": {}, "reason": ""}
            raise
        with self.lock:
            self.idle.append(worker)
        return answer

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            workers = list(self.all)
        for w in workers:
            w.stop()

    def close(self) -> None:
        with self.lock:
            workers, self.all, self.idle = list(self.all), [], []
        for w in workers:
            w.close()


def default_normalize_workers() -> int:
    """Normalizing processes: one per two cores (each ffmpeg runs several threads), at least 2
    so one trailer's probe and checksum overlap another's encode."""
    return max(2, (os.cpu_count() or 2) // 2)


def _normalize_item(d: _Downloaded, dst: Path, s: _Settings, workers: _Workers) -> dict:
    """Normalize a download in a worker process (a thread waits for it); a worker that dies
    (killed, out of memory, a crash in a decoder) gets one more try in a new process."""
    job = {
        "src": str(d.src),
        "dst": str(dst),
        "url": d.item.url,
        "fps": s.fps,
        "max_short_side": s.max_short_side,
        "keep_audio": s.keep_audio,
        "threads": s.threads,
        "ffmpeg": s.ffmpeg,
        "enforce_quality": s.enforce_quality,
        "quality_seconds": list(s.quality_seconds),
        "quality_min_lines": s.quality_min_lines,
    }
    for attempt in range(2):
        try:
            return workers.run(job)
        except _WorkerDied as exc:
            if attempt:
                return {
                    "status": "failed",
                    "fields": {"error": "normalize"},
                    "reason": f"the normalizing process died ({exc}; killed, or out of memory?); "
                    f"run again, or check the file",
                }
    raise AssertionError("unreachable")


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
            raise T12kError(
                f"another t12k fetch is writing to {out}; wait for it to finish or choose another output folder"
            ) from None
        yield
    finally:
        fh.close()


def _clean_leftovers(out: Path) -> int:
    """Remove what killed runs left in `out` (we hold the lock: nothing else writes there)."""
    n = 0
    for p in out.iterdir():
        if (p.name.startswith(".") and media.TMP_MARK in p.name) or p.name == "manifest.csv.tmp":
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n


def _source_tags(path: Path) -> dict:
    comment = media.read_tags(path).get("comment", "")
    if not comment.startswith(_TAG):
        return {}
    try:
        tags = json.loads(comment[len(_TAG) :])
    except json.JSONDecodeError:
        return {}
    return tags if isinstance(tags, dict) else {}


_SRC_KEYS = ("src_width", "src_height", "src_fps", "src_codec", "src_duration", "quality")


def _existing(item: FetchItem, dst: Path, manifest) -> dict | None:
    """Manifest fields of an id whose video is already there, readable and from this URL;
    None when it must be fetched (again)."""
    if not dst.is_file():
        return None
    row = manifest.rows.get(item.id) or {}
    if row and row.get("url") and row.get("url") != item.url:
        return None  # the list now names another source for this id: fetch it again
    size = dst.stat().st_size
    trusted = row.get("status") in ("ok", "skipped") and row.get("bytes") == str(size) and bool(row.get("sha256"))
    try:
        info = media.probe(dst, verify=not trusted)
    except T12kError:
        return None
    src = {k: row.get(k, "") for k in _SRC_KEYS}
    if not trusted or not all(src[k] for k in ("src_width", "src_height", "src_duration")):
        tags = _source_tags(dst)  # a video renamed into place just before a kill has no row yet
        if tags.get("url") and tags["url"] != item.url:
            return None
        src = {k: src[k] or str(tags.get(k, "")) for k in _SRC_KEYS}
    return {
        "url": item.url,
        "error": "",
        **src,
        "duration": f"{info.duration:.3f}",
        "frames": info.num_frames,
        "bytes": size,
        "sha256": row["sha256"] if trusted else file_digest(dst),
        "attempts": 0,
        "seconds": "0.00",
    }


class _Run:
    """The scheduler of one fetch: downloads in a thread pool, normalizations in worker
    processes (a thread per process waits for it), bounded so that downloaded files waiting
    for a normalizer stay few."""

    def __init__(
        self,
        todo: list[FetchItem],
        out: Path,
        s: _Settings,
        workers: int,
        processes: int,
        manifest,
        summary: FetchSummary,
        bar,
    ):
        self.out, self.s = out, s
        self.workers, self.processes = workers, processes
        self.manifest, self.summary, self.bar = manifest, summary, bar
        self.stop = threading.Event()
        self.pacer = _Pacer()
        self.downloaders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="t12k-download")
        self.waiters = ThreadPoolExecutor(max_workers=processes, thread_name_prefix="t12k-normalize")
        self.procs = _Workers()
        self.downloads: dict[Future, FetchItem] = {}
        self.normalizing: dict[Future, _Downloaded] = {}
        self.queue = iter(todo)
        self.left = len(todo)
        self.blocked = 0

    def _record(self, d: _Downloaded, status: str, reason: str = "", fields: dict | None = None) -> None:
        mid = d.item.id
        fields = {
            "url": d.item.url,
            "attempts": d.attempts,
            "seconds": f"{time.perf_counter() - d.t0:.2f}",
            **(fields or {}),
        }
        if status != "ok":
            fields.setdefault("error", d.kind or "error")
        reason = " ".join(str(reason).split())[:_MAX_REASON]
        self.manifest.record(mid, status, reason, **fields)
        if status == "ok":
            self.summary.done.append(mid)
            self.summary.bytes += int(fields["bytes"])
            if fields.get("quality") not in (None, "", "ok"):
                self.summary.quality[mid] = fields["quality"]
        elif status == "rejected":
            self.summary.rejected[mid] = reason
        else:
            self.summary.failed[mid] = reason
            self.bar.set_postfix(failed=len(self.summary.failed))
        self.left -= 1
        self.bar.update(1)

    def _fill(self) -> None:
        if self.stop.is_set() or self.summary.stopped:
            return
        room = self.workers + 2 * self.processes  # downloads plus files waiting for a normalizer
        while len(self.downloads) < self.workers and len(self.downloads) + len(self.normalizing) < room:
            item = next(self.queue, None)
            if item is None:
                return
            fut = self.downloaders.submit(_download_item, item, self.out, self.s, self.pacer, self.stop)
            self.downloads[fut] = item

    def _downloaded(self, d: _Downloaded) -> None:
        if d.kind == "cancelled":
            return
        if d.kind:
            shutil.rmtree(d.folder, ignore_errors=True)
            if d.kind == "quality":
                self._record(d, "rejected", d.reason, {"quality": d.reason})
            else:
                self._record(d, "failed", d.reason)
            if d.kind in ("bot-check", "rate-limited"):
                self.blocked += 1
                if self.blocked >= _BLOCK_LIMIT:
                    self.summary.stopped = (
                        f"{self.blocked} downloads in a row met a 'confirm you are not a bot' or "
                        f"rate-limit answer; pass --cookies or --cookies-from-browser, raise "
                        f"--sleep or wait an hour, then run the same command to resume"
                    )
            return
        self.blocked = 0
        if self.stop.is_set():  # stopping: no new encodes
            shutil.rmtree(d.folder, ignore_errors=True)
            return
        fut = self.waiters.submit(_normalize_item, d, self.out / f"{d.item.id}.mp4", self.s, self.procs)
        self.normalizing[fut] = d

    def _normalized(self, d: _Downloaded, answer: dict) -> None:
        shutil.rmtree(d.folder, ignore_errors=True)
        if answer["status"] != "cancelled":
            self._record(d, answer["status"], answer["reason"], answer["fields"])

    def _step(self) -> None:
        finished, _ = wait(list(self.downloads) + list(self.normalizing), return_when=FIRST_COMPLETED)
        for fut in finished:
            if fut in self.downloads:
                self.downloads.pop(fut)
                self._downloaded(fut.result())
            else:
                self._normalized(self.normalizing.pop(fut), fut.result())

    def run(self) -> None:
        try:
            if self.left:
                _warm_up_yt_dlp()
            self._fill()
            while self.downloads or self.normalizing:
                self._step()
                self._fill()
        except BaseException:
            # Ctrl-C (or a bug): stop downloads and ffmpeg, keep what finished, then re-raise.
            self.stop.set()
            self.procs.stop()
            while self.downloads or self.normalizing:
                self._step()
            raise
        finally:
            self.stop.set()
            self.downloaders.shutdown(wait=True, cancel_futures=True)
            self.waiters.shutdown(wait=True, cancel_futures=True)
            self.procs.close()
            self.summary.not_attempted = self.left


def fetch_collection(
    items: Iterable[FetchItem],
    out_dir: str | os.PathLike,
    *,
    workers: int = 2,
    normalize_workers: int | None = None,
    fps: int = 24,
    max_short_side: int = 360,
    keep_audio: bool = False,
    retries: int = 2,
    timeout: float = 30,
    sleep: float | None = None,
    sleep_requests: float | None = None,
    cookies: str | os.PathLike | None = None,
    cookies_from_browser: str | None = None,
    enforce_quality: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> FetchSummary:
    """Download and normalize every item into `out_dir/{id}.mp4`; one manifest row per id.

    `workers` downloads run at once and `normalize_workers` processes re-encode (default
    `default_normalize_workers()`). Between the starts of two downloads there are at least
    `sleep` seconds and between the requests of one extraction `sleep_requests` seconds
    (None: DEFAULT_SLEEP and DEFAULT_SLEEP_REQUESTS, no pause for loopback hosts).
    Transient network errors are retried `retries` times with exponential backoff; permanent
    ones (HTTP 4xx, removed, private, geo-blocked, age-restricted, ...) are not. Ids whose
    video is already there and readable are skipped unless `overwrite`. Every trailer's
    quality against the paper's rules (60 to 210 s, at least 480p) is in the manifest;
    `enforce_quality` keeps the ones that break them out of `out_dir` (status 'rejected').
    A failed item is recorded with its reason and the others go on. On Ctrl-C the run stops
    downloads and ffmpeg, removes its temporary files and raises KeyboardInterrupt.
    """
    items = list(items)
    seen: dict[str, str] = {}
    for it in items:
        _check_id(it.id)
        if it.id in seen:
            raise T12kError(f"id {it.id!r} is given twice ({seen[it.id]} and {it.url}); give every trailer its own id")
        seen[it.id] = it.url
    if workers < 1:
        raise T12kError(f"workers must be at least 1, not {workers}")
    processes = default_normalize_workers() if normalize_workers is None else normalize_workers
    if processes < 1:
        raise T12kError(f"normalize_workers must be at least 1, not {normalize_workers}")
    if retries < 0:
        raise T12kError(f"retries must be 0 or more, not {retries}")
    if timeout <= 0:
        raise T12kError(f"timeout must be positive, not {timeout}")
    for name, value in (("sleep", sleep), ("sleep_requests", sleep_requests)):
        if value is not None and value < 0:
            raise T12kError(f"{name} must be 0 or more seconds, not {value}")
    if cookies is not None and not Path(cookies).is_file():
        raise T12kError(
            f"cookies file {cookies} not found; export it from your browser (Netscape format) or fix the path"
        )
    settings = _Settings(
        fps=fps,
        max_short_side=max_short_side,
        keep_audio=keep_audio,
        retries=retries,
        timeout=float(timeout),
        sleep=sleep,
        sleep_requests=sleep_requests,
        cookies=str(cookies) if cookies else None,
        browser=_browser_spec(cookies_from_browser) if cookies_from_browser else None,
        ffmpeg=media.ffmpeg_exe(),
        threads=None,
        enforce_quality=enforce_quality,
        quality_seconds=tuple(QUALITY_SECONDS),
        quality_min_lines=QUALITY_MIN_LINES,
    )
    media.target_size(16, 16, max_short_side)  # validates max_short_side early
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = FetchSummary(out)
    t0 = time.perf_counter()
    from tqdm import tqdm

    from t12k.storage import Manifest

    with _folder_lock(out):
        _clean_leftovers(out)
        manifest = Manifest(out / "manifest.csv", MANIFEST_FIELDS)
        bar = tqdm(total=len(items), desc="fetch", unit="trailer", disable=not progress, leave=False)
        try:
            todo: list[FetchItem] = []
            for it in items:
                dst = out / f"{it.id}.mp4"
                if not it.url:
                    manifest.record(
                        it.id, "failed", "no URL for this id in the list; add one or drop the id", error="no-url"
                    )
                    summary.failed[it.id] = "no URL for this id in the list"
                    bar.update(1)
                    continue
                fields = None if overwrite else _existing(it, dst, manifest)
                row = manifest.rows.get(it.id) or {}
                if fields is not None:
                    bad = fields.get("quality") not in ("", "ok")
                    if enforce_quality and bad:
                        dst.unlink()
                        manifest.record(it.id, "rejected", fields["quality"], **{**fields, "error": "quality"})
                        summary.rejected[it.id] = fields["quality"]
                    else:
                        manifest.record(it.id, "skipped", "already fetched", **fields)
                        summary.skipped.append(it.id)
                        if bad:
                            summary.quality[it.id] = fields["quality"]
                    bar.update(1)
                elif enforce_quality and not overwrite and row.get("status") == "rejected" and row.get("url") == it.url:
                    manifest.record(
                        it.id, "rejected", row.get("reason", ""), **{k: row.get(k, "") for k in MANIFEST_FIELDS}
                    )
                    summary.rejected[it.id] = row.get("reason", "")
                    bar.update(1)
                else:
                    todo.append(it)
            _Run(todo, out, settings, workers, processes, manifest, summary, bar).run()
        finally:
            bar.close()
            _clean_leftovers(out)
            # Rows in the order of the list (ids of earlier runs that the list no longer names last).
            order = [it.id for it in items if it.id in manifest.rows]
            manifest.rows = {**{m: manifest.rows[m] for m in order}, **manifest.rows}
            manifest.compact()
    summary.seconds = time.perf_counter() - t0
    return summary
