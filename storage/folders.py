"""Output folders: the one rule for a folder t12k must write in (made if needed, checked
writable before any work starts) and the one-line error when it cannot (read-only file
system, no permission, a file in the way), naming the folder and the fix."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from t12k.errors import T12kError

OUTPUT = "output folder"  # what a command's --out is called in its errors
PASS_ANOTHER = "pass another --out"  # and what to do about it


def unwritable(
    path: str | os.PathLike[str], reason: OSError | str, what: str = OUTPUT, fix: str = PASS_ANOTHER
) -> T12kError:
    """The error for a folder (or a file in it) that cannot be written: `what` and `path` name
    it, `reason` is the OSError (its strerror is said) or a reason, `fix` what to do."""
    if isinstance(reason, OSError):
        reason = reason.strerror or str(reason)
    return T12kError(f"cannot write in {what} {path} ({reason}); {fix}")


def writable_folder(path: str | os.PathLike[str], what: str = OUTPUT, fix: str = PASS_ANOTHER) -> Path:
    """`path` as a folder this process may write in, made (with its parents) if needed;
    T12kError from `unwritable` otherwise. Nothing is written in an existing folder."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise unwritable(folder, "it is a file", what, fix)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(folder, exc, what, fix) from None
    if not os.access(folder, os.W_OK | os.X_OK):  # says EROFS and permissions (root may write where 0o555)
        raise unwritable(folder, os.strerror(_why_not(folder)), what, fix)
    return folder


def _why_not(folder: Path) -> int:
    """The errno of a folder `os.access` refuses: a read-only file system, else permissions."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return errno.EROFS
    except OSError:
        pass
    return errno.EACCES
