"""Zarr groups of per-trailer arrays, written whole or not at all, checked when read.

A store is a zarr group (format 2 by default, 3 on request). Each trailer's result is one
array named by its id; companion arrays (clip boundaries, per-frame predictions) live in
named sub-groups beside them and never change the per-id arrays' names or shapes, so the
published layout (`z.attrs['num_features']`, `z[mid][start:end]`) holds.

Atomicity: an array is first written to a staging folder of its writer beside the store
(`.{store}.staging/{uuid}`), then moved in with renames. The per-id array is moved last, so
its presence means "this trailer is written"; companions of an unfinished trailer are
replaced on the next run.

Integrity: each array records, in its own attributes (which move with it), the checksum of
its data and its number of chunk files (`ArrayChecksum`); every read checks them (see
`fastread`), `verify` checks a trailer and `is_done` means "present and sound". Stores
written before checksums (and the published ones) still read; there decoding, the presence of
every chunk file of a per-id array (its shape says which exist) and the contract are checked.
The contract of a kind's per-id arrays (dtype, shape, values: `_contract_problem`) is checked
by every read of one, with checksums or without.

Many writers: commits to one store (and its creation) are serialized by a lock file in the
staging root, on one machine or on several sharing a POSIX file system. A commit replacing
an array renames the old one into the writer's staging folder, the new one in, and deletes
the old one afterwards: the last commit wins whole, and a reader, which checks what it
reads and reads again when it does not check out, never sees a mix or a part. Staging
folders of killed runs are removed when the store is next opened for writing.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Literal, Self

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from t12k.errors import T12kError, describe
from t12k.storage.fastread import ATTEMPTS, ChunkedArray, Damaged, ZarrFormat, open_array, read_whole
from t12k.storage.folders import unwritable, writable_folder
from t12k.storage.locks import ROOT_LOCK, Staging, clean_stale, locked

ZARR_FORMATS: tuple[ZarrFormat, ...] = (2, 3)  # format 2 (the published stores) by default, 3 on request
Mode = Literal["r", "w", "a"]
MAX_ID = 200  # characters of a trailer id (a file name: {id}.mp4, .{id}.tmp... stay under 255 bytes)
_ID_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ID - 1}}}$")


def check_id(mid: str, reserved: tuple[str, ...] = ()) -> str:
    """Return `mid` if it is a safe store/file name, else raise T12kError."""
    mid = str(mid)
    if not _ID_RE.match(mid) or ".." in mid or mid in reserved:
        shown = repr(mid) if len(mid) <= 60 else f"{mid[:40]!r}... ({len(mid)} characters)"
        raise T12kError(
            f"invalid trailer id {shown}: ids have 1 to {MAX_ID} characters, "
            "start with a letter or digit and use only letters, digits, '.', '_' and '-' (no '/', no '..'"
            + (f", not one of {', '.join(reserved)}" if reserved else "")
            + "); rename it in your list"
        )
    return mid


def _compressor(zarr_format: ZarrFormat) -> numcodecs.Blosc | BloscCodec:
    """Blosc zstd level 5 with byte shuffle, in the spelling of each zarr format."""
    if zarr_format == 2:
        return numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


def _write_array(
    path: Path, data: np.ndarray, chunk_rows: int, zarr_format: ZarrFormat, companions: tuple[str, ...] = ()
) -> None:
    """Write `data` at `path`, then record in its attributes the checksum of its chunk files
    (and the companions committed with it). Every chunk file is written, those of zeros too,
    so that a missing one is damage."""
    chunks = (max(1, min(chunk_rows, data.shape[0] or 1)),) + tuple(data.shape[1:])
    arr = zarr.create_array(
        store=str(path),
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        compressors=_compressor(zarr_format),
        zarr_format=zarr_format,
        config={"write_empty_chunks": True},
        overwrite=True,
    )
    rows = chunks[0]
    for start in range(0, data.shape[0] if data.size else 0, rows):
        # a chunk at a time: a failed write (a full disk) leaves no write of another chunk
        # pending in zarr's event loop, which would print "Task was destroyed but it is pending!"
        arr[start : start + rows] = data[start : start + rows]
    written = open_array(path, zarr_format)
    if not isinstance(written, ChunkedArray):  # t12k's layout is always one fastread decodes
        raise RuntimeError(f"{path}: written in a layout t12k cannot check")
    arr.attrs.update(written.files_checksum(companions).attrs())


def _open_group(path: Path, mode: Mode, zarr_format: ZarrFormat | None = None) -> zarr.Group:
    if zarr_format is None:
        return zarr.open_group(str(path), mode=mode)
    return zarr.open_group(str(path), mode=mode, zarr_format=zarr_format)


def _checked_format(zarr_format: int) -> ZarrFormat:
    if zarr_format == 2:
        return 2
    if zarr_format == 3:
        return 3
    raise T12kError(f"zarr format {zarr_format} is not supported; use 2 (default) or 3")


def _t12k_attrs(group: zarr.Group) -> dict[str, Any]:
    """attrs['t12k'] (how the store was made) of a group, {} when it has none."""
    value = group.attrs.get("t12k")
    return dict(value) if isinstance(value, dict) else {}


def _zarr_format_of(path: Path) -> ZarrFormat | None:
    if (path / "zarr.json").is_file():
        return 3
    if (path / ".zgroup").is_file():
        return 2
    return None


def _is_array_dir(path: str | os.PathLike[str]) -> bool:
    p = os.fspath(path)  # os.path, not pathlib: load_table asks this of every id
    return os.path.isfile(os.path.join(p, ".zarray")) or os.path.isfile(os.path.join(p, "zarr.json"))


class ArrayStore:
    """A zarr group holding one array per trailer id plus named companion groups.

    `kind` names what the store holds (``features`` or ``shots``) and is kept in the attrs
    under ``t12k.kind``; `settings` (how the store was made) are kept under ``t12k`` and
    must match when an existing store is opened for appending. `redo` says how a damaged
    trailer is made again.
    """

    companions: tuple[str, ...] = ()
    kind: str = ""
    redo: str = "re-run the stage that wrote it"

    def __init__(self, path: str | os.PathLike[str], group: zarr.Group, zarr_format: ZarrFormat, writable: bool):
        self.path = Path(path)
        self._group = group
        self.zarr_format = zarr_format
        self.writable = writable

    # ---- opening -----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open an existing store for reading; a clear error if it is missing or not a store."""
        p = Path(path)
        if not p.exists():
            raise T12kError(f"store {p} does not exist; create it first (see `t12k --help`) or fix the path")
        fmt = _zarr_format_of(p)
        if fmt is None:
            if _holds_arrays(p):  # a store that lost its group metadata
                raise _unopenable(p, None)
            raise T12kError(f"{p} is not a zarr group (no .zgroup or zarr.json); point to a {cls.kind} store")
        try:
            group = _open_group(p, "r")
        except Exception as exc:  # corrupt metadata
            raise _unopenable(p, exc) from None
        store = cls(p, group, fmt, writable=False)
        store._check_attrs()
        store._validate()
        return store

    @classmethod
    def create_or_append(
        cls,
        path: str | os.PathLike[str],
        settings: dict[str, Any],
        attrs: dict[str, Any] | None = None,
        zarr_format: int = 2,
        info: dict[str, Any] | None = None,
    ) -> Self:
        """Open `path` for appending, creating it if needed.

        An existing store must have been made with the same `settings`; otherwise appending
        would mix incompatible results, and a T12kError names the differences. `info` (the
        t12k version, say) is recorded under attrs['t12k'] at creation and never compared.
        Staging folders that killed runs left beside the store are removed.
        """
        p = Path(path)
        wanted = _checked_format(zarr_format)
        fix = "choose another output path"
        if p.is_dir():
            writable_folder(p, "store", fix)
        writable_folder(p.parent, "the folder of store", fix)
        root = _staging_root(p)
        try:
            root.mkdir(exist_ok=True)
        except OSError as exc:
            raise unwritable(p.parent, exc, "the folder of store", fix) from None
        # Two runs creating one store: one creates it (whole, with its attributes, by one
        # rename), the other appends to it.
        with Staging(root) as staging, locked(root / ROOT_LOCK):
            fmt = _zarr_format_of(p)
            if p.exists() and fmt is None and not (p.is_dir() and not any(p.iterdir())):
                if _holds_arrays(p):  # a store that lost its group metadata
                    raise _unopenable(p, None)
                raise T12kError(f"{p} exists and is not a zarr store; choose another output path")
            if fmt is None:
                made = {"kind": cls.kind, **settings, **(info or {}), "checksums": CHECKSUMS}
                _open_group(staging.path / "store", "w", wanted).attrs.update({**(attrs or {}), "t12k": made})
                os.rename(staging.path / "store", p)  # replaces an empty folder
            try:
                group = _open_group(p, "a")
            except Exception as exc:  # corrupt metadata
                raise _unopenable(p, exc) from None
            store = cls(p, group, fmt or wanted, writable=True)
            if fmt is not None:
                store._check_attrs()
                cls._check_append(p, group, settings, attrs or {})
                store._validate()
        clean_stale(root)
        return store

    @classmethod
    def _check_append(cls, p: Path, group: zarr.Group, settings: dict[str, Any], attrs: dict[str, Any]) -> None:
        """Raise T12kError unless the store at `p` holds this kind, made with these settings."""
        old = _t12k_attrs(group)
        if old.get("kind", cls.kind) != cls.kind:
            raise T12kError(f"{p} is a {old.get('kind')} store, not a {cls.kind} store; choose another path")
        diffs = [
            f"{k}: store has {old.get(k)!r}, this run uses {v!r}"
            for k, v in settings.items()
            if k in old and _norm(old.get(k)) != _norm(v)
        ]
        if diffs:
            raise T12kError(
                f"store {p} was made with other settings ({'; '.join(diffs)}); "
                "write to a new store path or re-run with the store's settings"
            )
        for key, value in attrs.items():
            if key in group.attrs and _norm(group.attrs[key]) != _norm(value):
                raise T12kError(
                    f"store {p} has {key}={group.attrs[key]!r}, this run gives {value!r}; write to a new store path"
                )

    def _check_attrs(self) -> None:
        """A store always has attributes; none means its attributes file was lost."""
        if not dict(self._group.attrs):
            raise _unopenable(self.path, None)

    def _validate(self) -> None:
        pass

    # ---- reading -------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    @property
    def settings(self) -> dict[str, Any]:
        return _t12k_attrs(self._group)

    @property
    def checksummed(self) -> bool:
        """Whether every array of the store records a checksum (stores made since checksums)."""
        return self.settings.get("checksums") == CHECKSUMS

    def ids(self) -> list[str]:
        """Ids whose per-id array is complete (present), sorted."""
        if not self.path.is_dir():
            return []
        return sorted(
            e.name
            for e in os.scandir(self.path)
            if e.is_dir() and e.name not in self.companions and _is_array_dir(e.path)
        )

    def __contains__(self, mid: str) -> bool:
        return _is_array_dir(os.path.join(self.path, str(mid))) and str(mid) not in self.companions

    def __len__(self) -> int:
        return len(self.ids())

    def read(self, mid: str, companion: str | None = None) -> np.ndarray:
        """One trailer's array (or its companion), checked (a per-id array against the store's
        contract too); T12kError if it is not there or damaged."""
        name = f"{companion}/{mid}" if companion else str(mid)
        path = self.path / name
        if (companion is None and str(mid) in self.companions) or not _present_soon(path):
            if companion is None:
                raise T12kError(f"id {mid!r} is not in store {self.path}; run the stage that makes it first")
            raise T12kError(f"{name!r} is not in store {self.path}")
        try:
            data, _ = read_whole(path, self.zarr_format, self.checksummed, require_chunks=companion is None)
        except Damaged as exc:
            raise self.damage_error(str(mid), exc.reason, companion) from None
        problem = None if companion else self._contract_problem(data, {})
        if problem:
            raise self.damage_error(str(mid), problem)
        return data

    # ---- checking ------------------------------------------------------------------------
    def verify(self, mid: str, attempts: int = ATTEMPTS) -> str | None:
        """Why trailer `mid` is not sound (missing, or an array of it missing a file, not decoding,
        not what was committed or breaking the store's contract), None when it is."""
        return self.check(mid, attempts)[0]

    def check(self, mid: str, attempts: int = ATTEMPTS) -> tuple[str | None, bool]:
        """`verify`'s reason and whether the trailer's array records a checksum (False: older or
        published stores, where decoding, chunk files and the contract are checked, not the bytes)."""
        if mid not in self:
            return "not in the store", False
        try:
            data, checksum = read_whole(
                self.path / mid, self.zarr_format, self.checksummed, attempts, require_chunks=True
            )
        except Damaged as exc:
            return exc.reason, self.checksummed or _records_checksum(self.path / mid, self.zarr_format)
        if checksum is not None:
            expected = checksum.companions
        else:
            expected = tuple(c for c in self.companions if _is_array_dir(self.path / c / mid))
        companions = {}
        for name in expected:
            if not _is_array_dir(self.path / name / mid):
                return f"{name}/{mid} is missing", True
            try:
                companions[name], _ = read_whole(self.path / name / mid, self.zarr_format, self.checksummed, attempts)
            except Damaged as exc:
                return f"{name}/{mid}: {exc.reason}", checksum is not None
        return self._contract_problem(data, companions), checksum is not None

    def is_done(self, mid: str) -> bool:
        """Whether trailer `mid` is in the store and sound (a stage redoes it otherwise)."""
        return mid in self and self.verify(mid) is None

    def _contract_problem(self, data: np.ndarray, companions: dict[str, np.ndarray]) -> str | None:
        """Why a per-id array of this store's kind cannot hold `data` (its dtype, shape or values),
        given its `companions` that were read (some or none); None when it can."""
        return None

    def damage_error(self, mid: str, reason: str, companion: str | None = None) -> T12kError:
        """The one-line error for a damaged trailer: the store, the trailer, what and the fix."""
        where = f"{companion}/{mid}: " if companion else ""
        return T12kError(
            f"store {self.path}, trailer {mid}: damaged ({where}{reason}); "
            f"run `t12k verify {self.path}` and {self.redo}"
        )

    def damaged(self, exc: Damaged) -> T12kError:
        """`damage_error` for a `Damaged` raised while reading an array of this store."""
        parts = Path(os.path.relpath(exc.path, self.path)).parts
        mid, companion = (parts[1], parts[0]) if len(parts) == 2 else (parts[-1], None)
        return self.damage_error(mid, exc.reason, companion)

    # ---- writing -------------------------------------------------------------------------
    def write(
        self, mid: str, data: np.ndarray, companions: dict[str, np.ndarray] | None = None, chunk_rows: int = 256
    ) -> None:
        """Write one trailer's array (and companions) so that it appears whole or not at all;
        when several processes write one trailer, the last commit wins whole."""
        if not self.writable:
            raise T12kError(f"store {self.path} is open read-only")
        mid = check_id(mid, self.companions)
        companions = companions or {}
        for name in companions:
            if name not in self.companions:
                raise ValueError(f"unknown companion {name!r}")
        root = _staging_root(self.path)
        with Staging(root) as staging:
            for name, arr in companions.items():
                _write_array(staging.path / name, np.ascontiguousarray(arr), 4096, self.zarr_format)
            data = np.ascontiguousarray(data)
            _write_array(staging.path / mid, data, chunk_rows, self.zarr_format, tuple(companions))
            with locked(root / ROOT_LOCK):
                for name in companions:
                    _ensure_subgroup(self.path / name, self.zarr_format)
                    _swap_in(staging.path / name, self.path / name / mid, staging.trash())
                _swap_in(staging.path / mid, self.path / mid, staging.trash())

    def delete(self, mid: str) -> None:
        """Remove a trailer (its per-id array first, then its companions)."""
        mid = check_id(mid, self.companions)
        root = _staging_root(self.path)
        with Staging(root) as staging, locked(root / ROOT_LOCK):
            for name in (mid, *(f"{c}/{mid}" for c in self.companions)):
                if os.path.lexists(self.path / name):
                    os.rename(self.path / name, staging.trash())


