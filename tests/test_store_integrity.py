"""Stores that detect damage: checksums recorded at commit and checked by every reader
(load_table, ArrayStore.read, extract's "is this trailer done"), `t12k verify`, stores without
attributes, stale staging folders; manifests shared by several runs or hit by a full disk."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from t12k.cli import main as cli_main
from t12k.divita.data import load_table
from t12k.errors import T12kError
from t12k.storage import MTGC, FeatureStore, Manifest, ShotStore, verify_store, write_mtgc
from t12k.storage import manifest as manifest_module
from t12k.storage.mtgc import stratified_splits

NF = 6
SETTINGS = {"backbone": "synthetic"}


def _chunk(path: Path, name: str, index: str = "0") -> Path:
    """The file of chunk `index` (row chunk) of array `name` in the store at `path`."""
    v3 = (path / "zarr.json").is_file()
    return path / name / (f"c/{index}/0" if v3 else f"{index}.0")


def _store(path: Path, fmt: int = 2, n: int = 3, rows: int = 300) -> FeatureStore:
    store = FeatureStore.create_or_append(path, SETTINGS, {"num_features": NF}, zarr_format=fmt)
    rng = np.random.default_rng(0)
    for i in range(n):
        store.write_features(f"m{i}", rng.random((rows, NF), np.float32), np.full((rows, 3), i, np.int32))
    return store


def _flip(file: Path, offset: int = 40) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= 0xFF
    file.write_bytes(bytes(data))


DAMAGE = {
    "deleted": lambda f: f.unlink(),
    "flipped": _flip,
    "truncated": lambda f: f.write_bytes(f.read_bytes()[:30]),
}


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_chunk_is_one_line_naming_store_and_trailer(tmp_path, fmt, how):
    path = tmp_path / "s.zarr"
    store = _store(path, fmt)
    DAMAGE[how](_chunk(path, "m1", "1"))
    again = FeatureStore.open(path)
    message = rf"^store {path}, trailer m1: damaged \(.*\); run `t12k verify {path}` and re-run `t12k extract`"
    with pytest.raises(T12kError, match=message):
        again.read("m1")
    with pytest.raises(T12kError, match=message):
        load_table(path, ["m0", "m1", "m2"])
    assert again.verify("m1") and again.verify("m0") is None
    assert not again.is_done("m1") and again.is_done("m0") and not again.is_done("nope")
    np.testing.assert_array_equal(load_table(path, ["m0", "m2"]).feats[:300].numpy(), store.read("m0"))


def test_a_damaged_companion_is_damage_of_its_trailer(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    _flip(path / "clips" / "m2" / "0.0", 20)
    (path / "clips" / "m0" / "0.0").unlink()
    store = FeatureStore.open(path)
    with pytest.raises(T12kError, match=r"trailer m2: damaged \(clips/m2: "):
        store.read("m2", "clips")
    assert store.verify("m2").startswith("clips/m2: ") and "chunk file 0.0 is missing" in store.verify("m0")
    shutil.rmtree(path / "clips" / "m1")  # a companion the commit recorded, gone
    assert store.verify("m1") == "clips/m1 is missing"


def test_a_deleted_chunk_stops_train_with_one_line(tmp_path, capsys):
    """It read back as zeros and `train` exited 0."""
    path = tmp_path / "trailers_i_syn_fpc24.zarr"
    store = FeatureStore.create_or_append(path, SETTINGS, {"num_features": NF})
    rng = np.random.default_rng(1)
    ids = [f"t{i:02d}" for i in range(20)]
    labels = np.zeros((20, 10), np.int8)
    labels[np.arange(20), rng.integers(0, 10, 20)] = 1
    for mid in ids:
        store.write_features(mid, rng.random((8, NF), np.float32))
    write_mtgc(tmp_path / "mtgc.csv", MTGC(ids, labels, stratified_splits(labels, seed=0)))
    (path / "t05" / "0.0").unlink()
    args = ["train", "--image-store", str(path), "--labels", str(tmp_path / "mtgc.csv"), "--out", str(tmp_path / "r")]
    assert cli_main(args + ["--device", "cpu", "--quiet", "--max-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"store {path}, trailer t05: damaged (chunk file 0.0 is missing)" in err


def test_verify_reports_every_damaged_trailer_and_exits_1(tmp_path, capsys):
    path = tmp_path / "s.zarr"
    _store(path, n=4)
    (path / "m1" / "1.0").unlink()
    _flip(path / "clips" / "m3" / "0.0", 20)
    report = verify_store(path)
    assert (report.trailers, report.checksummed, sorted(report.damaged)) == (4, 4, ["m1", "m3"])
    assert report.damaged["m1"] == "chunk file 1.0 is missing"
    assert cli_main(["verify", str(path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"{path}: features store, 4 trailers, 2 damaged" in out and "  m1: chunk file 1.0 is missing" in out
    assert "to redo them: re-run `t12k extract`" in out
    shots = ShotStore.create_or_append(tmp_path / "shots.zarr", {"detector": "transnetv2"})
    shots.write_shots("a1", np.array([[0, 9]]), np.zeros(10, np.float32))
    assert cli_main(["verify", str(tmp_path / "shots.zarr"), "--quiet"]) == 0
    assert "shots store, 1 trailers, all sound" in capsys.readouterr().out
    assert cli_main(["verify", str(tmp_path / "nope.zarr"), "--quiet"]) == 1


def test_stores_without_checksums_still_load_and_verify(tmp_path):
    """A published store (plain zarr, no checksums; zarr 2 wrote every chunk, zeros too) loads as
    before; verify decodes it and says it records no checksums; a corrupt chunk is still named."""
    path = tmp_path / "trailers_i_pub_fpc24.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs["num_features"] = NF
    data = np.random.default_rng(2).random((40, NF)).astype(np.float32)
    data[10:20] = 0  # a chunk of zeros: a file all the same
    for mid in ("p1", "p2"):
        kw = {"config": {"write_empty_chunks": True}}
        g.create_array(mid, shape=data.shape, dtype="float32", chunks=(10, NF), **kw)[...] = data
    assert (path / "p1" / "1.0").exists()
    np.testing.assert_array_equal(load_table(path, ["p1", "p2"]).feats[:40].numpy(), data)
    report = verify_store(path)
    assert report.ok and report.checksummed == 0 and "2 record no checksum" in report.lines()[0]
    (path / "p2" / "2.0").write_bytes(b"not blosc at all")
    with pytest.raises(T12kError, match=rf"store {path}, trailer p2: damaged \(chunk file 2.0 does not decode"):
        load_table(path, ["p1", "p2"])
    assert list(verify_store(path).damaged) == ["p2"]


def test_an_array_that_lost_its_attributes_is_damage(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    (path / "m1" / ".zattrs").unlink()  # the checksum goes with it: its chunks could be anything
    with pytest.raises(T12kError, match=r"trailer m1: damaged \(no checksum recorded"):
        load_table(path, ["m0", "m1"])
    assert "no checksum recorded" in FeatureStore.open(path).verify("m1")


@pytest.mark.parametrize("fmt", [2, 3])
def test_a_store_without_attributes_is_refused_when_opened(tmp_path, fmt):
    """It failed every trailer with KeyError: 'num_features'."""
    path = tmp_path / "s.zarr"
    _store(path, fmt, n=1)
    if fmt == 2:
        (path / ".zattrs").unlink()
    else:
        meta = (path / "zarr.json").read_text()
        zarr.open_group(str(path), mode="r+").attrs.clear()
        assert meta != (path / "zarr.json").read_text()
    message = rf"^store {path}: its (\.zattrs is missing|zarr\.json holds no num_features and no t12k settings); "
    message += rf"run `t12k verify --repair {path}` to rebuild its attributes from its arrays"
    with pytest.raises(T12kError, match=message):
        FeatureStore.create_or_append(path, SETTINGS, {"num_features": NF}, zarr_format=fmt)
    with pytest.raises(T12kError, match=message):
        FeatureStore.open(path)


# ---- extract redoes damaged trailers ---------------------------------------------------------


def _extract(videos: Path, shots: Path, out: Path) -> int:
    args = ["extract", "--backbone", "shufflenet2d", "--weights", "none", "--videos", str(videos)]
    return cli_main(args + ["--shots", str(shots), "--out", str(out), "--device", "cpu", "--quiet"])


def test_extract_redoes_damaged_trailers_and_names_damaged_shots(three_videos, shots_store, tmp_path, capsys):
    """It reported a damaged trailer as done; a damaged shots trailer failed with a codec traceback."""
    out = tmp_path / "features"
    assert _extract(three_videos, shots_store, out) == 0
    capsys.readouterr()
    path = next(out.glob("trailers_*.zarr"))
    want = FeatureStore.open(path).read("b2")
    _flip(path / "b2" / "0.0")
    assert _extract(three_videos, shots_store, out) == 0
    assert "1 done, 2 already done" in capsys.readouterr().out
    assert verify_store(path).ok
    np.testing.assert_array_equal(FeatureStore.open(path).read("b2"), want)
    shots = tmp_path / "shots.zarr"
    shutil.copytree(shots_store, shots)
    (shots / "predictions" / "c3" / "0").unlink()
    assert _extract(three_videos, shots, tmp_path / "other") == 1
    text = capsys.readouterr().out
    assert f"c3: store {shots}, trailer c3: damaged (predictions/c3: chunk file 0 is missing)" in text
    assert "2 done, 0 already done, 1 failed" in text


# ---- staging folders of killed runs ----------------------------------------------------------

_HOLDER = """
import sys
from t12k.storage.locks import Staging
s = Staging(sys.argv[1])
print(s.path, flush=True)
sys.stdin.readline()
s.close()
"""


def test_stale_staging_folders_are_removed_and_live_ones_kept(tmp_path):
    path = tmp_path / "shots.zarr"
    store = ShotStore.create_or_append(path, {"detector": "transnetv2"})
    store.write_shots("a1", np.array([[0, 9]]), np.zeros(10, np.float32))
    root = tmp_path / ".shots.zarr.staging"
    (root / "dead-old").mkdir()  # from a t12k without locks
    (root / "dead-old" / "a1").mkdir()
    (root / "dead-new").mkdir()
    (root / "dead-new" / ".lock").touch()  # its writer was killed: the lock is free
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        live = Path(holder.stdout.readline().strip())
        assert live.is_dir()
        ShotStore.create_or_append(path, {"detector": "transnetv2"})
        assert sorted(p.name for p in root.iterdir()) == sorted([".lock", live.name])
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0 and sorted(p.name for p in root.iterdir()) == [".lock"]
    assert ShotStore.open(path).shots("a1").tolist() == [[0, 9]]


# ---- manifests ---------------------------------------------------------------------------------


def _rows(path: Path) -> dict[str, str]:
    import csv

    with open(path, newline="") as fh:
        return {r["id"]: r["status"] for r in csv.DictReader(fh)}


def test_two_runs_sharing_a_manifest_keep_every_row(tmp_path):
    """Two extract runs with different --ids into one --out left only one run's rows."""
    path = tmp_path / "extract.manifest.csv"
    first, second = Manifest(path, ("clips",)), Manifest(path, ("clips",))
    first.record("a1", "ok", clips=3)
    second.record("b1", "failed", "bad video")
    second.record("a1", "failed", "redone elsewhere")  # the last row of an id wins
    first.record("a2", "ok", clips=4)
    first.compact()
    second.compact()
    assert _rows(path) == {"a1": "failed", "a2": "ok", "b1": "failed"}
    assert Manifest(path, ("clips",)).counts() == {"failed": 2, "ok": 1}


