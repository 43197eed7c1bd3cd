"""Zarr groups of per-trailer arrays, written whole or not at all.

A store is a zarr group (format 2 by default, 3 on request). Each trailer's result is one
array named by its id; companion arrays (clip boundaries, per-frame predictions) live in
named sub-groups beside them and never change the per-id arrays' names or shapes, so the
published layout (`z.attrs['num_features']`, `z[mid][start:end]`) holds.

Atomicity: an array is first written to a staging folder next to the store, then moved in
with one rename. The per-id array is moved last, so its presence means "this trailer is
done"; companions of an unfinished trailer are overwritten on the next run.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal, Self

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from t12k.errors import T12kError

ZarrFormat = Literal[2, 3]
ZARR_FORMATS: tuple[ZarrFormat, ...] = (2, 3)  # format 2 (the published stores) by default, 3 on request
Mode = Literal["r", "w", "a"]
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_id(mid: str, reserved: tuple[str, ...] = ()) -> str:
    """Return `mid` if it is a safe store/file name, else raise T12kError."""
    mid = str(mid)
    if not _ID_RE.match(mid) or ".." in mid or mid in reserved:
        raise T12kError(
            f"invalid trailer id {mid!r}: ids must start with a letter or digit and use only "
            f"letters, digits, '.', '_' and '-' (no '/', no '..'"
            + (f", not one of {', '.join(reserved)}" if reserved else "")
            + "); rename it in your list"
        )
    return mid


def _compressor(zarr_format: ZarrFormat) -> numcodecs.Blosc | BloscCodec:
    """Blosc zstd level 5 with byte shuffle, in the spelling of each zarr format."""
    if zarr_format == 2:
        return numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


def _write_array(path: Path, data: np.ndarray, chunk_rows: int, zarr_format: ZarrFormat) -> None:
    chunks = (max(1, min(chunk_rows, data.shape[0] or 1)),) + tuple(data.shape[1:])
    arr = zarr.create_array(
        store=str(path),
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        compressors=_compressor(zarr_format),
        zarr_format=zarr_format,
        overwrite=True,
    )
    if data.size:
        arr[...] = data


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
    must match when an existing store is opened for appending.
    """

    companions: tuple[str, ...] = ()
    kind: str = ""

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
            raise T12kError(f"{p} is not a zarr group (no .zgroup or zarr.json); point to a {cls.kind} store")
        try:
            group = _open_group(p, "r")
        except Exception as exc:  # corrupt metadata
            raise T12kError(f"cannot open store {p}: {exc}; re-create it") from exc
        store = cls(p, group, fmt, writable=False)
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
        """
        p = Path(path)
        wanted = _checked_format(zarr_format)
        fmt = _zarr_format_of(p)
        if p.exists() and fmt is None and not (p.is_dir() and not any(p.iterdir())):
            raise T12kError(f"{p} exists and is not a zarr store; choose another output path")
        if fmt is None:
            group = _open_group(p, "w", wanted)
            group.attrs.update({**(attrs or {}), "t12k": {"kind": cls.kind, **settings, **(info or {})}})
            return cls(p, group, wanted, writable=True)
        group = _open_group(p, "a")
        cls._check_append(p, group, settings, attrs or {})
        return cls(p, group, fmt, writable=True)

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

    def _validate(self) -> None:
        pass

    # ---- reading -------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    @property
    def settings(self) -> dict[str, Any]:
        return _t12k_attrs(self._group)

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
        name = f"{companion}/{mid}" if companion else str(mid)
        if companion is None and mid not in self:
            raise T12kError(f"id {mid!r} is not in store {self.path}; run the stage that makes it first")
        try:
            node = self._group[name]
            if not isinstance(node, zarr.Array):
                raise KeyError(name)
            return np.asarray(node[...])
        except KeyError as exc:
            raise T12kError(f"{name!r} is not in store {self.path}") from exc

    # ---- writing -------------------------------------------------------------------------
    def write(
        self, mid: str, data: np.ndarray, companions: dict[str, np.ndarray] | None = None, chunk_rows: int = 256
    ) -> None:
        """Write one trailer's array (and companions) so that it appears whole or not at all."""
        if not self.writable:
            raise T12kError(f"store {self.path} is open read-only")
        mid = check_id(mid, self.companions)
        staging = self.path.parent / f".{self.path.name}.staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            for name, arr in (companions or {}).items():
                if name not in self.companions:
                    raise ValueError(f"unknown companion {name!r}")
                _write_array(staging / name, np.ascontiguousarray(arr), 4096, self.zarr_format)
                _ensure_subgroup(self.path / name, self.zarr_format)
                _move_into(staging / name, self.path / name / mid)
            _write_array(staging / mid, np.ascontiguousarray(data), chunk_rows, self.zarr_format)
            _move_into(staging / mid, self.path / mid)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            try:
                staging.parent.rmdir()
            except OSError:
                pass

    def delete(self, mid: str) -> None:
        shutil.rmtree(self.path / mid, ignore_errors=True)


def _ensure_subgroup(path: Path, zarr_format: ZarrFormat) -> None:
    if _zarr_format_of(path) is None:
        _open_group(path, "w", zarr_format)


def _move_into(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def _norm(value: Any) -> Any:
    """Normalize attrs for comparison (tuples and lists both come back as lists)."""
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value
