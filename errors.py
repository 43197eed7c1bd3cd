"""What can go wrong, said once: the error type users can cause, the run being stopped, and
the one-line reason recorded for a failed trailer.

A `T12kError` message names the thing that is wrong and the fix; the CLI prints it on one
line and exits non-zero. Per-trailer failures in a batch run are recorded with `describe`.
"""

from __future__ import annotations

import re

MAX_REASON = 300  # characters of a reason kept in a manifest row or a summary

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class T12kError(Exception):
    """A problem with the user's input, files or settings (not a bug in t12k)."""


class Cancelled(Exception):
    """The run is stopping (Ctrl-C, SIGTERM or a caller's cancel callback).

    Not a failure of the trailer in hand: nothing of it was written, and the next run redoes it.
    """


def first_line(text: object) -> str:
    """The first non-blank line of `text`, stripped of terminal colours and carriage returns."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(text)).replace("\r", "\n").splitlines() if ln.strip()]
    return lines[0] if lines else ""


def describe(exc: BaseException, limit: int = MAX_REASON) -> str:
    """One line saying why `exc` happened: a T12kError's own message, else `Type: first line`.

    This is the reason recorded in manifests and summaries for every failed item of a batch.
    """
    if isinstance(exc, T12kError):
        return first_line(exc)[:limit] or type(exc).__name__
    text = first_line(getattr(exc, "strerror", None) or exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:limit]
