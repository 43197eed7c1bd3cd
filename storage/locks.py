"""Locks that let many processes write one store or manifest: on one machine, and on several
machines sharing a POSIX file system (flock; Linux maps it to byte-range locks on NFS).

`locked(path)` holds an exclusive lock on a lock file while a block runs: commits to a store
and appends to (or rewrites of) a manifest go through it. Within one process a thread lock
per path is held too (on NFS, two locks of one process do not exclude each other).

A writer stages an array in a folder of its own (`Staging`) and holds a lock on the folder's
lock file for as long as it lives, so that `clean_stale` can tell a killed run's folder (its
lock is free) from one in use. Folders are made and cleaned under the staging root's lock,
so a folder is never seen without its lock file held.

`hold_folder(folder, name, busy)` keeps one writer per output folder (a fetch, a training, an
experiment): a non-blocking lock on a lock file in it that holds the holder's pid; another
holder is refused at once with the caller's message, any other failure with what it is.
With `shared=True` any number of holders share the lock (the tasks of a sharded fetch),
and only an exclusive holder is refused.

`held_locks()` and `is_held(path, held)` tell whether a process of this machine holds a lock
on a file, from /proc/locks, without taking it (a reader that never holds up a writer).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

from t12k.errors import T12kError
from t12k.storage.folders import OUTPUT, PASS_ANOTHER, unwritable

ROOT_LOCK = ".lock"  # in a staging root: held to commit, to make a staging folder and to clean
FOLDER_LOCK = ".lock"  # in a staging folder: held by its writer while it lives

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()
_live: set[str] = set()  # staging folders of this process (a cleaner in it must not take them)


def _thread_lock(path: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(path, threading.Lock())


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise T12kError(f"cannot create the lock file {path} ({exc.strerror}); write where you may write") from None


def _flock(fd: int, path: Path, flags: int) -> bool:
    """flock `fd`; False when LOCK_NB was asked and another holds it."""
    try:
        fcntl.flock(fd, flags)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:  # a file system without locks
        raise T12kError(
            f"cannot lock {path} ({exc.strerror}); this file system has no locks: write to a local "
            "disk or an NFSv4 mount"
        ) from None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if needed) while the block runs."""
    path = Path(path)
    with _thread_lock(os.path.abspath(path)):
        fd = _open_lock_file(path)
        try:
            _flock(fd, path, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock


class Staging:
    """A writer's own folder in a staging root (beside the store, so renames stay on one file
    system), locked while it lives and removed with everything in it when closed."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.root / ROOT_LOCK):
            self.path = self.root / uuid.uuid4().hex
            self.path.mkdir()
            lock = self.path / FOLDER_LOCK
            self._fd = _open_lock_file(lock)
            _flock(self._fd, lock, fcntl.LOCK_EX)
        _live.add(str(self.path))
        self._trash = 0

    def trash(self) -> Path:
        """A fresh name in this folder to move an old array to (removed on close)."""
        self._trash += 1
        return self.path / f"trash-{self._trash}"

    def close(self) -> None:
        os.close(self._fd)  # first: on NFS an open file in the folder would keep it from going
        shutil.rmtree(self.path, ignore_errors=True)
        _live.discard(str(self.path))

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


BEAT = 20.0  # seconds between a live holder's touches of its lock file (`Heartbeat`)
FRESH = 120.0  # a lock file touched this recently has a live holder, maybe on another machine


class Heartbeat:
    """Touches the lock file at `path` every BEAT seconds from a daemon thread while its lock
    is held, so that a machine sharing the folder, which cannot see this machine's locks,
    tells the holder is alive (`is_live`); `close` stops the thread and, with `done`, dates
    the file back so it reads as released at once."""

    def __init__(self, path: Path):
        self.path, self.stopping = Path(path), threading.Event()
        self._touch()
        self.thread = threading.Thread(target=self._beat, name="t12k-heartbeat", daemon=True)
        self.thread.start()

    def _touch(self, when: float | None = None) -> None:
        try:
            os.utime(self.path, None if when is None else (when, when))
        except OSError:
            pass  # gone (its folder was removed): nothing to keep alive

    def _beat(self) -> None:
        while not self.stopping.wait(BEAT):
            self._touch()

    def close(self, done: bool = True) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        if done:
            self._touch(0.0)


def is_live(path: str | os.PathLike[str], held: set[tuple[int, int, int]] | None) -> bool:
    """Whether the lock file at `path` has a live holder: held on this machine (`held`), or
    beaten within FRESH seconds (`Heartbeat`: a holder on another machine sharing the folder;
    a holder killed on this one reads as live for that long)."""
    if is_held(path, held):
        return True
    try:
        return time.time() - os.stat(path).st_mtime < FRESH
    except OSError:
        return False


class Claims:
    """The trailers a live worker is on, for `t12k status`: an empty file per trailer in a
    staging folder of its own beside the store at `store` (locked while the worker lives and
    its lock beaten, so a killed worker's claims read as gone, on any machine, and are
    cleaned like any stale staging folder)."""

    def __init__(self, store: Path):
        store = Path(store)
        self.staging = Staging(store.parent / f".{store.name}.staging")
        self.heartbeat = Heartbeat(self.staging.path / FOLDER_LOCK)

    def claim(self, mid: str) -> None:
        (self.staging.path / mid).touch()

    def release(self, mid: str) -> None:
        (self.staging.path / mid).unlink(missing_ok=True)

    def close(self) -> None:
        self.heartbeat.close(done=False)  # the folder goes with its lock
        self.staging.close()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def clean_stale(root: Path) -> int:
    """Remove the staging folders in `root` whose writer is gone (killed runs); return how many."""
    root = Path(root)
    if not root.is_dir():
        return 0
    removed = 0
    with locked(root / ROOT_LOCK):
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False) and entry.path not in _live and _is_stale(Path(entry.path)):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    return removed


def _is_stale(folder: Path) -> bool:
    """Whether no live writer holds `folder`'s lock (a folder without one predates locks or
    lost its writer before it was locked: both stale, as folders are made under the root lock)."""
    try:
        fd = os.open(folder / FOLDER_LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        return _flock(fd, folder / FOLDER_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


class FolderInUse(T12kError):
    """Another process (or another open in this one) holds a folder's lock."""