CHECKSUMS = "crc32c"  # attrs['t12k']['checksums'] of a store whose every array records one


def _holds_arrays(p: Path) -> bool:
    return p.is_dir() and any(e.is_dir() and _is_array_dir(e.path) for e in os.scandir(p))


def _unopenable(p: Path, exc: BaseException | None) -> T12kError:
    """The error for a store whose group does not open or has no attributes: what is wrong
    with its group metadata and the repair that keeps every trailer, or else why not."""
    from t12k.storage.repair import attrs_problem  # the repair builds on this module

    try:
        problem = attrs_problem(p)
    except T12kError as not_a_store:
        return not_a_store
    if problem:
        return T12kError(
            f"store {p}: {problem}; run `t12k verify --repair {p}` to rebuild its attributes from its "
            "arrays (its trailers stay as they are)"
        )
    return T12kError(f"cannot open store {p}: {describe(exc) if exc else 'no attributes'}; check its files")


def _staging_root(path: Path) -> Path:
    return path.parent / f".{path.name}.staging"


def _present_soon(path: Path) -> bool:
    """Whether the array at `path` is there, looking twice (a commit may be replacing it)."""
    for attempt in range(3):
        if _is_array_dir(path):
            return True
        time.sleep(0.01 * attempt)
    return False


def _records_checksum(path: Path, zarr_format: ZarrFormat) -> bool:
    try:
        return open_array(path, zarr_format).checksum is not None
    except (Damaged, OSError):
        return False


def _ensure_subgroup(path: Path, zarr_format: ZarrFormat) -> None:
    if _zarr_format_of(path) is None:
        _open_group(path, "w", zarr_format)


def _swap_in(src: Path, dst: Path, trash: Path) -> None:
    """Move `src` to `dst`, first moving an existing `dst` to `trash` (never deleted in place,
    so no reader or writer sees a half-deleted array). Call with the store's lock held."""
    if os.path.lexists(dst):
        os.rename(dst, trash)
    os.rename(src, dst)


def _norm(value: Any) -> Any:
    """Normalize attrs for comparison (tuples and lists both come back as lists)."""
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value
