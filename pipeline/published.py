"""The published Trailers12k data: `mtgc.csv` and the six feature stores, from Zenodo.

Zenodo record 5716410 holds ``mtgc.csv`` and one ``.zarr.tar.gz`` per store; the names and
md5 checksums below are the ones the reference trainer's ``files.py`` lists. For each file:

* download to ``{name}.part``, resuming a partial file with an HTTP ``Range`` request (a
  server that ignores the range gets the file from the start), retrying network errors
  from where the transfer stopped (the project's `RetryPolicy`);
* verify the md5; a mismatch deletes the part and raises (nothing half-checked is kept);
* extract a tarball into a fresh staging folder (`tempfile.mkdtemp` in the data folder) with
  `tarfile`'s ``data`` filter, which refuses absolute paths, paths that leave the target
  (``..``) and special files, and, beyond it, any link (the published stores hold only files
  and folders); only the members under the store's own folder are extracted (others are
  skipped, and said so), and the expanded size is capped (a multiple of the archive's size,
  and `max_expanded`), so a tar bomb fails before it fills the disk; then move the store
  into place; the archive is removed unless asked to keep it.

The data folder is not trusted to hold only what t12k put there: a part file is opened
without following links (``O_NOFOLLOW``) and a link planted at its name is removed, not
written through; a link at a store's name is replaced, never deleted through.

A store folder or an ``mtgc.csv`` with the right md5 already present is skipped, so the
command can be re-run after an interruption. `base_url` is overridable (mirrors, tests).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from tqdm.auto import tqdm

import t12k
from t12k.errors import T12kError
from t12k.pipeline.fetch.config import parse_size
from t12k.pipeline.media.ffmpeg import TMP_MARK
from t12k.pipeline.retry import RetryPolicy, Transient
from t12k.pipeline.summary import RunSummary
from t12k.settings import check_fields
from t12k.storage.checksum import file_digest

ZENODO_RECORD = 5716410
BASE_URL = f"https://zenodo.org/record/{ZENODO_RECORD}/files"
CHUNK = 1 << 20
# The most a store may expand to: EXPAND_RATIO times its archive (the published stores hold
# compressed chunks, which gzip barely shrinks), at least EXPAND_FLOOR (tiny archives of
# metadata compress well), and at most `max_expanded`.
EXPAND_RATIO = 20
EXPAND_FLOOR = 1 << 20
MAX_EXPANDED = 64 << 30


@dataclass
class DownloadConfig:
    """How `download-reps` fetches the published files."""

    base_url: str = field(
        default=BASE_URL,
        metadata={"help": "where the files are (a mirror); each is fetched from BASE_URL/NAME?download=1"},
    )
    keep_archives: bool = field(default=False, metadata={"help": "keep the .tar.gz files after extracting them"})
    retries: int = field(default=5, metadata={"help": "retries of a failed transfer (each resumes)", "min": 0})
    timeout: float = field(default=60.0, metadata={"help": "network timeout in seconds", "above": 0, "unit": "seconds"})
    max_expanded: int = field(
        default=MAX_EXPANDED,
        metadata={
            "help": "refuse an archive that expands to more than this (bytes, or with a k, M or G suffix; "
            f"default 64G; an archive may also expand to at most {EXPAND_RATIO} times its own size)",
            "metavar": "SIZE",
            "parse": parse_size,
            "must": "a positive size, e.g. 64G",
            "min": 1,
        },
    )
    # seconds before the first retry, doubled for each further one (tests set 0)
    backoff: float = field(default=2.0, metadata={"cli": False, "flag": "backoff", "min": 0, "unit": "seconds"})

    def validate(self) -> None:
        """T12kError naming the option for a value out of its field's range (`check_fields`)."""
        check_fields(self)


@dataclass(frozen=True)
class PublishedFile:
    name: str
    md5: str

    @property
    def is_archive(self) -> bool:
        return self.name.endswith(".tar.gz")

    @property
    def target(self) -> str:
        """What the file becomes in the data folder: the store folder, or the file itself."""
        return self.name.removesuffix(".tar.gz") if self.is_archive else self.name


