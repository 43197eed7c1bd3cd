"""The published Trailers12k data: `mtgc.csv` and the six feature stores, from Zenodo.

Zenodo record 5716410 holds ``mtgc.csv`` and one ``.zarr.tar.gz`` per store; the names and
md5 checksums below are the ones the reference trainer's ``files.py`` lists. For each file:

* download to ``{name}.part``, resuming a partial file with an HTTP ``Range`` request (a
  server that ignores the range gets the file from the start), retrying network errors
  from where the transfer stopped (the project's `RetryPolicy`);
* verify the md5; a mismatch deletes the part and raises (nothing half-checked is kept);
* extract a tarball into a staging folder with `tarfile`'s ``data`` filter, which refuses
  absolute paths, paths that leave the target (``..``) and special files, and, beyond it,
  any link (the published stores hold only files and folders); then move the store into
  place; the archive is removed unless asked to keep it.

A store folder or an ``mtgc.csv`` with the right md5 already present is skipped, so the
command can be re-run after an interruption. `base_url` is overridable (mirrors, tests).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from urllib.parse import quote

from tqdm.auto import tqdm

import t12k
from t12k.errors import T12kError
from t12k.pipeline.retry import RetryPolicy, Transient
from t12k.pipeline.runner import RunSummary
from t12k.storage.checksum import file_digest

ZENODO_RECORD = 5716410
BASE_URL = f"https://zenodo.org/record/{ZENODO_RECORD}/files"
CHUNK = 1 << 20


@dataclass
class DownloadConfig:
    """How `download-reps` fetches the published files."""

    base_url: str = field(
        default=BASE_URL,
        metadata={"help": "where the files are (a mirror); each is fetched from BASE_URL/NAME?download=1"},
    )
    keep_archives: bool = field(default=False, metadata={"help": "keep the .tar.gz files after extracting them"})
    retries: int = field(default=5, metadata={"help": "retries of a failed transfer (each resumes)"})
    timeout: float = field(default=60.0, metadata={"help": "network timeout in seconds"})
    # seconds before the first retry, doubled for each further one (tests set 0)
    backoff: float = field(default=2.0, metadata={"cli": False})

    def validate(self) -> None:
        if self.retries < 0:
            raise T12kError(f"--retries {self.retries}: give 0 or more retries")
        if not self.timeout > 0:
            raise T12kError(f"--timeout {self.timeout}: give a positive number of seconds")
        if self.backoff < 0:
            raise T12kError(f"backoff {self.backoff}: give 0 or more seconds")


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


def select_files(only: list[str] | None, catalog=PUBLISHED_FILES) -> list[PublishedFile]:
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


def _open(url: str, have: int, timeout: float):
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


def _fetch_once(url: str, part: Path, timeout: float, bar) -> None:
    """One attempt: append the rest of `url` to `part` (or rewrite it when the server sends
    the whole file). A transfer that stops early is Transient; what arrived is kept."""
    have = part.stat().st_size if part.exists() else 0
    resp = _open(url, have, timeout)
    if resp is None:
        return
    with resp:
        if have and resp.status == 206:
            start = resp.headers.get("Content-Range", "")
            if not start.startswith(f"bytes {have}-"):
                raise Transient(f"unexpected Content-Range {start!r}")
            mode = "ab"
        else:  # 200: the server sends the whole file (it ignored or did not get a range)
            mode, have = "wb", 0
        length = resp.headers.get("Content-Length")
        if bar is not None:
            bar.reset(total=have + int(length) if length else None)
            bar.update(have)
        try:
            with open(part, mode) as fh:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    if bar is not None:
                        bar.update(len(block))
        except (OSError, HTTPException) as exc:  # connection dropped: keep what arrived
            raise Transient(str(exc)) from None
        if length is not None and part.stat().st_size < have + int(length):
            raise Transient("the connection closed early")


def download_file(
    url: str,
    dest: Path,
    md5: str,
    *,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
) -> int:
    """Download `url` to `dest` through ``dest.part`` (resumed when present), check its md5.
    Returns the bytes the file has."""
    part = dest.with_name(dest.name + ".part")
    bar = tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, leave=False, disable=not progress)
    try:
        RetryPolicy(retries=retries, backoff=backoff).call(lambda attempt: _fetch_once(url, part, timeout, bar))
    except Transient as exc:
        raise T12kError(
            f"downloading {url} failed {retries + 1} times ({exc}); check the network "
            f"and run the same command again (it resumes from {part.name})"
        ) from None
    finally:
        bar.close()
    got = file_digest(part, "md5")
    if got != md5:
        size = part.stat().st_size
        part.unlink()
        raise T12kError(
            f"{dest.name} from {url} has md5 {got} ({size} bytes), expected {md5}; the download is "
            "corrupt or not the published file and was deleted; run again (check --base-url)"
        )
    os.replace(part, dest)
    return dest.stat().st_size


# ---- safe extraction -------------------------------------------------------------------------

_NOT_PUBLISHED = "(the archive is not the published one)"


def _refusal(archive: Path, member: tarfile.TarInfo, what: str, why: str = _NOT_PUBLISHED) -> T12kError:
    return T12kError(f"{archive.name} holds {member.name!r}, {what}; refusing to extract it {why}")


def _files_and_folders_only(archive: Path) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """tarfile's ``data`` filter, refusing links too, with T12kErrors naming `archive` and the member."""

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        name = member.name
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

    return keep


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Extract a tar(.gz) into `dest` (which must be empty or absent), refusing links, special
    files and paths that are absolute or leave `dest`. On any refusal the partial extraction is
    removed. Returns the top-level names."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter=_files_and_folders_only(archive))
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise T12kError(f"{archive.name} is not a readable tar.gz ({exc}); delete it and run again") from None
    except T12kError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return sorted(p.name for p in dest.iterdir())


def _install_archive(archive: Path, f: PublishedFile, out: Path) -> None:
    staging = out / f".{f.target}.extracting"
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted extraction left
    top = safe_extract(archive, staging)
    if f.target not in top:
        shutil.rmtree(staging, ignore_errors=True)
        raise T12kError(
            f"{archive.name} does not contain {f.target} (it holds {', '.join(top) or 'nothing'}); "
            "it is not the published archive"
        )
    for name in top:
        dst = out / name
        if dst.exists():
            if dst.is_dir():
                shutil.rmtree(dst)
            else:
                dst.unlink()
        os.replace(staging / name, dst)
    staging.rmdir()


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
            url, dest, f.md5, retries=cfg.retries, timeout=cfg.timeout, backoff=cfg.backoff, progress=progress
        )
    if f.is_archive:
        log(f"extracting {dest.name}")
        _install_archive(dest, f, out)
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
    catalog=PUBLISHED_FILES,
    **settings,
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
