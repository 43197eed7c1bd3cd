"""Reading whole stores fast (`t12k.storage.fastread`, `divita.data.load_table`).

The reference is the zarr API: every array read by the fast reader must equal
``zarr.open(path, mode='r')[mid][:]``, for stores t12k writes (format 2 and 3), stores
written by hand in the published layout, odd chunkings, missing chunk files and layouts
the reader hands over to zarr.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import torch
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, GzipCodec, TransposeCodec

from t12k.divita.data import load_table
from t12k.errors import T12kError
from t12k.storage import FeatureStore
from t12k.storage.fastread import ChunkedArray, ZarrArray, open_array, read_arrays

NF = 8
SETTINGS = {"backbone": "synthetic"}


def _features(rng: np.random.Generator, n: int, nf: int = NF) -> np.ndarray:
    return (np.abs(rng.normal(size=(n, nf))) * 0.5).astype(np.float32)


def _zarr_arrays(path: Path, ids: list[str]) -> list[np.ndarray]:
    z = zarr.open(str(path), mode="r")
    return [np.asarray(z[mid][:]) for mid in ids]


def _fast_arrays(path: Path, ids: list[str], threads: int = 2) -> list[np.ndarray]:
    arrays = [open_array(path / mid) for mid in ids]
    outs = [np.full(a.shape, -7.0, np.float32) for a in arrays]  # not zeros: fill values must be written
    read_arrays(arrays, outs, threads=threads)
    return outs


def _assert_same(path: Path, ids: list[str]) -> None:
    """The fast reader, load_table and the zarr API agree on every array of `ids`."""
    want = _zarr_arrays(path, ids)
    for mid, got, ref in zip(ids, _fast_arrays(path, ids), want):
        assert got.shape == ref.shape, mid
        np.testing.assert_array_equal(got, ref, err_msg=mid)
    table = load_table(path, ids)
    np.testing.assert_array_equal(table.feats[:-1].numpy(), np.concatenate(want).astype(np.float32))
    assert table.lengths.tolist() == [len(a) for a in want]
    assert not table.feats[-1].any()


@pytest.fixture(params=[2, 3], ids=["format2", "format3"])
def t12k_store(request, tmp_path):
    """A store written by t12k: one-chunk, three-chunk (600 rows of 256) and empty arrays."""
    path = tmp_path / f"trailers_f{request.param}.zarr"
    store = FeatureStore.create_or_append(path, SETTINGS, {"num_features": NF}, zarr_format=request.param)
    rng = np.random.default_rng(request.param)
    sizes = {"a1": 37, "b2": 600, "c3": 256, "d4": 0, "e5": 1}
    for mid, n in sizes.items():
        store.write_features(mid, _features(rng, n), np.zeros((n, 3), np.int32))
    return path, list(sizes)


def test_t12k_stores_read_as_zarr_reads_them(t12k_store):
    path, ids = t12k_store
    arrays = [open_array(path / mid) for mid in ids]
    assert all(isinstance(a, ChunkedArray) for a in arrays)
    assert arrays[ids.index("b2")].chunks == (256, NF) and arrays[ids.index("d4")].shape == (0, NF)
    _assert_same(path, ids)
    _assert_same(path, ids[::-1])  # any order of ids


def test_a_missing_chunk_file_of_a_t12k_store_is_damage_not_zeros(t12k_store):
    """Every chunk of a committed array is written (zeros too), so a missing one is damage."""
    path, ids = t12k_store
    fmt3 = (path / "zarr.json").is_file()
    (path / "b2" / ("c/1/0" if fmt3 else "1.0")).unlink()
    with pytest.raises(T12kError, match=rf"store {path}, trailer b2: damaged \(chunk file .* is missing\)"):
        load_table(path, ids)
    table = load_table(path, ["a1", "c3"])  # the sound trailers still load
    np.testing.assert_array_equal(table.feats[:-1].numpy(), np.concatenate(_zarr_arrays(path, ["a1", "c3"])))


def test_float16_tables_and_threads(t12k_store):
    path, ids = t12k_store
    want = np.concatenate(_zarr_arrays(path, ids))
    half = load_table(path, ids, dtype="float16")
    assert half.feats.dtype == torch.float16
    np.testing.assert_array_equal(half.feats[:-1].numpy(), want.astype(np.float16))
    for threads in (1, 3):
        for got, ref in zip(_fast_arrays(path, ids, threads), _zarr_arrays(path, ids)):
            np.testing.assert_array_equal(got, ref)


def _published(path: Path, fmt: int = 2) -> zarr.Group:
    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    g.attrs["num_features"] = NF
    return g


def test_published_layouts_chunked_both_ways(tmp_path):
    """Format 2 by hand: chunks across rows and features (edge chunks in both), F order,
    big-endian, lz4 and no compressor, NaN and null fill values with absent chunks."""
    path = tmp_path / "published.zarr"
    g = _published(path)
    rng = np.random.default_rng(0)
    cases = {
        "lz4": dict(chunks=(64, NF), compressors=numcodecs.Blosc(cname="lz4", clevel=5)),
        "grid": dict(chunks=(7, 3), compressors=numcodecs.Blosc(cname="zstd", shuffle=numcodecs.Blosc.BITSHUFFLE)),
        "fortran": dict(chunks=(9, 5), order="F", compressors=numcodecs.Zstd(level=3)),
        "raw": dict(chunks=(10, NF), compressors=None),
        "bigend": dict(chunks=(10, NF), dtype=">f4", compressors=numcodecs.GZip()),
        "nanfill": dict(chunks=(10, NF), fill_value=np.nan, compressors=numcodecs.Zlib()),
        "nullfill": dict(chunks=(10, NF), fill_value=None, compressors=numcodecs.Blosc()),
        "slash": dict(chunks=(10, 5), chunk_key_encoding={"name": "v2", "separator": "/"}),
    }
    for mid, kw in cases.items():
        a = g.create_array(mid, shape=(45, NF), dtype=kw.pop("dtype", "float32"), **kw)
        data = _features(rng, 45)
        data[10:20] = 0 if mid != "nanfill" else np.nan  # whole chunks of the fill value are not written
        a[...] = data
    assert not (path / "nullfill" / "1.0").exists() and json.loads((path / "nullfill" / ".zarray").read_text())[
        "fill_value"
    ] in (None, 0.0)
    meta = json.loads((path / "fortran" / ".zarray").read_text())
    assert meta["order"] == "F" and meta["chunks"] == [9, 5]
    ids = list(cases)
    assert all(isinstance(open_array(path / mid), ChunkedArray) for mid in ids)
    for mid, got, ref in zip(ids, _fast_arrays(path, ids), _zarr_arrays(path, ids)):
        np.testing.assert_array_equal(got, ref, err_msg=mid)
    assert np.isnan(_fast_arrays(path, ["nanfill"])[0][10:20]).all()


def test_format3_codecs_zarr_writes_by_default(tmp_path):
    """zarr's own format 3 defaults (zstd), gzip, and no compression at all."""
    path = tmp_path / "v3.zarr"
    g = _published(path, 3)
    rng = np.random.default_rng(1)
    cases = {
        "default": {},
        "gzip": dict(compressors=GzipCodec()),
        "raw": dict(compressors=None),
        "dots": dict(chunk_key_encoding={"name": "default", "separator": "."}),
        "v2keys": dict(chunk_key_encoding={"name": "v2", "separator": "."}),
        "int16": dict(dtype="int16", fill_value=-1),
    }
    for mid, kw in cases.items():
        a = g.create_array(mid, shape=(70, NF), dtype=kw.pop("dtype", "float32"), chunks=(16, 3), **kw)
        a[...] = _features(rng, 70) * (100 if mid == "int16" else 1)
    (path / "int16" / "c" / "2" / "1").unlink()  # a missing chunk: the fill value -1
    ids = list(cases)
    assert all(isinstance(open_array(path / mid), ChunkedArray) for mid in ids)
    _assert_same(path, ids[:-1])
    # int16 is no feature store's dtype (load_table refuses it), yet fastread reads it as zarr does
    np.testing.assert_array_equal(_fast_arrays(path, ["int16"])[0], _zarr_arrays(path, ["int16"])[0])


