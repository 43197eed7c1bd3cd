"""What a failed download means: classifying yt-dlp's errors.

A transient error (connection trouble, timeouts, HTTP 5xx/408/429) is worth another attempt
and becomes `t12k.pipeline.retry.Transient`; anything else is `Permanent`, with a kind for the
manifest's error column (removed, private, geo-blocked, age-restricted, bot-check, not-found,
...) and a one-line reason that says what the user can do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from t12k.errors import MAX_REASON, first_line
from t12k.pipeline.retry import Transient


class Permanent(Exception):
    """A download error not worth retrying; `kind` names it for the manifest's error column."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


_TRANSIENT_TEXT = re.compile(
    r"HTTP Error (5\d\d|408|429)|timed out|Connection (reset|aborted|refused)|"
    r"Remote end closed|IncompleteRead|Temporary failure in name resolution|"
    r"giving up after \d+ retries|ContentTooShort|Downloaded \d+ bytes, expected \d+ bytes|did not match the expected|"
    r"\d+ bytes read, \d+ more expected",  # http.client's IncompleteRead, as yt-dlp words it without its cause
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

_HINTS = {kind: hint for kind, _, hint in _PERMANENT_TEXT}


def chain(exc: BaseException) -> Iterator[BaseException]:
    """An exception and its causes (yt-dlp wraps them in .exc_info and .cause)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        info = getattr(e, "exc_info", None)
        todo += [getattr(e, "cause", None), e.__cause__, info[1] if isinstance(info, tuple) and len(info) > 1 else None]


def is_transient(exc: BaseException) -> bool:
    """Whether a download error is worth another attempt: HTTP 5xx/408/429, connection
    trouble and timeouts, but not an unknown host, a certificate error or a site's refusal."""
    from yt_dlp.networking.exceptions import HTTPError, SSLError, TransportError
    from yt_dlp.utils import ContentTooShortError

    msg = str(exc)
    if _UNKNOWN_HOST.search(msg) or any(p.search(msg) for _, p, _ in _PERMANENT_TEXT):
        return False
    for e in chain(exc):
        if isinstance(e, HTTPError):
            return e.status >= 500 or e.status in (408, 429)
        if isinstance(e, SSLError):
            return False
        if isinstance(e, (TransportError, TimeoutError, ConnectionError, ContentTooShortError)):
            return True
    return bool(_TRANSIENT_TEXT.search(msg)) and not _PERMANENT_HTTP.search(msg)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a download error (from its causes, else its message); None if none."""
    from yt_dlp.networking.exceptions import HTTPError

    for e in chain(exc):
        if isinstance(e, HTTPError):
            return e.status
    m = re.search(r"HTTP Error (\d{3})", str(exc))
    return int(m.group(1)) if m else None


def classify(exc: BaseException) -> tuple[str, str | None]:
    """(kind, what to do) of a download error; kind 'transient' is worth a retry."""
    from yt_dlp.utils import GeoRestrictedError

    msg = str(exc)
    for kind, pattern, hint in _PERMANENT_TEXT:
        if pattern.search(msg):
            return kind, hint
    if any(isinstance(e, GeoRestrictedError) for e in chain(exc)):
        return "geo-blocked", _HINTS["geo-blocked"]
    if is_transient(exc):
        return "transient", None
    status = http_status(exc)
    if status == 404 or status == 410:
        return "not-found", "check the URL"
    if status == 401 or status == 403:
        return "forbidden", "the server refuses it; check the URL, or pass cookies if it needs a login"
    if "Unsupported URL" in msg:
        return "unsupported", "give the URL of a video page or file"
    return "error", None


# yt-dlp's decorations of a message that say nothing about the trailer.
_NOISE = (
    re.compile(r"^ERROR:\s*"),
    re.compile(r"^\[download\]\s*Got error:\s*"),
    re.compile(r"\s*\(caused by .*\)\s*$"),
    re.compile(r"\s*Use --cookies-from-browser or --cookies for the authentication\..*$"),
)


def reason(exc: BaseException) -> str:
    """The one-line reason of a yt-dlp error: its first line without yt-dlp's decorations
    ('ERROR:', 'caused by ...', the hint about its own cookie options)."""
    # yt-dlp puts a carriage return after 'ERROR:' in some messages: part of the line, not an end.
    msg = first_line(str(exc).replace("\r", " ")) or type(exc).__name__
    for noise in _NOISE:
        msg = noise.sub("", msg)
    return msg[:MAX_REASON]


def failure(exc: BaseException) -> Transient | Permanent:
    """The exception to raise for a yt-dlp (or OS) error: `Transient` when worth a retry,
    else `Permanent` with its kind and what to do."""
    kind, hint = classify(exc)
    if kind == "transient":
        return Transient(reason(exc))
    if kind == "error":
        return Permanent(kind, f"download failed: {reason(exc)}")
    status = http_status(exc)
    what = f"HTTP {status}; " if status and kind in ("not-found", "forbidden") else ""
    return Permanent(kind, f"{kind} ({what}not retried): {hint} [{reason(exc)}]")
