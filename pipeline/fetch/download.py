"""One trailer's download with yt-dlp: its options and format, the quality check before
downloading, and the attempts.

Retries go through the project's one `RetryPolicy` and only through it: yt-dlp is told not to
retry on its own (its retries, fragment, extractor and file-access retries are all 0), so
`retries=r` means at most r + 1 attempts, each paced by the run's `Pacer`.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t12k.errors import Cancelled, T12kError, describe
from t12k.pipeline import media
from t12k.pipeline.fetch.bounds import Watch, too_large
from t12k.pipeline.fetch.classify import Permanent, chain, failure
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.ids import FetchItem
from t12k.pipeline.fetch.pacing import Pacer, pauses
from t12k.pipeline.fetch.quality import quality_report, resolution_lines
from t12k.pipeline.retry import RetryPolicy, Transient

_BACKOFF = 2.0  # seconds before the first retry; doubled for each further one (tests shrink it)


class QuietLogger:
    """Swallows yt-dlp's messages (errors reach us as exceptions), but for the one that says
    it refused a file larger than `max_filesize`, which it does without an error."""

    def __init__(self) -> None:
        self.too_large: int | None = None  # the size of a file yt-dlp refused, in bytes

    def debug(self, msg: object) -> None:
        m = _TOO_LARGE.search(str(msg))
        if m:
            self.too_large = int(m.group(1))

    info = warning = error = debug


_TOO_LARGE = re.compile(r"larger than max-filesize \((\d+) bytes")


def ytdlp_format(keep_audio: bool, max_short_side: int) -> str:
    """yt-dlp's format selector: H.264 first, no more pixels than the short side we keep needs."""
    cap = max(720, max_short_side)
    if keep_audio:
        return (
            f"bv*[vcodec^=avc1][height<={cap}]+ba/b[vcodec^=avc1][height<={cap}]/"
            f"bv*[height<={cap}]+ba/b[height<={cap}]/bv*+ba/b"
        )
    # No audio wanted: take the video alone (nothing to merge, less to download).
    return f"bv*[vcodec^=avc1][height<={cap}]/bv*[height<={cap}]/bv*/b"


def precheck(raw: dict, config: FetchConfig) -> str:
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
        seconds=config.quality_seconds,
        min_lines=config.quality_min_lines,
    )


def ydl_options(
    url: str, folder: Path, config: FetchConfig, hook: Callable[[dict], None], logger: QuietLogger | None = None
) -> dict:
    """yt-dlp's options for downloading `url` into `folder`; `hook` sees its progress."""
    opts = {
        "outtmpl": {"default": str(folder / "source.%(ext)s")},
        "paths": {"home": str(folder), "temp": str(folder)},
        "format": ytdlp_format(config.keep_audio, config.max_short_side),
        "merge_output_format": "mkv",  # holds any codec pair; we re-encode anyway
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": logger or QuietLogger(),
        "socket_timeout": float(config.timeout),
        # Our RetryPolicy, with its backoff and the pacer, is the only one that retries.
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "file_access_retries": 0,
        "skip_unavailable_fragments": False,  # a lost fragment fails the attempt, never leaves a gap
        "max_filesize": int(config.max_filesize),  # acts when the size is announced; `Watch` does the rest
        "ffmpeg_location": config.ffmpeg or media.ffmpeg_exe(),
        "overwrites": True,
        "continuedl": False,
        "writethumbnail": False,
        "writesubtitles": False,
        "progress_hooks": [hook],
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    _, requests = pauses(url, config)
    if requests > 0:
        opts["sleep_interval_requests"] = requests
    if config.cookies:
        opts["cookiefile"] = str(config.cookies)
    if config.cookies_from_browser:
        opts["cookiesfrombrowser"] = config.browser
    return opts


_WARM = False


def warm_up_yt_dlp() -> None:
    """Compile the URL patterns of yt-dlp's extractors once per process (half a second), so
    that the first downloads do not do it all at once and the pauses between requests hold."""
    global _WARM
    if not _WARM:
        from yt_dlp.extractor import gen_extractor_classes

        for ie in gen_extractor_classes():
            ie.suitable("https://t12k.invalid/warm-up")
        _WARM = True


def _extract(
    ydl: Any, url: str, config: FetchConfig, stop: threading.Event, turn: Callable[[], bool] | None, watch: Watch
) -> dict:
    """Look at `url` (one video, and within the quality rules when they are enforced), then
    download it; `watch`'s clock starts with the first request and its budget follows the
    duration once known."""
    if turn is not None and not turn():
        raise Cancelled("stopped before the download")
    watch.start()
    raw = ydl.extract_info(url, download=False, process=False)
    if raw and raw.get("_type") in ("playlist", "multi_video"):
        raise Permanent("playlist", f"{url} is a playlist, not one video; give the URL of a single video")
    if config.enforce_quality and raw:
        report = precheck(raw, config)
        if report != "ok":
            raise Permanent("quality", report)
    if stop.is_set():
        raise Cancelled("stopped before the download")
    watch.set_budget(config.deadline((raw or {}).get("duration")))
    return ydl.process_ie_result(raw, download=True)


def _media_file(info: dict | None, folder: Path, url: str) -> Path:
    """The file yt-dlp wrote: the one it reports, else the largest whole file in `folder`."""
    paths = [Path(d["filepath"]) for d in (info or {}).get("requested_downloads") or [] if d.get("filepath")]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        paths = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl"))),
            key=lambda p: p.stat().st_size,
            reverse=True,
        )
    if not paths:
        raise Permanent("error", f"yt-dlp reported no file for {url}; check the URL")
    return paths[0]