def test_unusual_codecs_fall_back_to_zarr(tmp_path):
    """A filter (format 2), a checksum and a transpose codec (format 3), a broken zarr.json:
    read with the zarr API, same arrays."""
    rng = np.random.default_rng(2)
    p2 = tmp_path / "filters.zarr"
    a = _published(p2).create_array(
        "delta", shape=(30, NF), dtype="float32", chunks=(8, NF), filters=[numcodecs.Delta("<f4")], compressors=None
    )
    a[...] = _features(rng, 30)
    p3 = tmp_path / "odd3.zarr"
    g3 = _published(p3, 3)
    crc = g3.create_array("crc", shape=(30, NF), dtype="float32", chunks=(8, NF), compressors=[Crc32cCodec()])
    crc[...] = _features(rng, 30)
    tr = g3.create_array(
        "transposed", shape=(30, NF), dtype="float32", chunks=(8, NF), filters=[TransposeCodec(order=(1, 0))]
    )
    tr[...] = _features(rng, 30)
    assert isinstance(open_array(p2 / "delta"), ZarrArray)
    assert isinstance(open_array(p3 / "crc"), ZarrArray) and isinstance(open_array(p3 / "transposed"), ZarrArray)
    _assert_same(p2, ["delta"])
    _assert_same(p3, ["crc", "transposed"])
    # metadata the reader does not understand (an extra key in the bytes codec is fine for zarr)
    meta = json.loads((p3 / "crc" / "zarr.json").read_text())
    meta["codecs"] = [BytesCodec().to_dict(), {"name": "crc32c"}]
    (p3 / "crc" / "zarr.json").write_text(json.dumps(meta))
    assert isinstance(open_array(p3 / "crc"), ZarrArray)
    _assert_same(p3, ["crc"])


