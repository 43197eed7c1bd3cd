"""The paper's quality rules for trailers (Trailers12k, section 3): 60 to 210 s, at least 480p.

Every fetched trailer is reported against them in the manifest's quality column; with
`enforce_quality` the ones that break them are kept out. `FetchConfig` reads the rules from
this module when it is made, so this is the one place they are written.
"""

from __future__ import annotations

QUALITY_SECONDS = (60.0, 210.0)  # shortest and longest duration, in seconds
QUALITY_MIN_LINES = 480  # the least resolution, in 'p'


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


def rules_text(seconds: tuple[float, float], min_lines: int) -> str:
    """The rules in a few words: '60-210 s, at least 480p'."""
    lo, hi = seconds
    return f"{lo:g}-{hi:g} s, at least {min_lines}p"
