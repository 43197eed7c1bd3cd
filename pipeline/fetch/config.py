"""The settings of a fetch, written once: `FetchConfig` carries them from the command line
(each field's help text is its option's) through `fetch_collection` to yt-dlp and ffmpeg."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from t12k.errors import T12kError
from t12k.pipeline.fetch import quality
from t12k.settings import check_fields

# The default deadline of a download: a base for the requests around it, plus so many
# seconds per second of video (a 720p trailer is about 2.5 Mbit per second of video, so 5 s
# per second allows 0.5 Mbit/s), for the duration the site tells, else for UNKNOWN_DURATION.
DEADLINE_BASE = 120.0
DEADLINE_PER_SECOND = 5.0
UNKNOWN_DURATION = 600.0
MAX_FILESIZE = 2 << 30  # 2 GiB: a 3-minute trailer is tens of MB at 720p, a few hundred at 4K


def parse_size(text: str) -> int:
    """A size in bytes from '2G', '500M', '64k' or '1000000' (yt-dlp's notation, powers of 1024)."""
    from yt_dlp.utils import parse_bytes

    size = parse_bytes(str(text).strip().removesuffix("B").removesuffix("i"))
    if size is None or size < 1:
        raise T12kError(f"cannot read the size {text!r}; give bytes or a number with k, M or G, e.g. 500M or 2G")
    return int(size)


def default_normalize_workers() -> int:
    """Normalizing processes: one per two cores (each ffmpeg runs several threads), at least 2
    so one trailer's probe and checksum overlap another's encode."""
    return max(2, (os.cpu_count() or 2) // 2)


@dataclass
class FetchConfig:
    """How `fetch_collection` downloads and normalizes a list of trailers."""

    workers: int = field(default=2, metadata={"help": "downloads at once", "min": 1})
    normalize_workers: int | None = field(
        default=None,
        metadata={
            "help": "processes re-encoding at once (default: one per two CPU cores, at least 2)",
            "metavar": "N",
            "min": 1,
        },
    )
    max_short_side: int = field(
        default=360, metadata={"help": "scale videos down so their short side is at most this many pixels"}
    )
    keep_audio: bool = field(default=False, metadata={"help": "keep the audio track (dropped by default)"})
    retries: int = field(default=2, metadata={"help": "retries of transient network errors (with backoff)", "min": 0})
    timeout: float = field(default=30.0, metadata={"help": "network timeout in seconds", "above": 0, "unit": "seconds"})
    sleep: float | None = field(
        default=None,
        metadata={
            "help": "least pause between the starts of two downloads, all workers together "
            "(default: 5 s, none for localhost)",
            "metavar": "SECONDS",
            "min": 0,
            "unit": "seconds",
        },
    )
    sleep_requests: float | None = field(
        default=None,
        metadata={
            "help": "pause between the requests yt-dlp makes for one video (default: 1 s, none for localhost)",
            "metavar": "SECONDS",
            "min": 0,
            "unit": "seconds",
        },
    )
    cookies: str | os.PathLike | None = field(
        default=None,
        metadata={
            "help": "cookies.txt file passed to yt-dlp (for 'confirm you are not a bot' and age-restricted videos)"
        },
    )
    cookies_from_browser: str | None = field(
        default=None, metadata={"help": "browser to read cookies from (yt-dlp's option), e.g. firefox"}
    )
    enforce_quality: bool = field(
        default=False,
        metadata={
            "help": "keep out trailers that break the paper's rules (60 to 210 s, at least 480p); they are "
            "always reported in the manifest's quality column"
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "fetch again ids whose video is already there"})
    max_filesize: int = field(
        default=MAX_FILESIZE,
        metadata={
            "help": "stop a download whose file passes this size, whether the server announces it or not "
            "(bytes, or with a k, M or G suffix; default 2G, far above any trailer); recorded as too-large",
            "metavar": "SIZE",
            "parse": parse_size,
            "min": 1,
            "unit": "byte",
        },
    )
    download_deadline: float | None = field(
        default=None,
        metadata={
            "help": "stop a download that takes longer than this, in seconds from its first request; recorded "
            f"as too-slow (default: {DEADLINE_BASE:.0f} s plus {DEADLINE_PER_SECOND:.0f} s per second of video, "
            f"for the duration the site tells, else for {UNKNOWN_DURATION / 60:.0f} minutes: about 20 minutes "
            "for a 3.5-minute trailer)",
            "metavar": "SECONDS",
            "above": 0,
            "unit": "seconds",
        },
    )
    # Not on the command line: the frame rate of the normalized videos, the ffmpeg binary
    # (None: the system's, else imageio-ffmpeg's) and the quality rules (the paper's).
    fps: int = field(default=24, metadata={"cli": False})
    ffmpeg: str | None = field(default=None, metadata={"cli": False})
    quality_seconds: tuple[float, float] = field(
        default_factory=lambda: tuple(quality.QUALITY_SECONDS), metadata={"cli": False}
    )
    quality_min_lines: int = field(default_factory=lambda: quality.QUALITY_MIN_LINES, metadata={"cli": False})

    @property
    def processes(self) -> int:
        """Normalizing processes to run: `normalize_workers`, else `default_normalize_workers()`."""
        return default_normalize_workers() if self.normalize_workers is None else self.normalize_workers

    def deadline(self, duration: float | None) -> float:
        """Seconds a download of a video of `duration` seconds (None: unknown) may take:
        `download_deadline`, else DEADLINE_BASE + DEADLINE_PER_SECOND x the duration."""
        if self.download_deadline is not None:
            return float(self.download_deadline)
        known = isinstance(duration, (int, float)) and duration > 0
        return DEADLINE_BASE + DEADLINE_PER_SECOND * (
            float(duration) if known and duration is not None else UNKNOWN_DURATION
        )

    @property
    def browser(self) -> tuple | None:
        """`cookies_from_browser` as the tuple yt-dlp's API takes; None without it."""
        return browser_spec(self.cookies_from_browser) if self.cookies_from_browser else None

    def validate(self) -> None:
        """T12kError naming the setting and the fix when one is out of range (the ranges the
        fields carry: `check_fields`) or names what is not there."""
        check_fields(self)
        if self.cookies is not None and not Path(self.cookies).is_file():
            raise T12kError(
                f"cookies file {self.cookies} not found; export it from your browser (Netscape format) or fix the path"
            )
        if self.cookies_from_browser:
            browser_spec(self.cookies_from_browser)  # raises for an unknown browser
        from t12k.pipeline import media

        media.target_size(16, 16, self.max_short_side)  # raises for a bad max_short_side


def browser_spec(spec: str) -> tuple:
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
