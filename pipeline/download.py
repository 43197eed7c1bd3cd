"""The published Trailers12k data: `mtgc.csv` and the six feature stores, from Zenodo.

Zenodo record 5716410 holds ``mtgc.csv`` and one ``.zarr.tar.gz`` per store; the names and
md5 checksums below are the ones the reference trainer's ``files.py`` lists. For each file:

* download to ``{name}.part``, resuming a partial file with an HTTP ``Range`` request (a
  server that ignores the range gets the file from the start), retrying network errors
  from where the transfer stopped;
* verify the md5; a mismatch deletes the part and raises (nothing half-checked is kept);
* extract a tarball into a staging folder, member by member, refusing absolute paths,
  paths that leave the target (``..``), links and anything but regular files and folders,
  then move the store into place; the archive is removed unless asked to keep it.

A store folder or an ``mtgc.csv`` with the right md5 already present is skipped, so the
command can be re-run after an interruption. `base_url` is overridable (mirrors, tests).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from tqdm.auto import tqdm

import t12k
from t12k.errors import T12kError
from t12k.storage.checksum import file_digest

ZENODO_RECORD = 5716410
BASE_URL = f"https://zenodo.org/record/{ZENODO_RECORD}/files"
CHUNK = 1 << 20


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


@dataclass
class DownloadSummary:
    out_dir: Path
    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def text(self) -> str:
        mb = self.bytes / 1e6
        return (
            f"download-reps: {len(self.fetched)} fetched ({mb:.1f} MB in {self.seconds:.0f} s), "
            f"{len(self.present)} already present; data in {self.out_dir}"
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


class _Retry(Exception):
    """A transient failure: try again from the current size of the part file."""


def _fetch_once(url: str, part: Path, timeout: float, bar) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"t12k/{t12k.__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after what we have: the part is complete
            return
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code}") from None
        raise T12kError(
            f"{url} answered HTTP {exc.code} {exc.reason}; check --base-url (or the network) and run again"
        ) from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        raise _Retry(str(getattr(exc, "reason", exc))) from None
    with resp:
        if have and resp.status == 206:
            start = resp.headers.get("Content-Range", "")
            if not start.startswith(f"bytes {have}-"):
                raise _Retry(f"unexpected Content-Range {start!r}")
            mode = "ab"
        else:  # 200: the server sends the whole file (it ignored or did not get a range)
            mode, have = "wb", 0
        length = resp.headers.get("Content-Length")
        if bar is not None:
            bar.reset(total=have + int(length) if length else None)
            bar.update(have)
        try:
            with open(part, mode) as fh:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    if bar is not None:
                        bar.update(len(block))
        except (OSError, HTTPException) as exc:  # connection dropped: keep what arrived
            raise _Retry(str(exc)) from None
        if length is not None and part.stat().st_size < have + int(length):
            raise _Retry("the connection closed early")


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
        for attempt in range(retries + 1):
            try:
                _fetch_once(url, part, timeout, bar)
                break
            except _Retry as exc:
                if attempt == retries:
                    raise T12kError(
                        f"downloading {url} failed {retries + 1} times ({exc}); check the network "
                        f"and run the same command again (it resumes from {part.name})"
                    ) from None
                time.sleep(backoff * (attempt + 1))
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


def _member_path(name: str, archive: Path) -> PurePosixPath | None:
    """The relative path of a member, None for the archive root; T12kError for unsafe names."""
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise T12kError(
            f"{archive.name} holds {name!r}, an absolute path; refusing to extract it "
            "(the archive is not the published one)"
        )
    parts = [x for x in p.parts if x not in ("", ".")]
    if ".." in parts:
        raise T12kError(
            f"{archive.name} holds {name!r}, which leaves the target folder; refusing to extract it "
            "(the archive is not the published one)"
        )
    return PurePosixPath(*parts) if parts else None


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Extract a tar(.gz) into `dest` (which must be empty or absent), one member at a time,
    after checking it: regular files and folders only, relative paths inside `dest`. On any
    refusal the partial extraction is removed. Returns the top-level names."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                rel = _member_path(m.name, archive)
                if not (m.isfile() or m.isdir()):
                    kind = "a link" if (m.issym() or m.islnk()) else "a special file"
                    raise T12kError(
                        f"{archive.name} holds {m.name!r}, {kind}; refusing to extract it "
                        "(the published stores hold only files and folders)"
                    )
                if rel is None:
                    continue
                target = root.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(root):  # e.g. through a folder that is a link
                    raise T12kError(f"{archive.name} holds {m.name!r}, which leaves the target folder; refusing")
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(target, "wb") as fh:
                    shutil.copyfileobj(src, fh, CHUNK)
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


def download_published(
    out_dir: str | os.PathLike = "trailers12k",
    *,
    only: list[str] | None = None,
    base_url: str = BASE_URL,
    keep_archives: bool = False,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
    log: Callable[[str], None] = print,
    catalog=PUBLISHED_FILES,
) -> DownloadSummary:
    """Fetch, verify and unpack the published files into `out_dir` (skipping what is there)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = DownloadSummary(out)
    t0 = time.time()
    for f in select_files(only, catalog):
        target = out / f.target
        if f.is_archive and target.is_dir():
            summary.present.append(f.target)
            continue
        if not f.is_archive and target.is_file():
            if file_digest(target, "md5") == f.md5:
                summary.present.append(f.target)
                continue
            log(f"{target} does not have the published md5; fetching it again")
        dest = out / f.name
        url = file_url(base_url, f.name)
        if not (f.is_archive and dest.is_file() and file_digest(dest, "md5") == f.md5):  # a kept, verified archive
            log(f"fetching {url}")
            summary.bytes += download_file(
                url, dest, f.md5, retries=retries, timeout=timeout, backoff=backoff, progress=progress
            )
        if f.is_archive:
            log(f"extracting {dest.name}")
            _install_archive(dest, f, out)
            if not keep_archives:
                dest.unlink()
        summary.fetched.append(f.target)
    summary.seconds = time.time() - t0
    return summary
