"""Trailer ids and URLs: the item type of a fetch, the ids made from URLs, YouTube video ids."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse

from t12k.errors import T12kError

YT_HOSTS = ("youtube.com", "youtube-nocookie.com", "youtu.be")
YT_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
_IMDB_ID = re.compile(r"^(?:tt)?0*(\d+)$", re.I)


@dataclass
class FetchItem:
    """One trailer to fetch: a safe id (the file is OUT/{id}.mp4) and its URL. An empty URL
    (an id of a label file with no URL in the list) is recorded as failed, not fetched."""

    id: str
    url: str


def check_id(mid: str) -> str:
    """`mid` when it is a safe trailer id; T12kError otherwise (the one rule of t12k.storage)."""
    from t12k.storage import check_id as storage_check_id  # lazily: normalizing processes need no storage

    return storage_check_id(mid)


def youtube_id(url: str) -> str | None:
    """The 11-character video id of a YouTube URL (watch, youtu.be, shorts, embed, ...); None
    for other URLs."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if not any(host == h or host.endswith("." + h) for h in YT_HOSTS):
        return None
    parts = [p for p in parsed.path.split("/") if p]
    candidates: list[str] = []
    if host.endswith("youtu.be"):
        candidates += parts[:1]
    candidates += parse_qs(parsed.query).get("v", [])
    if len(parts) >= 2 and parts[0] in ("shorts", "embed", "v", "live", "e"):
        candidates.append(parts[1])
    return next((c for c in candidates if YT_ID.match(c)), None)


def youtube_url(video_id: str) -> str:
    """The watch URL of a YouTube video id."""
    return f"https://www.youtube.com/watch?v={video_id}"


def id_from_url(url: str) -> str:
    """A safe trailer id for a URL: the YouTube video id (prefixed with 'yt' when it starts
    with '-' or '_'), else a slug of the file name, else a hash of the URL."""
    yt = youtube_id(url)
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


def imdb_mid(value: object) -> str | None:
    """'tt0347149' for an IMDb id given as 'tt0347149', '0347149' or 347149; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    m = _IMDB_ID.match(str(value).strip())
    return f"tt{int(m.group(1)):07d}" if m else None


def check_items(items: list[FetchItem]) -> None:
    """T12kError for an unsafe id or an id given twice (what `t12k fetch` and `t12k run` refuse)."""
    seen: dict[str, str] = {}
    for it in items:
        check_id(it.id)
        if it.id in seen:
            raise T12kError(f"id {it.id!r} is given twice ({seen[it.id]} and {it.url}); give every trailer its own id")
        seen[it.id] = it.url
