"""Read whole zarr arrays at close to disk speed, straight into memory the caller owns.

The zarr API costs far more than the data: opening a group member parses its metadata
through several layers, and every read goes through an event loop. For a trainer that
reads thousands of small arrays once, this module reads each array's metadata (``.zarray``
or ``zarr.json``) itself and decodes the chunk files with numcodecs in a pool of threads
(Blosc releases the GIL), each chunk written into the caller's array without an extra copy
when it can be.

Only the layouts that t12k and the published Trailers12k stores write are read this way:
regular chunks, C or F order, plain numeric dtypes, no filters, and Blosc, Zstd, LZ4,
GZip, Zlib, BZ2 or LZMA compression (format 2) or ``bytes`` followed by Blosc, Zstd or
GZip (format 3). Anything else (an unknown codec, sharding, a filter, odd metadata) is read
with the zarr API, so no store becomes unreadable. As in zarr, a missing chunk file reads
as the array's fill value.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numcodecs
import numpy as np
import zarr

from t12k.storage.zarrstore import ZarrFormat

# numcodecs codec ids read without the zarr API (format 2 compressors, format 3 codec names).
V2_COMPRESSORS = frozenset({"blosc", "zstd", "lz4", "gzip", "zlib", "bz2", "lzma"})
V3_CODECS = frozenset({"blosc", "zstd", "gzip"})
V3_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}
)
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_BLOSC_HEADER = 16


class Unsupported(Exception):
    """The array's layout is not one this module reads itself (the zarr API reads it)."""


class StoredArray(Protocol):
    """One array of a store that can be read whole into a caller's array of its shape."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def read_into(self, out: np.ndarray) -> None: ...


@dataclass(frozen=True)
class ChunkedArray:
    """An array whose chunk files this module decodes itself.

    `codecs` are applied in order to decode a chunk file's bytes (the last one applied
    first on write); `key` gives a chunk's file name, relative to `path`, from its grid
    position.
    """

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    order: str
    fill_value: float | int | bool
    codecs: tuple[Any, ...]
    key: Callable[[tuple[int, ...]], str]

    def read_into(self, out: np.ndarray) -> None:
        """Decode every chunk into `out` (same shape; any dtype numpy can cast to)."""
        if out.shape != self.shape:
            raise ValueError(f"{self.path}: array has shape {self.shape}, target has {out.shape}")
        in_place = self._blosc_in_place(out)
        grid = [range(-(-s // c)) for s, c in zip(self.shape, self.chunks)]
        for index in itertools.product(*grid):
            region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, self.chunks, self.shape))
            try:
                data = read_file(f"{self.path}/{self.key(index)}")
            except FileNotFoundError:
                out[region] = self.fill_value
                continue
            target = out[region]
            if in_place and target.shape == self.chunks and _blosc_size(data) == target.nbytes:
                self.codecs[0].decode(data, out=target)  # a whole chunk, no copy
            else:
                crop = tuple(slice(0, r.stop - r.start) for r in region)
                out[region] = self._decode(data)[crop]

    def _decode(self, data: bytes) -> np.ndarray:
        buf: Any = data
        for codec in self.codecs:
            buf = codec.decode(buf)
        flat = np.frombuffer(buf, dtype=self.dtype)
        return flat.reshape(self.chunks, order="F" if self.order == "F" else "C")

    def _blosc_in_place(self, out: np.ndarray) -> bool:
        """Whether whole chunks can be Blosc-decoded straight into `out` (rows of C-order
        chunks spanning every other dimension are contiguous in a C-contiguous `out`)."""
        return (
            len(self.codecs) == 1
            and isinstance(self.codecs[0], numcodecs.Blosc)
            and out.dtype == self.dtype
            and out.flags.c_contiguous
            and (self.order == "C" or out.ndim == 1)
            and self.chunks[1:] == self.shape[1:]
        )


def _blosc_size(data: bytes) -> int:
    """The decoded size a Blosc buffer's header gives (bytes 4-7), -1 if it has no header."""
    return int.from_bytes(data[4:8], "little") if len(data) >= _BLOSC_HEADER else -1


class ZarrArray:
    """An array read with the zarr API (layouts this module does not decode itself)."""

    def __init__(self, path: str | os.PathLike[str], zarr_format: ZarrFormat | None = None):
        self.path = os.fspath(path)
        self._array = zarr.open_array(self.path, mode="r", zarr_format=zarr_format)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    def read_into(self, out: np.ndarray) -> None:
        if out.size:
            out[...] = self._array[...]


def open_array(path: str | os.PathLike[str], zarr_format: ZarrFormat | None = None) -> StoredArray:
    """The array at `path`, decoded by this module when it can be, else by the zarr API.

    `zarr_format` (that of the group holding the array) says which metadata file to read,
    as zarr does for a group's members; None: ``zarr.json`` if there is one, else ``.zarray``.
    """
    p = os.fspath(path)
    try:
        if zarr_format == 3 or (zarr_format is None and os.path.isfile(f"{p}/zarr.json")):
            return _v3_array(p, _read_json(f"{p}/zarr.json"))
        return _v2_array(p, _read_json(f"{p}/.zarray"))
    except (Unsupported, OSError, ValueError, TypeError, KeyError, AttributeError):
        return ZarrArray(p, zarr_format)