def _holder(fh: IO[str]) -> str:
    """The pid written in a lock file ('?' before its holder has written it)."""
    fh.seek(0)
    return fh.read().strip() or "?"


@contextmanager
def hold_folder(
    folder: Path,
    name: str,
    busy: Callable[[str], str],
    what: str = OUTPUT,
    fix: str = PASS_ANOTHER,
    shared: bool = False,
) -> Iterator[None]:
    """Hold `folder` for this process while the block runs: an exclusive, non-blocking flock on
    `folder`/`name`, which holds the holder's pid. Where another process (or another open in
    this one) holds it, FolderInUse at once with `busy(pid)`; a folder the lock file cannot be
    written in is `unwritable` (a read-only file system says so), a file system without locks
    says that. The kernel drops the lock when its holder exits, however it ends. `shared`:
    a shared lock, refused only while an exclusive holder has it (its pid is not written)."""
    folder = Path(folder)
    try:
        fh = open(folder / name, "a+", encoding="utf-8")
    except OSError as exc:
        raise unwritable(folder, exc, what, fix) from None
    with fh:
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(busy(_holder(fh))) from None
        except OSError as exc:  # a file system without locks
            raise T12kError(f"cannot lock {what} {folder} ({exc.strerror}); {fix}") from None
        if not shared:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        heartbeat = Heartbeat(folder / name)  # live for `t12k status` on any machine
        try:
            yield
        finally:
            heartbeat.close()


def held_locks() -> set[tuple[int, int, int]] | None:
    """(major, minor, inode) of every file a process of this machine holds a lock on, from
    /proc/locks (Linux); None where there is no such file."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    held = set()
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts:  # a process waiting for the lock, not holding it
            continue
        where = next((p for p in parts if p.count(":") == 2), None)  # major:minor:inode
        if where is None:
            continue
        major, minor, inode = where.split(":")
        try:
            held.add((int(major, 16), int(minor, 16), int(inode)))
        except ValueError:
            continue
    return held


def is_held(path: str | os.PathLike[str], held: set[tuple[int, int, int]] | None) -> bool:
    """Whether the file at `path` is among `held` (`held_locks()`); False when it is not there."""
    if not held:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in held