def test_a_full_disk_while_rewriting_a_manifest_is_one_line_and_keeps_the_rows(tmp_path, monkeypatch):
    path = tmp_path / "shots.manifest.csv"
    m = Manifest(path, ("frames",))
    m.record("a1", "ok", frames=10)
    m.record("a2", "failed", "broken")
    (tmp_path / ".shots.manifest.csv.999-dead.tmp").write_text("left by a killed compaction")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(manifest_module.os, "fsync", full)
    with pytest.raises(T12kError, match=r"^cannot rewrite the manifest .*No space left on device.*free space"):
        m.compact()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shots.manifest.csv.lock", "shots.manifest.csv"]
    assert _rows(path) == {"a1": "ok", "a2": "failed"}
    monkeypatch.undo()

    def full_write(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(manifest_module.os, "write", full_write)
    with pytest.raises(T12kError, match=r"^cannot append to the manifest .*No space left on device"):
        m.record("a3", "ok")
    monkeypatch.undo()
    assert _rows(path) == {"a1": "ok", "a2": "failed"}


def test_a_killed_writers_partial_line_does_not_swallow_the_next_row(tmp_path):
    path = tmp_path / "m.csv"
    m = Manifest(path, ())
    m.record("a1", "ok")
    with open(path, "a") as fh:
        fh.write("a2,o")  # another process, killed mid-line
    m.record("a3", "ok")
    assert _rows(path)["a3"] == "ok"  # on a line of its own
    m.compact()  # the partial row is dropped
    assert _rows(path) == {"a1": "ok", "a3": "ok"}


def test_shots_redoes_a_damaged_trailer(three_videos, tmp_path, capsys):
    """`shots` skipped every trailer present in the store, damaged or not."""
    from t12k.storage import ShotStore

    store = tmp_path / "shots.zarr"
    args = ["shots", "--videos", str(three_videos), "--store", str(store), "--device", "cpu", "--quiet"]
    assert cli_main(args) == 0
    want = ShotStore.open(store).shots("c3")
    _flip(store / "c3" / "0.0", offset=20)
    assert ShotStore.open(store).verify("c3") is not None
    capsys.readouterr()
    assert cli_main(args) == 0
    assert "shots: 1 done, 2 already done" in capsys.readouterr().out
    again = ShotStore.open(store)
    assert again.verify("c3") is None
    np.testing.assert_array_equal(again.shots("c3"), want)