def read_file(path: str) -> bytes:
    """The bytes of a file, with os calls rather than Python's buffered file objects
    (thousands of small files are read, and every layer counts)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)  # one call for a regular file that does not change
        if len(data) == size and size:
            return data
        parts = [data]  # a short read, an empty file or one that changes: read to the end
        while more := os.read(fd, 1 << 20):
            parts.append(more)
        return b"".join(parts)
    finally:
        os.close(fd)


def _read_json(path: str) -> dict[str, Any]:
    meta = json.loads(read_file(path))
    if not isinstance(meta, dict):
        raise Unsupported(path)
    return meta


def _v2_array(path: str, meta: dict[str, Any]) -> ChunkedArray:
    """Format 2: compressor (no filters) from `.zarray`; chunk files named "i.j" (or "i/j")."""
    if meta.get("zarr_format") != 2 or meta.get("filters") or meta.get("order") not in ("C", "F"):
        raise Unsupported(path)
    dtype = _plain_dtype(np.dtype(meta["dtype"]))
    compressor = meta.get("compressor")
    if compressor is not None and compressor.get("id") not in V2_COMPRESSORS:
        raise Unsupported(path)
    codecs = (_codec(tuple(sorted(compressor.items()))),) if compressor is not None else ()
    sep = meta.get("dimension_separator") or "."
    if sep not in (".", "/"):
        raise Unsupported(path)
    fill = 0 if meta.get("fill_value") is None else _fill_value(meta["fill_value"])
    return _chunked(path, meta["shape"], meta["chunks"], dtype, meta["order"], fill, codecs, _key(sep, ""))


def _v3_array(path: str, meta: dict[str, Any]) -> ChunkedArray:
    """Format 3: regular grid, `bytes` then Blosc/Zstd/GZip; keys "c/i/j" (or v2-style)."""
    grid, keys = meta["chunk_grid"], meta["chunk_key_encoding"]
    if (
        meta.get("zarr_format") != 3
        or meta.get("node_type") != "array"
        or meta.get("storage_transformers")
        or meta["data_type"] not in V3_DTYPES
        or grid["name"] != "regular"
    ):
        raise Unsupported(path)
    first, *rest = meta["codecs"]
    if first["name"] != "bytes" or any(c["name"] not in V3_CODECS for c in rest):
        raise Unsupported(path)
    endian = (first.get("configuration") or {}).get("endian", "little")
    dtype = _plain_dtype(np.dtype(meta["data_type"]).newbyteorder("<" if endian == "little" else ">"))
    codecs = tuple(_codec((("id", c["name"]),)) for c in reversed(rest))
    sep = (keys.get("configuration") or {}).get("separator", "/" if keys["name"] == "default" else ".")
    if keys["name"] not in ("default", "v2") or sep not in (".", "/"):
        raise Unsupported(path)
    chunks = grid["configuration"]["chunk_shape"]
    key = _key(sep, "c" if keys["name"] == "default" else "")
    return _chunked(path, meta["shape"], chunks, dtype, "C", _fill_value(meta["fill_value"]), codecs, key)


def _chunked(
    path: str,
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: np.dtype,
    order: str,
    fill: float | int | bool,
    codecs: tuple[Any, ...],
    key: Callable[[tuple[int, ...]], str],
) -> ChunkedArray:
    shape_t, chunks_t = tuple(int(s) for s in shape), tuple(int(c) for c in chunks)
    if not shape_t or len(chunks_t) != len(shape_t) or min(chunks_t) < 1 or min(shape_t) < 0:
        raise Unsupported(path)
    return ChunkedArray(path, shape_t, chunks_t, dtype, order, fill, codecs, key)


@functools.lru_cache(maxsize=64)
def _codec(config: tuple[tuple[str, Any], ...]) -> Any:
    """One numcodecs codec per configuration (its sorted items), shared by the arrays that use it."""
    return numcodecs.get_codec(dict(config))


def _plain_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise Unsupported(dtype)
    return dtype


def _fill_value(value: Any) -> float | int | bool:
    if isinstance(value, str):
        if value not in _SPECIAL_FLOATS:
            raise Unsupported(value)
        return _SPECIAL_FLOATS[value]
    if not isinstance(value, (int, float, bool)):
        raise Unsupported(value)
    return value


def _key(sep: str, prefix: str) -> Callable[[tuple[int, ...]], str]:
    def key(index: tuple[int, ...]) -> str:
        return sep.join(([prefix] if prefix else []) + [str(i) for i in index])

    return key


# ---- many arrays in a pool of threads ----------------------------------------------------------


def default_threads() -> int:
    """Threads for reading: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def read_arrays(
    arrays: Sequence[StoredArray],
    outs: Sequence[np.ndarray],
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Read ``arrays[i]`` into ``outs[i]`` for every i, in `threads` threads.

    `progress` is called (in the caller's thread) with the number of arrays just read. An
    error is raised as the first failing array in order would raise it.
    """
    if len(arrays) != len(outs):
        raise ValueError(f"{len(arrays)} arrays but {len(outs)} targets")
    threads = default_threads() if threads is None else max(1, threads)
    batches = list(_batches(len(arrays), threads))

    def run(batch: range) -> int:
        for i in batch:
            arrays[i].read_into(outs[i])
        return len(batch)

    if threads == 1:
        for batch in batches:
            done = run(batch)
            if progress:
                progress(done)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="t12k-read")
    try:
        futures: list[Future[int]] = [pool.submit(run, b) for b in batches]
        for future in futures:
            done = future.result()
            if progress:
                progress(done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _batches(n: int, threads: int) -> Iterator[range]:
    """Consecutive ranges: about eight per thread, at most 64 arrays each."""
    size = max(1, min(64, -(-n // (threads * 8))))
    for start in range(0, n, size):
        yield range(start, min(n, start + size))