def test_a_corrupt_chunk_is_one_line_naming_store_and_trailer(t12k_store, tmp_path):
    """A truncated chunk (zarr raises a codec error) is a T12kError naming the store and the
    trailer; the first failing array in order is reported."""
    path, ids = t12k_store
    fmt3 = (path / "zarr.json").is_file()
    chunk = path / "b2" / ("c/1/0" if fmt3 else "1.0")
    chunk.write_bytes(chunk.read_bytes()[:40])
    with pytest.raises(RuntimeError):  # zarr's reader: Blosc's error, naming no trailer
        _zarr_arrays(path, ["b2"])
    with pytest.raises(T12kError, match=rf"^store {path}, trailer b2: damaged \(chunk file .* does not decode") as e:
        load_table(path, ids)
    assert "\n" not in str(e.value) and f"t12k verify {path}" in str(e.value)
    with pytest.raises(ValueError, match="2 arrays but 1 targets"):
        read_arrays([open_array(path / "a1")] * 2, [np.zeros((37, NF))])


def test_progress_counts_every_array(tmp_path):
    path = tmp_path / "many.zarr"
    store = FeatureStore.create_or_append(path, SETTINGS, {"num_features": NF})
    rng = np.random.default_rng(3)
    ids = [f"t{i:03d}" for i in range(150)]
    for mid in ids:
        store.write_features(mid, _features(rng, int(rng.integers(0, 40))))
    done: list[int] = []
    arrays = [open_array(path / mid) for mid in ids]
    read_arrays(arrays, [np.zeros(a.shape, np.float32) for a in arrays], threads=2, progress=done.append)
    assert sum(done) == len(ids) and len(done) > 1
    _assert_same(path, ids)


def test_store_copied_elsewhere_reads_the_same(t12k_store, tmp_path):
    """Nothing in the reader depends on the store's own path (chunk keys are relative)."""
    path, ids = t12k_store
    copy = tmp_path / "copy" / path.name
    shutil.copytree(path, copy)
    _assert_same(copy, ids)
