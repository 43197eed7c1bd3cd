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
with the zarr API, so no store becomes unreadable.

What is read is checked: an array committed by t12k records a checksum and its number of
chunk files in its attributes (`ArrayChecksum`); a missing chunk file, a chunk that does not
decode or a checksum that does not match raises `Damaged`. Arrays without a checksum (older
stores, the published ones) read a missing chunk file as the fill value, as zarr does, unless
the reader requires every chunk file (`require_chunks`: the array's shape says which exist). As
another process may replace an array while it is read (rename the old one away, the new one
in), a read that does not check out is tried again a few times before it counts as damage:
a reader gets one commit's array whole, never a mix or a part.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import numcodecs
import numpy as np
import zarr

from t12k.errors import first_line
from t12k.storage.checksum import ArrayChecksum, chunk_count, crc32c

ZarrFormat = Literal[2, 3]
T = TypeVar("T")

# numcodecs codec ids read without the zarr API (format 2 compressors, format 3 codec names).
V2_COMPRESSORS = frozenset({"blosc", "zstd", "lz4", "gzip", "zlib", "bz2", "lzma"})
V3_CODECS = frozenset({"blosc", "zstd", "gzip"})
V3_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}
)
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_BLOSC_HEADER = 16
ATTEMPTS = 6  # reads of an array that does not check out before it counts as damaged
RETRY_PAUSE = 0.005  # seconds before the second read, doubled before each further one


class Unsupported(Exception):
    """The array's layout is not one this module reads itself (the zarr API reads it)."""


class Damaged(Exception):
    """An array whose files do not hold what was committed (`reason` says how).

    `final`: trying again will not help (the array changed shape while it was being read)."""

    def __init__(self, path: str, reason: str, final: bool = False):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.final = path, reason, final


class StoredArray(Protocol):
    """One array of a store that can be read whole (and checked) into a caller's array of its shape."""

    @property
    def path(self) -> str: ...

    @property
    def zarr_format(self) -> ZarrFormat | None: ...

    @property
    def checksum(self) -> ArrayChecksum | None: ...

    @property
    def require_checksum(self) -> bool: ...

    @property
    def require_chunks(self) -> bool: ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def read_into(self, out: np.ndarray) -> None: ...


