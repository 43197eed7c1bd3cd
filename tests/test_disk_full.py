"""A write that fails half-way (a full disk) raises one error and leaves nothing behind: no
trailer, and no write of zarr's still pending to print "Task was destroyed but it is
pending!" when the process ends."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import zarr

from t12k.storage import FeatureStore

# The disk fills after two chunk files; the other chunks' writes are slower, so with zarr's
# concurrent writes they were still pending when the first error came back.
SCRIPT = textwrap.dedent(
    """
    import asyncio, errno, os, sys
    import numpy as np
    import zarr.storage
    from t12k.storage import FeatureStore

    real_set, calls = zarr.storage.LocalStore.set, [0]

    async def full_disk(self, key, value):
        if key.split("/")[-1][:1].isdigit():  # a chunk file
            calls[0] += 1
            if calls[0] > 2:
                await asyncio.sleep(0.01 * (calls[0] % 4))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), key)
        return await real_set(self, key, value)

    zarr.storage.LocalStore.set = full_disk
    store = FeatureStore.create_or_append(sys.argv[1], {"backbone": "x"}, {"num_features": 64})
    try:
        store.write_features("m1", np.random.default_rng(0).standard_normal((4000, 64)))
    except OSError as exc:
        print("failed:", exc.strerror)
    print("ids:", store.ids())
    """
)


def test_a_full_disk_leaves_no_pending_write_and_prints_nothing(tmp_path):
    path = tmp_path / "s.zarr"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["failed: No space left on device", "ids: []"]
    assert done.stderr == ""  # it held one "Task was destroyed but it is pending!" per pending chunk
    staging = tmp_path / ".s.zarr.staging"
    assert sorted(p.name for p in staging.iterdir()) == [".lock"]  # the writer's folder is gone


def test_chunk_files_are_the_ones_a_whole_write_makes(tmp_path):
    """Written a chunk at a time, a store's chunk files are byte for byte zarr's own."""
    data = np.random.default_rng(1).standard_normal((1000, 32)).astype(np.float32)
    store = FeatureStore.create_or_append(tmp_path / "s.zarr", {"backbone": "x"}, {"num_features": 32})
    store.write_features("m1", data)
    whole = zarr.create_array(
        store=str(tmp_path / "whole"),
        shape=data.shape,
        dtype=data.dtype,
        chunks=(256, 32),
        compressors=zarr.open_array(str(tmp_path / "s.zarr" / "m1"), mode="r").compressors,
        zarr_format=2,
    )
    whole[...] = data
    ours = sorted(p for p in (tmp_path / "s.zarr" / "m1").iterdir() if p.name[0].isdigit())
    assert [p.name for p in ours] == ["0.0", "1.0", "2.0", "3.0"]
    assert all(p.read_bytes() == (tmp_path / "whole" / p.name).read_bytes() for p in ours)
    assert np.array_equal(store.read("m1"), data)