def download(
    url: str, folder: Path, config: FetchConfig, stop: threading.Event, turn: Callable[[], bool] | None = None
) -> Path:
    """One attempt at downloading `url` into `folder` with yt-dlp; the path of the media file.
    `turn()`, called just before the first request, waits for this download's turn (False:
    stop). A file larger than `config.max_filesize` or an attempt past its deadline
    (`config.deadline`) is stopped (`Watch`). Raises `Transient` (worth a retry), `Permanent`
    or `Cancelled`."""
    import yt_dlp

    logger = QuietLogger()
    with Watch(stop, config.deadline(None), config.max_filesize) as watch:

        def hook(status: dict[str, Any]) -> None:
            if stop.is_set():
                raise Cancelled("download stopped")
            watch.check(status)

        try:
            with yt_dlp.YoutubeDL(ydl_options(url, folder, config, hook, logger)) as ydl:
                info = _extract(ydl, url, config, stop, turn, watch)
        except (Permanent, Cancelled):
            raise
        except Exception as exc:
            _raise_stopped(exc, stop, watch)
            if isinstance(exc, (yt_dlp.utils.YoutubeDLError, OSError)):
                raise failure(exc) from exc
            raise
        # A download cut short by the watchdog can look complete to yt-dlp (no size announced).
        _raise_stopped(None, stop, watch)
    if logger.too_large is not None:
        raise too_large(config.max_filesize, announced=logger.too_large)
    return _media_file(info, folder, url)


def _raise_stopped(exc: BaseException | None, stop: threading.Event, watch: Watch) -> None:
    """Raise Cancelled when the run is stopping, the watch's failure when the attempt passed
    its deadline, and a `Permanent` raised in the progress hook (yt-dlp wraps it)."""
    if stop.is_set() or (exc is not None and any(isinstance(e, Cancelled) for e in chain(exc))):
        raise Cancelled("download stopped") from None
    if watch.expired:
        raise watch.failure() from None
    for e in chain(exc) if exc is not None else ():
        if isinstance(e, Permanent):
            raise e from None


@dataclass
class Downloaded:
    """The outcome of one trailer's download: its file (`src`) or why there is none (`kind`)."""

    item: FetchItem
    folder: Path  # the temporary folder of the download, in OUT
    t0: float
    src: Path | None = None
    attempts: int = 0
    kind: str = ""  # '' when downloaded; else the error kind ('cancelled' when the run stopped)
    reason: str = ""


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def download_item(item: FetchItem, out: Path, config: FetchConfig, pacer: Pacer, stop: threading.Event) -> Downloaded:
    """Download one item, retrying transient errors; never raises (the outcome is in the result)."""
    d = Downloaded(item, out / f"{media.TMP_MARK}-{item.id}-{uuid.uuid4().hex[:8]}", time.perf_counter())
    interval, _ = pauses(item.url, config)

    def attempt(number: int) -> Path:
        d.attempts = number
        if number > 1:
            _clear(d.folder)  # start the next attempt clean
        return download(item.url, d.folder, config, stop, lambda: pacer.wait(interval, stop))

    try:
        d.folder.mkdir()
        d.src = RetryPolicy(config.retries, _BACKOFF).call(attempt, stop=stop)
    except Transient as exc:
        tries = f" after {d.attempts} attempts" if d.attempts > 1 else ""
        d.kind = "rate-limited" if "429" in str(exc) else "transient"
        d.reason = f"download failed{tries}: {exc}"
    except Permanent as exc:
        d.kind, d.reason = exc.kind, str(exc)
    except Cancelled:
        d.kind = "cancelled"
    except T12kError as exc:
        d.kind, d.reason = "error", describe(exc)
    except Exception as exc:  # a yt-dlp bug, say: record it, go on
        d.kind, d.reason = "error", f"unexpected {describe(exc)}"
    return d
