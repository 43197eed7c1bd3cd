"""`t12k status WORK`: per stage done, failed by reason, blocked, in flight (held by a live
writer), not started, the rate over the window and the time left, on a hand-made run folder;
it takes no lock (a writer holding every lock of the folder does not hold it up) and imports
no PyTorch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from t12k import cli
from t12k.errors import T12kError
from t12k.pipeline.fetch.resume import folder_lock
from t12k.pipeline.shards import Shard
from t12k.pipeline.status import collection_status
from t12k.storage import FeatureStore, ShotStore

NOW = time.time()
IDS = ["a", "b", "c", "d", "e", "f", "g", "h"]
LINUX_LOCKS = pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="live locks are read from /proc/locks")


def _stamp(minutes_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(NOW - minutes_ago * 60))


def _manifest(path: Path, rows: list[tuple[str, str, str, float]]) -> None:
    """A manifest of rows (id, status, reason, minutes ago), with a killed writer's partial line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "status", "reason", "time"])
        for mid, status, reason, ago in rows:
            w.writerow([mid, status, reason, _stamp(ago)])
        fh.write("zz,ok")  # cut short: not a row


def _folder(root: Path) -> Path:
    """a, b, c fetched (c by an earlier run: skipped); d, e failed (404), f rejected; g being
    downloaded; h never seen. Shots: a, b committed, c failed. Features: a committed, b failed."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    for mid in "abc":
        (videos / f"{mid}.mp4").write_bytes(b"video")
    (videos / ".t12k-tmp-g-0123abcd").mkdir()  # g's download folder
    (videos / ".t12k-tmp-x-0123abcd").mkdir()  # a killed run's leftover: no live writer takes x
    _manifest(
        videos / "manifest.csv",
        [
            ("a", "ok", "", 2),
            ("b", "ok", "", 4),
            ("c", "skipped", "already fetched", 1),  # a resumed run's row: no work, not in the rate
            ("d", "failed", "HTTP Error 404: Not Found", 3),
            ("e", "failed", "HTTP Error 404: Not Found", 30),  # before the window
            ("f", "rejected", "too short: 12 s", 5),
        ],
    )
    shots = ShotStore.create_or_append(root / "shots.zarr", {"detector": "transnetv2", "threshold": 0.5})
    for mid in "ab":
        shots.write_shots(mid, np.array([[0, 9]]), np.zeros(10))
    _manifest(root / "shots.manifest.csv", [("a", "ok", "", 1), ("b", "ok", "", 2), ("c", "failed", "c: no frames", 2)])
    feats = FeatureStore.create_or_append(root / "features/trailers_i_x_fpc24.zarr", {"b": 1}, {"num_features": 4})
    feats.write_features("a", np.ones((2, 4), np.float32))
    _manifest(root / "features/extract.manifest.csv", [("a", "ok", "", 1), ("b", "failed", "out of memory", 1)])
    return root


def _list(path: Path) -> Path:
    path.write_text("id,url\n" + "".join(f"{m},http://127.0.0.1:9/{m}.mp4\n" for m in IDS))
    return path


@LINUX_LOCKS
def test_the_counts_of_each_stage(tmp_path):
    work = _folder(tmp_path / "work")
    shard = Shard(1, 1)  # a live sharded fetch: its lock held by this process
    with folder_lock(work / "videos", shard):
        st = collection_status(work, IDS, window=10, now=NOW)
    fetch, shots, feats = st.stages
    assert st.total == 8 and st.from_list
    assert (fetch.done, fetch.failed, fetch.rejected, fetch.in_flight, fetch.not_started) == (
        3,
        {"HTTP Error 404: Not Found": 2},
        1,
        1,  # g; x's leftover is not
        1,  # h
    )
    # the rows of work in the last 10 minutes: a (2 min), b (4), d (3), f (5): 4 over 5 min
    assert fetch.recent == 4 and fetch.rate == pytest.approx(4 / 5, rel=0.05)
    assert fetch.seconds_left == pytest.approx(2 / fetch.rate * 60)  # g and h left
    assert (shots.done, shots.failed, shots.blocked, shots.in_flight, shots.not_started) == (
        2,
        {"{id}: no frames": 1},
        3,  # d, e, f stopped at fetch
        0,
        2,  # g, h
    )
    assert (feats.done, feats.failed, feats.blocked, feats.not_started) == (1, {"out of memory": 1}, 4, 2)
    assert feats.recent == 2 and feats.rate == pytest.approx(2.0, rel=0.05)  # both 1 min ago: over 1 min
    assert st.writers == [f"fetch or run of shard 1/1 (pid {os.getpid()})"]
    assert st.seconds_left == max(s.seconds_left for s in st.stages)


def test_without_a_list_the_collection_is_what_the_folder_has_seen(tmp_path):
    work = _folder(tmp_path / "work")
    st = collection_status(work, window=10, now=NOW)  # no writer alive: g's folder is a leftover
    fetch, shots, _ = st.stages
    assert st.total == 6 and not st.from_list  # a to f: g and x only have leftovers, h is unknown
    assert (fetch.in_flight, fetch.not_started, shots.not_started) == (0, 0, 0)
    assert st.writers == []
    late = collection_status(work, window=10, now=NOW + 3600)  # an hour later: no rate, no estimate
    assert late.stages[0].rate is None and late.stages[0].left == 0 and late.stages[0].seconds_left == 0


@LINUX_LOCKS
def test_a_commit_in_flight_is_seen_in_the_stores_staging(tmp_path):
    from t12k.storage.locks import Staging

    work = _folder(tmp_path / "work")
    with Staging(work / ".shots.zarr.staging") as staging:
        (staging.path / "g").mkdir()
        (staging.path / "predictions").mkdir()
        st = collection_status(work, IDS, now=NOW)
    assert st.stages[1].in_flight == 1 and st.stages[1].not_started == 1


@LINUX_LOCKS
def test_status_waits_for_no_lock(tmp_path):
    """Every lock a writer takes in the folder is held by another process while status reads."""
    work = _folder(tmp_path / "work")
    locks = [
        work / "videos/.t12k-fetch.lock",
        work / "videos/.manifest.csv.lock",
        work / ".shots.manifest.csv.lock",
        work / ".shots.zarr.staging/.lock",
        work / "features/.extract.manifest.csv.lock",
        work / "features/.trailers_i_x_fpc24.zarr.staging/.lock",
    ]
    code = "import fcntl, sys, time\nfs = [open(p, 'a') for p in sys.argv[1:]]\n"
    code += "[fcntl.flock(f, fcntl.LOCK_EX) for f in fs]\nprint('held', flush=True)\ntime.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, *map(str, locks)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        out = subprocess.run(
            [sys.executable, "-m", "t12k.cli", "status", str(work), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait(10)
    assert out.returncode == 0, out.stderr
    js = json.loads(out.stdout)
    assert [s["done"] for s in js["stages"]] == [3, 2, 1]
    assert js["writers"] == ["fetch or run of the whole list (pid ?)"]  # the holder wrote no pid


def test_the_command_prints_a_table_and_json(tmp_path, capsys):
    work = _folder(tmp_path / "work")
    assert cli.main(["status", str(work), "--items", str(_list(tmp_path / "list.csv"))]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == f"{work}: 8 trailers (in its list)"
    assert "fetch" in text.splitlines()[2] and "+1 rejected" in text
    assert "failed at fetch: 2 x HTTP Error 404: Not Found" in text
    assert cli.main(["status", str(work), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["total"] == 6 and js["stages"][0]["failed_total"] == 2 and js["stages"][2]["stage"] == "features"


@pytest.mark.parametrize(
    "args, message",
    [
        (["nowhere"], "is not a folder; pass the --out folder of `t12k run`"),
        (["."], "holds no videos/, shots.zarr or features/; pass the --out folder"),
        (["work", "--window", "0"], "--window 0.0 is not a number of minutes; pass a positive one"),
    ],
)
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    _folder(tmp_path / "work")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty" if args == ["."] else tmp_path)
    assert cli.main(["status", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_status_imports_no_torch(tmp_path):
    work = _folder(tmp_path / "work")
    code = "import sys\nfrom t12k import cli\nrc = cli.main(['status', sys.argv[1]])\nprint('torch' in sys.modules, rc)"
    out = subprocess.run([sys.executable, "-c", code, str(work)], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[-1] == "False 0", out.stderr


def test_a_damaged_store_is_a_note_not_a_failure(tmp_path):
    work = _folder(tmp_path / "work")
    (work / "features/trailers_i_x_fpc24.zarr/.zattrs").write_text("{}")  # lost its attributes
    st = collection_status(work, now=NOW)
    assert st.stages[2].done == 0 and any("cannot list" in n for n in st.notes), st.notes
    with pytest.raises(T12kError):
        collection_status(work, window=-1)
