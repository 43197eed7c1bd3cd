"""Output folders t12k cannot write in (a read-only file system, no permission): `fetch`,
`extract` and the stores end in one line naming the folder, before any work starts.

A folder is made read-only for real: a read-only tmpfs mounted on it when the tests run as
root (chmod does not stop root), else chmod 0o555; where neither can be done the test is
skipped. One test breaks `mkdir` by hand, which every machine can do.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from t12k.cli import main
from t12k.errors import T12kError
from t12k.pipeline.extract import extract_features
from t12k.pipeline.fetch import FetchItem, fetch_collection
from t12k.storage import FeatureStore, ShotStore

ITEM = FetchItem("a1", "http://127.0.0.1:9/a1.mp4")  # never reached: the folder is refused first


def _writable(path: Path) -> bool:
    try:
        (path / ".probe").touch()
    except OSError:
        return False
    (path / ".probe").unlink()
    return True


@pytest.fixture
def read_only(tmp_path):
    """A function making a folder read-only (with what was written in it kept), undone after."""
    undo = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            os.chmod(folder, 0o555)
            undo.append(lambda: os.chmod(folder, 0o755))
        else:  # a read-only bind mount of the folder on itself keeps its files
            ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
            if ok:
                undo.append(lambda: subprocess.run(["umount", str(folder)], capture_output=True))
                ok = (
                    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode == 0
                )
            if not ok:
                pytest.skip("running as root where mounts are not allowed: no read-only folder can be made")
        assert not _writable(folder)
        return folder

    yield make
    for step in reversed(undo):
        step()


def test_fetch_into_a_read_only_folder_is_one_line(read_only, tmp_path, capsys):
    out = read_only(tmp_path / "videos")
    with pytest.raises(T12kError, match=f"cannot write in output folder {out} .*; pass another --out"):
        fetch_collection([ITEM], out, progress=False)
    assert main(["fetch", "--url", ITEM.url, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"t12k fetch: error: cannot write in output folder {out} (") and err.count("\n") == 1


def test_fetch_into_a_new_folder_under_a_read_only_one_names_it(read_only, tmp_path):
    out = read_only(tmp_path / "ro") / "videos"
    with pytest.raises(T12kError, match=f"cannot write in output folder {out} "):
        fetch_collection([ITEM], out, progress=False)
    assert not out.exists()


@pytest.fixture
def two_shots(tmp_path):
    """A shots store of one trailer (no video needed: the folder is refused before the clips)."""
    store = ShotStore.create_or_append(tmp_path / "shots.zarr", {"detector": "transnetv2", "threshold": 0.5})
    store.write_shots("a1", np.array([[0, 47]]), np.zeros(48, np.float32))
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a1.mp4").write_bytes(b"")
    return tmp_path / "videos", store.path


@pytest.mark.parametrize("made", [False, True])
def test_extract_into_a_read_only_folder_is_one_line(read_only, tmp_path, two_shots, capsys, made):
    videos, shots = two_shots
    out = read_only(tmp_path / "features")
    if made:  # a new folder inside the read-only one
        out = out / "new"
    with pytest.raises(T12kError, match=f"cannot write in output folder {out} "):
        extract_features(videos, shots, out, backbones="shufflenet2d", weights="none", progress=False)
    argv = ["extract", "--backbone", "shufflenet2d", "--weights", "none", "--videos", str(videos)]
    assert main([*argv, "--shots", str(shots), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"t12k extract: error: cannot write in output folder {out} (") and err.count("\n") == 1


def test_appending_to_a_read_only_store_names_the_store(read_only, tmp_path):
    path = tmp_path / "features" / "s.zarr"
    FeatureStore.create_or_append(path, {"backbone": "x"}, {"num_features": 2}).write_features("a1", np.ones((1, 2)))
    read_only(path)
    with pytest.raises(T12kError, match=f"cannot write in store {path} .*; choose another output path"):
        FeatureStore.create_or_append(path, {"backbone": "x"}, {"num_features": 2})
    assert FeatureStore.open(path).ids() == ["a1"]  # still readable


def test_a_folder_that_cannot_be_made_is_named(tmp_path, monkeypatch):
    """mkdir failing as on a read-only file system (every machine, root or not)."""
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if "videos" in os.fspath(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    out = tmp_path / "videos"
    with pytest.raises(T12kError, match=rf"^cannot write in output folder {out} \(Read-only file system\); pass"):
        fetch_collection([ITEM], out, progress=False)


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "videos").write_text("not a folder")
    with pytest.raises(T12kError, match=f"cannot write in output folder {tmp_path / 'videos'} \\(it is a file\\)"):
        fetch_collection([ITEM], tmp_path / "videos", progress=False)


def test_repairing_a_read_only_store_is_one_line(read_only, tmp_path):
    from t12k.storage.repair import repair_store

    path = tmp_path / "features" / "s.zarr"
    FeatureStore.create_or_append(path, {"backbone": "x"}, {"num_features": 2}).write_features(
        "a1", np.ones((1, 2)), np.zeros((1, 3))
    )
    (path / ".zattrs").write_text("{")
    read_only(path)
    with pytest.raises(T12kError, match=f"cannot write in store {path} .*; make it writable and repair it again"):
        repair_store(path)
    assert (path / ".zattrs").read_text() == "{"
