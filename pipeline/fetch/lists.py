"""Reading the list of trailers to fetch: the Trailers12k metadata.json, CSV/TSV, JSON, JSONL
or a text file of URLs, refusing malformed rows, unsafe ids and duplicate ids with the file and
line; `select_labelled` keeps the ids of an mtgc.csv (in its order) from such a list."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from t12k.errors import T12kError
from t12k.pipeline.fetch.ids import URL_RE, YT_ID, FetchItem, check_id, id_from_url, imdb_mid, youtube_url

# Fields tried when the default ones ('id', 'url') are absent: mtgc.csv names its ids 'mid';
# URL tables often hold bare YouTube ids.
_ID_FALLBACKS = ("mid",)
_URL_FALLBACKS = ("youtube_id", "youtube", "yt_id", "ytid", "youtube_url", "trailer_url")
_YT_FIELD = re.compile(r"(^|[^a-z])(youtube|yt)", re.I)


def _check_url(url: object, where: str, field_name: str | None = None) -> str:
    if url is None or (isinstance(url, str) and not url.strip()):
        raise T12kError(f"{where}: the URL is empty; give every row a URL or remove the row")
    if not isinstance(url, str):
        raise T12kError(f"{where}: the URL {url!r} is not a string; fix the row")
    url = url.strip()
    if URL_RE.match(url):
        return url
    if field_name is not None and _YT_FIELD.search(field_name) and YT_ID.match(url):
        return youtube_url(url)  # a bare YouTube id in a YouTube field
    hint = " (a bare YouTube id belongs in a field named like youtube_id)" if YT_ID.match(url) else ""
    raise T12kError(f"{where}: {url[:80]!r} is not a URL (expected http(s)://...){hint}; fix the row")


def _item(raw_id: object, url: object, where: str, url_field: str | None = None) -> FetchItem:
    url = _check_url(url, where, url_field)
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
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    def next_row() -> tuple[int, list[str] | None]:
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


def _get(obj: object, name: str) -> tuple[Any, bool]:
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


def _metadata_video(entry: dict[str, Any]) -> Any:
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


def _obj_item(obj: object, where: str, id_field: str, url_field: str, key: str | None = None) -> FetchItem:
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
            raw_id = imdb_mid(obj["imdb"]["id"]) or obj["imdb"]["id"]
        elif key is not None:
            raw_id = imdb_mid(key) if str(key).lower().startswith("tt") else key
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


def _after_ws(text: str, pos: int) -> int:
    """The position of the first non-whitespace character of `text` at or after `pos`."""
    m = _WS.match(text, pos)
    assert m is not None  # \s* matches anywhere
    return m.end()


def _json_members(text: str, pos: int, path: Path, lines: _Lines) -> tuple[list[tuple[int, str | None, int, int]], int]:
    """(line, key, start, end) of each element of the JSON array or object opening at
    text[pos], so every record keeps its line number (the key is None in arrays), and the
    position after its closing bracket."""
    dec = json.JSONDecoder()
    opener = text[pos]
    closer = "]" if opener == "[" else "}"
    out: list[tuple[int, str | None, int, int]] = []
    pos = _after_ws(text, pos + 1)
    if pos < len(text) and text[pos] == closer:
        return out, pos + 1
    while True:
        key = None
        try:
            if opener == "{":
                key, pos = dec.raw_decode(text, pos)
                if not isinstance(key, str):
                    raise json.JSONDecodeError("expected a string key", text, pos)
                pos = _after_ws(text, pos)
                if pos >= len(text) or text[pos] != ":":
                    raise json.JSONDecodeError("expected ':'", text, pos)
                pos = _after_ws(text, pos + 1)
            start = pos
            _, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise T12kError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); fix the file") from None
        out.append((lines(start), key, start, pos))
        pos = _after_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _after_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == closer:
            return out, pos + 1
        raise T12kError(f"{path}:{lines(pos)}: invalid JSON (expected ',' or '{closer}'); fix the file")


def _rows_json(text: str, path: Path, id_field: str, url_field: str) -> Iterator[tuple[int, FetchItem]]:
    """A JSON list of records, or the Trailers12k metadata.json ({"trailers12k": {key: entry}}
    or {key: entry}); each record keeps its line number."""
    lines = _Lines(text)
    pos = _after_ws(text, 0)
    if pos >= len(text) or text[pos] not in "[{":
        raise T12kError(
            f"{path}:{lines(pos)}: expected a JSON list of objects ([{{...}}, ...]) or the "
            f"Trailers12k metadata.json; fix the file"
        )
    top, end = _json_members(text, pos, path, lines)
    if text[end:].strip():
        raise T12kError(
            f"{path}:{lines(_after_ws(text, end))}: extra data after the JSON "
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


def _rows_jsonl(text: str, path: Path, id_field: str, url_field: str) -> Iterator[tuple[int, FetchItem]]:
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise T12kError(f"{path}:{line}: invalid JSON ({exc.msg}); fix the line") from None
        yield line, _obj_item(obj, f"{path}:{line}", id_field, url_field)


def _rows_text(text: str, path: Path, id_field: str = "id", url_field: str = "url") -> Iterator[tuple[int, FetchItem]]:
    """One URL a line ('#' comments allowed); the ids come from the URLs (the fields are unused)."""
    for line, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        yield line, _item(None, s, f"{path}:{line}")


def _kind(path: Path, text: str) -> str:
    """The kind of a list: by its suffix, else by how its text begins."""
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
    return "text" if URL_RE.match(first.strip()) or not first else "csv"


# The reader of each kind of list: (text, path, id_field, url_field) -> (line, FetchItem) pairs.
_READERS = {"csv": _rows_csv, "json": _rows_json, "jsonl": _rows_jsonl, "text": _rows_text}


def _read_text(p: Path) -> str:
    """The text of a list file; T12kError when it is missing, not UTF-8 or binary."""
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
    return text


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
    text = _read_text(p)
    rows = _READERS[_kind(p, text)](text, p, id_field, url_field)
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
    return imdb_mid(mid) or mid


def select_labelled(items: Iterable[FetchItem], labels: str | os.PathLike) -> list[FetchItem]:
    """The items of the ids of an mtgc.csv, in its order, under its ids (IMDb ids match
    with or without 'tt' and leading zeros). An id the list has no URL for comes back with
    an empty URL, so the fetch records it as failed and goes on."""
    from t12k.storage import read_mtgc

    by_key = {_match_key(it.id): it for it in items}
    out = []
    for mid in read_mtgc(labels).ids:
        try:
            check_id(mid)
        except T12kError as exc:
            raise T12kError(f"{labels}: {exc}") from None
        it = by_key.get(_match_key(mid))
        out.append(FetchItem(mid, it.url if it else ""))
    return out


def collect_items(
    path: str | os.PathLike | None,
    urls: Iterable[str] = (),
    labels: str | os.PathLike | None = None,
    id_field: str = "id",
    url_field: str = "url",
) -> list[FetchItem]:
    """What `t12k fetch` is asked for: the items of a list file and of single URLs, narrowed
    to (and ordered as) the ids of an mtgc.csv when `labels` is given."""
    items = read_items(path, id_field, url_field) if path else []
    items += [FetchItem(id_from_url(u), u) for u in urls]
    if labels:
        if not items:
            raise T12kError("--labels needs the URLs: give the URL table or metadata.json as ITEMS")
        items = select_labelled(items, labels)
    if not items:
        raise T12kError("nothing to fetch; give a list file (metadata.json, CSV, JSON, JSONL or URLs) or --url URL")
    return items
