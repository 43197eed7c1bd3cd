"""Finding the trailers of a videos folder: `{mid}.mp4` (and other containers) -> id."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from t12k.errors import T12kError

# In the order of preference when one id has several files: .mp4 first (what `t12k fetch` writes).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
_SHOWN = 5  # ids named in the warning about ids with several files


def _preference(path: Path) -> tuple[int, str]:
    return VIDEO_SUFFIXES.index(path.suffix.lower()), path.name


def _warn_several(root: Path, several: dict[str, list[Path]]) -> None:
    """One warning on stderr naming the ids with several files, the file used and those left out."""
    if not several:
        return
    named = [
        f"{mid} ({paths[0].name} used; {', '.join(p.name for p in paths[1:])} left out)"
        for mid, paths in list(several.items())[:_SHOWN]
    ]
    more = f" and {len(several) - _SHOWN} more" if len(several) > _SHOWN else ""
    print(
        f"warning: {len(several)} id(s) have several videos in {root}: {', '.join(named)}{more}; "
        "keep one file per id (move the others away) to choose which is used",
        file=sys.stderr,
    )


def find_videos(folder: str | os.PathLike, ids: list[str] | None = None) -> dict[str, Path]:
    """Map trailer id (file stem) -> path for the videos in `folder`, sorted by id.

    With `ids`, only those, and an id without a video raises T12kError. An id with several
    files (`a.mkv` beside `a.mp4`) uses the first in VIDEO_SUFFIXES' order, and one warning
    on stderr names such ids and the file each uses."""
    root = Path(folder)
    if not root.is_dir():
        raise T12kError(
            f"videos folder {root} does not exist; run `t12k fetch` or pass the folder that holds {{id}}.mp4 files"
        )
    candidates: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES and not entry.name.startswith("."):
            candidates.setdefault(entry.stem, []).append(entry)
    for paths in candidates.values():
        paths.sort(key=_preference)
    found = {mid: paths[0] for mid, paths in candidates.items()}
    if ids is not None:
        missing = [i for i in ids if i not in found]
        if missing:
            raise T12kError(
                f"no video for id(s) {', '.join(missing[:5])} in {root}; fetch them or drop them from --ids"
            )
        _warn_several(root, {i: candidates[i] for i in ids if len(candidates[i]) > 1})
        return {i: found[i] for i in ids}
    if not found:
        raise T12kError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {root}; run `t12k fetch` first")
    _warn_several(root, {m: p for m, p in candidates.items() if len(p) > 1})
    return found