PUBLISHED_FILES = (
    PublishedFile("mtgc.csv", "d730579950345b2c0f9c4a9779bd9d44"),
    PublishedFile("trailers_i_shufflenet_fpc24.zarr.tar.gz", "15eac938134322e8e6c611f844ef3d32"),
    PublishedFile("trailers_k_shufflenet_fps24_fpc24.zarr.tar.gz", "cbf2016ad294c50b75baaf8e25c7aaaf"),
    PublishedFile("trailers_i_resnet_fpc24.zarr.tar.gz", "ed284507adcd04d067ba48a1ceab1b3d"),
    PublishedFile("trailers_k_r2plus1d_fps24_fpc24.zarr.tar.gz", "90897c9508790e67aab3c3b8c69ce668"),
    PublishedFile("trailers_i_swin_fpc24.zarr.tar.gz", "d544acb04179bc723d46c88adfa43aa0"),
    PublishedFile("trailers_ik_swin_fps24_fpc24.zarr.tar.gz", "e4f57101c465b6426bc3d9909ba36bdb"),
)


def select_files(only: list[str] | None, catalog: Sequence[PublishedFile] = PUBLISHED_FILES) -> list[PublishedFile]:
    """The catalog entries named in `only` (file, store or short names; None: all)."""
    if not only:
        return list(catalog)
    out = []
    for want in only:
        w = want.strip()
        hits = [f for f in catalog if w in (f.name, f.target, f.target.removesuffix(".zarr"))]
        if not hits:
            raise T12kError(f"{w!r} is not a published file; choose from {', '.join(f.target for f in catalog)}")
        out += [h for h in hits if h not in out]
    return out