@dataclass(frozen=True)
class ChunkedArray:
    """An array whose chunk files this module decodes itself.

    `codecs` are applied in order to decode a chunk file's bytes (the last one applied
    first on write); `key` gives a chunk's file name, relative to `path`, from its grid
    position. `checksum` is what its commit recorded (None: nothing to check against);
    `require_checksum`: the store records one for every array, so its absence is damage;
    `require_chunks`: every chunk file the grid gives must exist, checksum or not.
    """

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    order: str
    fill_value: float | int | bool
    codecs: tuple[Any, ...]
    key: Callable[[tuple[int, ...]], str]
    zarr_format: ZarrFormat | None = None
    checksum: ArrayChecksum | None = None
    require_checksum: bool = False
    require_chunks: bool = False

    def read_into(self, out: np.ndarray) -> None:
        """Decode every chunk into `out` (same shape; any dtype numpy can cast to) and check it."""
        if out.shape != self.shape:
            raise ValueError(f"{self.path}: array has shape {self.shape}, target has {out.shape}")
        if self.checksum is None:
            if self.require_checksum:
                raise Damaged(self.path, "no checksum recorded (its attributes are lost)")
            self._read(out)
            return
        grid = chunk_count(self.shape, self.chunks)
        if grid != self.checksum.chunks:
            raise Damaged(self.path, f"its metadata gives {grid} chunks, {self.checksum.chunks} were committed")
        if self._read(out) != self.checksum.crc32c:
            raise Damaged(self.path, "checksum mismatch: its chunk files are not those committed")

    def _read(self, out: np.ndarray) -> int:
        """Decode every chunk into `out`; the CRC-32C of the chunk files (when there is a checksum)."""
        in_place = self._blosc_in_place(out)
        crc = 0
        for index, region in self._grid():
            name = self.key(index)
            try:
                data = read_file(f"{self.path}/{name}")
            except FileNotFoundError:
                if self.checksum is not None or self.require_chunks:  # every chunk was written
                    raise Damaged(self.path, f"chunk file {name} is missing") from None
                out[region] = self.fill_value
                continue
            if self.checksum is not None:
                crc = crc32c(data, crc)
            target = out[region]
            try:
                if in_place and target.shape == self.chunks and _blosc_size(data) == target.nbytes:
                    self.codecs[0].decode(data, out=target)  # a whole chunk, no copy
                else:
                    crop = tuple(slice(0, r.stop - r.start) for r in region)
                    out[region] = self._decode(data)[crop]
            except Exception as exc:  # codecs raise RuntimeError, ValueError, ... on corrupt bytes
                raise Damaged(self.path, f"chunk file {name} does not decode ({_reason(exc)})") from None
        return crc

    def _grid(self) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
        """Every chunk's grid position and region of the array, in C order."""
        grid = [range(-(-s // c)) for s, c in zip(self.shape, self.chunks)]
        for index in itertools.product(*grid):
            yield index, tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, self.chunks, self.shape))

    def files_checksum(self, companions: tuple[str, ...] = ()) -> ArrayChecksum:
        """The checksum of this array's chunk files as they are now (what a commit records)."""
        crc, count = 0, 0
        for index, _ in self._grid():
            crc = crc32c(read_file(f"{self.path}/{self.key(index)}"), crc)
            count += 1
        return ArrayChecksum(crc, count, companions)

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


def _reason(exc: BaseException) -> str:
    text = first_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ZarrArray:
    """An array read with the zarr API (layouts this module does not decode itself)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        zarr_format: ZarrFormat | None = None,
        require_checksum: bool = False,
        require_chunks: bool = False,
    ):
        self.path = os.fspath(path)
        self.zarr_format = zarr_format
        self.require_checksum = require_checksum
        self.require_chunks = require_chunks
        try:
            self._array = zarr.open_array(self.path, mode="r", zarr_format=zarr_format)
            self.checksum = ArrayChecksum.from_attrs(self._array.attrs)
        except FileNotFoundError:
            raise
        except Exception as exc:  # metadata zarr cannot parse either
            raise Damaged(self.path, f"its metadata is unreadable ({_reason(exc)})") from None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    def read_into(self, out: np.ndarray) -> None:
        if self.checksum is not None:  # t12k writes only layouts ChunkedArray reads
            raise Damaged(self.path, "its metadata is not that of the array committed")
        if self.require_checksum:
            raise Damaged(self.path, "no checksum recorded (its attributes are lost)")
        try:
            if self.require_chunks and (missing := self._array.nchunks - self._array.nchunks_initialized):
                raise Damaged(self.path, f"{missing} of its {self._array.nchunks} chunk files are missing")
            data = np.asarray(self._array[...])
        except (FileNotFoundError, Damaged):
            raise
        except Exception as exc:
            raise Damaged(self.path, f"it does not decode ({_reason(exc)})") from None
        if out.size:
            out[...] = data


def open_array(
    path: str | os.PathLike[str],
    zarr_format: ZarrFormat | None = None,
    require_checksum: bool = False,
    require_chunks: bool = False,
) -> StoredArray:
    """The array at `path`, decoded by this module when it can be, else by the zarr API.

    `zarr_format` (that of the group holding the array) says which metadata file to read,
    as zarr does for a group's members; None: ``zarr.json`` if there is one, else ``.zarray``.
    FileNotFoundError when the array has no metadata file (it is not there, or another
    process is replacing it); `Damaged` when its metadata cannot be read.
    """
    p = os.fspath(path)
    try:
        if zarr_format == 3 or (zarr_format is None and os.path.isfile(f"{p}/zarr.json")):
            meta = _read_json(f"{p}/zarr.json")
            array, attrs = _v3_array(p, meta), meta.get("attributes") or {}
        else:
            array, attrs = _v2_array(p, _read_json(f"{p}/.zarray")), _v2_attrs(p)
        checksum = ArrayChecksum.from_attrs(attrs)
    except FileNotFoundError:
        raise
    except (Unsupported, OSError, ValueError, TypeError, KeyError, AttributeError):
        return ZarrArray(p, zarr_format, require_checksum, require_chunks)
    return dataclasses.replace(
        array,
        zarr_format=zarr_format,
        checksum=checksum,
        require_checksum=require_checksum,
        require_chunks=require_chunks,
    )


def _v2_attrs(path: str) -> dict[str, Any]:
    try:
        return _read_json(f"{path}/.zattrs")
    except FileNotFoundError:
        return {}


# ---- reading again what does not check out --------------------------------------------------


def _retrying(path: str, attempts: int, once: Callable[[], T]) -> T:
    """`once()`, called again (after a short, growing pause) while it raises `Damaged` or the
    files it reads vanish, at most `attempts` times; then the last `Damaged` is raised."""
    last: BaseException | None = None
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(RETRY_PAUSE * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
        try:
            return once()
        except Damaged as exc:
            if exc.final:
                raise
            last = exc
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESTALE):
                raise
            last = exc
    if isinstance(last, Damaged):
        raise last
    raise Damaged(path, f"its files vanished while it was read ({_reason(last or OSError())})")


def open_checked(
    path: str | os.PathLike[str],
    zarr_format: ZarrFormat | None = None,
    require_checksum: bool = False,
    attempts: int = ATTEMPTS,
    require_chunks: bool = False,
) -> StoredArray:
    """`open_array`, tried again while the metadata is missing (a commit replacing the array)."""
    p = os.fspath(path)
    return _retrying(p, attempts, lambda: open_array(p, zarr_format, require_checksum, require_chunks))


def read_checked(array: StoredArray, out: np.ndarray, attempts: int = ATTEMPTS) -> None:
    """Read `array` into `out` and check it; when it does not check out, open it afresh and
    read it again (another process may have replaced it meanwhile). `Damaged` if it never does."""
    tries = 0

    def once() -> None:
        nonlocal tries
        tries += 1
        current = (
            array
            if tries == 1
            else open_array(array.path, array.zarr_format, array.require_checksum, array.require_chunks)
        )
        if current.shape != out.shape:
            raise Damaged(
                array.path,
                f"was rewritten with shape {current.shape} while it was read (as {out.shape}); run again",
                final=True,
            )
        current.read_into(out)

    _retrying(array.path, attempts, once)


def read_whole(
    path: str | os.PathLike[str],
    zarr_format: ZarrFormat | None = None,
    require_checksum: bool = False,
    attempts: int = ATTEMPTS,
    require_chunks: bool = False,
) -> tuple[np.ndarray, ArrayChecksum | None]:
    """The whole array at `path`, checked, and the checksum its commit recorded (if any)."""
    p = os.fspath(path)

    def once() -> tuple[np.ndarray, ArrayChecksum | None]:
        array = open_array(p, zarr_format, require_checksum, require_chunks)
        out = np.empty(array.shape, array.dtype)
        array.read_into(out)
        return out, array.checksum

    return _retrying(p, attempts, once)


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
    check: Callable[[int, np.ndarray], None] | None = None,
) -> None:
    """Read ``arrays[i]`` into ``outs[i]`` for every i, in `threads` threads.

    `progress` is called (in the caller's thread) with the number of arrays just read. Each
    array is checked (`read_checked`), then given to `check(i, outs[i])` in the thread that
    read it (while it is in the cache); an error is raised as the first failing array in order
    would raise it.
    """
    if len(arrays) != len(outs):
        raise ValueError(f"{len(arrays)} arrays but {len(outs)} targets")
    threads = default_threads() if threads is None else max(1, threads)
    batches = list(_batches(len(arrays), threads))

    def run(batch: range) -> int:
        for i in batch:
            read_checked(arrays[i], outs[i])
            if check is not None:
                check(i, outs[i])
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
