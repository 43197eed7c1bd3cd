"""Finding the trailers of a videos folder: `{mid}.mp4` (and other containers) -> id."""

from __future__ import annotations

import os
from pathlib import Path

from t12k.errors import T12kError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")


def find_videos(folder: str | os.PathLike, ids: list[str] | None = None) -> dict[str, Path]:
    """Map trailer id (file stem) -> path for the videos in `folder`, sorted by id.

    With `ids`, only those, and an id without a video raises T12kError."""
    root = Path(folder)
    if not root.is_dir():
        raise T12kError(
            f"videos folder {root} does not exist; run `t12k fetch` or pass the folder that holds {{id}}.mp4 files"
        )
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES and not entry.name.startswith("."):
            found.setdefault(entry.stem, entry)
    if ids is not None:
        missing = [i for i in ids if i not in found]
        if missing:
            raise T12kError(
                f"no video for id(s) {', '.join(missing[:5])} in {root}; fetch them or drop them from --ids"
            )
        return {i: found[i] for i in ids}
    if not found:
        raise T12kError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {root}; run `t12k fetch` first")
    return found