def file_url(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/{quote(name)}?download=1"


# ---- downloading --------------------------------------------------------------------------


def _open(url: str, have: int, timeout: float) -> Any:
    """The response to a GET of `url` from byte `have` on; None when nothing is left to fetch.
    Connection trouble and HTTP 5xx/429 are Transient; other HTTP errors a T12kError."""
    headers = {"User-Agent": f"t12k/{t12k.__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after what we have: the part is complete
            return None
        if exc.code >= 500 or exc.code == 429:
            raise Transient(f"HTTP {exc.code}") from None
        raise T12kError(
            f"{url} answered HTTP {exc.code} {exc.reason}; check --base-url (or the network) and run again"
        ) from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        raise Transient(str(getattr(exc, "reason", exc))) from None


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _part_size(part: Path, log: Callable[[str], None]) -> int:
    """The bytes of `part` to resume from (0: none). A link there was not made by t12k (it
    never makes one): it is removed, not followed, and the download starts afresh."""
    try:
        st = os.lstat(part)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(st.st_mode):
        part.unlink()
        log(f"{part} was a symbolic link, which t12k never makes; removed the link (not what it points to)")
        return 0
    if not stat.S_ISREG(st.st_mode):
        raise T12kError(f"{part} is not a regular file; remove it and run again")
    return st.st_size


def _open_nofollow(path: Path, flags: int, mode: str) -> io.BufferedIOBase:
    """An open file object of `path` that is a regular file reached without following a link
    (one planted after `_part_size` looked makes open fail, not write through it)."""
    # O_NONBLOCK: a FIFO planted there must not block the open; it does nothing to regular files.
    try:
        fd = os.open(path, flags | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise T12kError(f"{path} is a symbolic link, which t12k never makes; remove it and run again") from None
        raise T12kError(f"cannot open {path} ({exc.strerror}); check the folder's permissions") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise T12kError(f"{path} is not a regular file; remove it and run again")
    return cast(io.BufferedIOBase, os.fdopen(fd, mode))  # a binary mode: buffered


def _fetch_once(url: str, part: Path, timeout: float, bar: tqdm, log: Callable[[str], None]) -> None:
    """One attempt: append the rest of `url` to `part` (or rewrite it when the server sends
    the whole file). A transfer that stops early is Transient; what arrived is kept."""
    have = _part_size(part, log)
    resp = _open(url, have, timeout)
    if resp is None:
        return
    with resp:
        if have and resp.status == 206:
            start = resp.headers.get("Content-Range", "")
            if not start.startswith(f"bytes {have}-"):
                raise Transient(f"unexpected Content-Range {start!r}")
            flags, mode = os.O_WRONLY | os.O_CREAT | os.O_APPEND, "ab"
        else:  # 200: the server sends the whole file (it ignored or did not get a range)
            flags, mode, have = os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "wb", 0
        length = resp.headers.get("Content-Length")
        if bar is not None:
            bar.reset(total=have + int(length) if length else None)
            bar.update(have)
        with _open_nofollow(part, flags, mode) as fh:
            try:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    if bar is not None:
                        bar.update(len(block))
            except (OSError, HTTPException) as exc:  # connection dropped: keep what arrived
                raise Transient(str(exc)) from None
            fh.flush()
            size = os.fstat(fh.fileno()).st_size
        if length is not None and size < have + int(length):
            raise Transient("the connection closed early")


def _md5(path: Path) -> tuple[str, int]:
    """(md5, size) of the regular file at `path`, read without following a link."""
    with _open_nofollow(path, os.O_RDONLY, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest(), os.fstat(fh.fileno()).st_size


def download_file(
    url: str,
    dest: Path,
    md5: str,
    *,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> int:
    """Download `url` to `dest` through ``dest.part`` (resumed when present), check its md5.
    Returns the bytes the file has."""
    part = dest.with_name(dest.name + ".part")
    bar = tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, leave=False, disable=not progress)
    try:
        RetryPolicy(retries=retries, backoff=backoff).call(lambda attempt: _fetch_once(url, part, timeout, bar, log))
    except Transient as exc:
        raise T12kError(
            f"downloading {url} failed {retries + 1} times ({exc}); check the network "
            f"and run the same command again (it resumes from {part.name})"
        ) from None
    finally:
        bar.close()
    got, size = _md5(part)
    if got != md5:
        part.unlink()
        raise T12kError(
            f"{dest.name} from {url} has md5 {got} ({size} bytes), expected {md5}; the download is "
            "corrupt or not the published file and was deleted; run again (check --base-url)"
        )
    os.replace(part, dest)  # a rename: a link at `dest` is replaced, not written through
    return size


# ---- safe extraction -------------------------------------------------------------------------

_NOT_PUBLISHED = "(the archive is not the published one)"
_STAGING = f".extracting{TMP_MARK}"  # the name's end of a staging folder (its start: .{store}.)


def _refusal(archive: Path, member: tarfile.TarInfo, what: str, why: str = _NOT_PUBLISHED) -> T12kError:
    return T12kError(f"{archive.name} holds {member.name!r}, {what}; refusing to extract it {why}")


def _size_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


class _Members:
    """tarfile's extraction filter: the ``data`` filter, refusing links too, with T12kErrors
    naming the archive and the member; members outside `only` (a top-level name) skipped and
    listed in `skipped`; the files' total size kept within `max_bytes`."""

    def __init__(self, archive: Path, only: str | None, max_bytes: int | None):
        self.archive, self.only, self.max_bytes = archive, only, max_bytes
        self.skipped: list[str] = []
        self.total = 0

    def _safe(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        archive, name = self.archive, member.name
        if member.issym() or member.islnk():
            raise _refusal(archive, member, "a link", "(the published stores hold only files and folders)")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):  # data_filter strips a leading /
            raise _refusal(archive, member, "an absolute path")
        try:
            return tarfile.data_filter(member, dest)
        except (tarfile.OutsideDestinationError, tarfile.AbsolutePathError):
            raise _refusal(archive, member, "which leaves the target folder") from None
        except tarfile.SpecialFileError:
            raise _refusal(
                archive, member, "a special file", "(the published stores hold only files and folders)"
            ) from None
        except tarfile.FilterError as exc:
            raise _refusal(archive, member, f"which is not safe to extract ({exc})") from None

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        kept = self._safe(member, dest)
        top = posixpath.normpath(kept.name).split("/")[0]  # 'store/../x' is x, a sibling of the store
        if top in (".", ""):  # the archive's own root folder
            return None
        if self.only is not None and top != self.only:
            self.skipped.append(member.name)
            return None
        if kept.isreg():
            self.total += kept.size
            if self.max_bytes is not None and self.total > self.max_bytes:
                raise T12kError(
                    f"{self.archive.name} expands to more than {_size_text(self.max_bytes)}, the most an archive of "
                    f"{_size_text(self.archive.stat().st_size)} may (--max-expanded, and {EXPAND_RATIO} times its "
                    "size); refusing it as a tar bomb (not the published archive); nothing was kept"
                )
        return kept


def expansion_cap(archive: Path, max_expanded: int = MAX_EXPANDED) -> int:
    """The most bytes `archive` may expand to: EXPAND_RATIO times its size (at least
    EXPAND_FLOOR), and at most `max_expanded`."""
    return min(int(max_expanded), max(EXPAND_RATIO * archive.stat().st_size, EXPAND_FLOOR))


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    only: str | None = None,
    max_bytes: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Extract a tar(.gz) into `dest` (which must be empty or absent), refusing links, special
    files and paths that are absolute or leave `dest`. With `only`, members outside that
    top-level folder are skipped (and `log` says which); with `max_bytes`, an archive whose
    files add up to more is refused. On any refusal the partial extraction is removed.
    Returns the top-level names."""
    dest.mkdir(parents=True, exist_ok=True)
    members = _Members(archive, only, max_bytes)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise T12kError(f"{archive.name} is not a readable tar.gz ({exc}); delete it and run again") from None
    except T12kError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    if members.skipped and log is not None:
        n = len(members.skipped)
        names = ", ".join(members.skipped[:5]) + (f" and {n - 5} more" if n > 5 else "")
        log(f"{archive.name}: skipped {n} member(s) outside {only}/ (not part of the store): {names}")
    return sorted(p.name for p in dest.iterdir())


def _remove(path: Path) -> None:
    """Remove a file, a folder or a link (the link itself, never what it points to)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def _remove_staging(f: PublishedFile, out: Path) -> None:
    """Remove what interrupted extractions of `f` left: staging folders (links among them are
    unlinked, never followed)."""
    old = f".{f.target}.extracting"  # the fixed name earlier versions used
    for p in out.iterdir():
        if p.name == old or (p.name.startswith(f".{f.target}.") and p.name.endswith(_STAGING)):
            _remove(p)


def _install_archive(
    archive: Path,
    f: PublishedFile,
    out: Path,
    *,
    max_expanded: int = MAX_EXPANDED,
    log: Callable[[str], None] | None = None,
) -> None:
    """Extract the store of `archive` into a fresh staging folder in `out` and move it into place."""
    out.mkdir(parents=True, exist_ok=True)
    _remove_staging(f, out)
    # A new folder with a name nobody could guess: nothing planted in `out` can stand in for it.
    staging = Path(tempfile.mkdtemp(prefix=f".{f.target}.", suffix=_STAGING, dir=out))
    try:
        top = safe_extract(archive, staging, only=f.target, max_bytes=expansion_cap(archive, max_expanded), log=log)
        if f.target not in top:
            raise T12kError(
                f"{archive.name} does not contain {f.target} (it holds nothing under that folder); "
                "it is not the published archive"
            )
        dst = out / f.target
        if dst.is_symlink() or dst.exists():
            _remove(dst)
        os.replace(staging / f.target, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---- the command -------------------------------------------------------------------------------


def _in_place(f: PublishedFile, out: Path, log: Callable[[str], None]) -> bool:
    """True when `f` is already in `out`: its store folder, or the file with the published md5."""
    target = out / f.target
    if f.is_archive:
        return target.is_dir()
    if not target.is_file():
        return False
    if file_digest(target, "md5") == f.md5:
        return True
    log(f"{target} does not have the published md5; fetching it again")
    return False


def _fetch_and_install(
    f: PublishedFile, out: Path, cfg: DownloadConfig, progress: bool, log: Callable[[str], None]
) -> int:
    """Download `f` (unless a verified archive was kept) and unpack it; the bytes downloaded."""
    dest, url, fetched = out / f.name, file_url(cfg.base_url, f.name), 0
    if not (f.is_archive and dest.is_file() and file_digest(dest, "md5") == f.md5):  # a kept, verified archive
        log(f"fetching {url}")
        fetched = download_file(
            url,
            dest,
            f.md5,
            retries=cfg.retries,
            timeout=cfg.timeout,
            backoff=cfg.backoff,
            progress=progress,
            log=log,
        )
    if f.is_archive:
        log(f"extracting {dest.name}")
        _install_archive(dest, f, out, max_expanded=cfg.max_expanded, log=log)
        if not cfg.keep_archives:
            dest.unlink()
    return fetched


def download_published(
    out_dir: str | os.PathLike = "trailers12k",
    config: DownloadConfig | None = None,
    *,
    only: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    catalog: Sequence[PublishedFile] = PUBLISHED_FILES,
    **settings: Any,
) -> RunSummary:
    """Fetch, verify and unpack the published files into `out_dir` (skipping what is there).

    `settings` override fields of `config`. The summary's `done` are the files fetched,
    `skipped` those already present, and its totals the megabytes downloaded.
    """
    cfg = dataclasses.replace(config or DownloadConfig(), **settings)
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = RunSummary("download-reps", words=("fetched", "already present"), notes=[f"data in {out}"])
    t0, fetched = time.time(), 0
    for f in select_files(only, catalog):
        if _in_place(f, out, log):
            summary.skipped.append(f.target)
            continue
        fetched += _fetch_and_install(f, out, cfg, progress, log)
        summary.done.append(f.target)
    summary.seconds = time.time() - t0
    summary.totals = {"downloaded": f"{fetched / 1e6:.1f} MB"}
    return summary
