"""`--shard K/N`: the part of the ids each task takes (a stable hash of the id, whatever the
list's order), `auto` in a Slurm array job, one-line refusals of bad shards, the fetch folder
shared by the tasks of different shards, and N tasks at once over one output folder ending
with what one run over the whole list writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from t12k import cli
from t12k.errors import T12kError
from t12k.pipeline.fetch.resume import LOCK_NAME, clean_leftovers, folder_lock
from t12k.pipeline.shards import Shard, bucket
from t12k.pipeline.shots_command import detect_shots
from t12k.pipeline.status import collection_status
from t12k.pipeline.videos import find_videos
from t12k.storage import locks

pytest.register_assert_rewrite("run_corpus")
import run_corpus as rc  # noqa: E402

IDS = [f"tt{n:07d}" for n in range(600)]
DEADLINE = 400.0  # seconds for a sharded task of the corpus (3 at once on a loaded 2-core machine)


def test_every_id_goes_to_exactly_one_of_n_shards_whatever_the_order():
    for n in (1, 2, 3, 7):
        parts = [Shard(k, n).select(IDS) for k in range(1, n + 1)]
        assert sorted(m for part in parts for m in part) == sorted(IDS)
        assert all(len(part) > len(IDS) / n * 0.75 for part in parts), [len(p) for p in parts]
        shuffled = IDS[::-1][:400]  # another order, and a shorter list: the same part of each id
        for k, part in enumerate(parts, 1):
            assert Shard(k, n).select(shuffled) == [m for m in shuffled if m in set(part)]


def test_the_part_of_an_id_is_fixed_across_processes_and_versions():
    # Python's hash() of a str changes per process; a re-queued task must redo its own ids
    code = "from t12k.pipeline.shards import bucket; print(bucket('tt0111161', 10), bucket('r1', 3))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["7", "2"]
    assert (bucket("tt0111161", 10), bucket("r1", 3)) == (7, 2)


@pytest.mark.parametrize(
    "text, shard",
    [("1/3", Shard(1, 3)), ("3/3", Shard(3, 3)), (" 2 / 5 ", Shard(2, 5)), ("1/1", Shard(1, 1))],
)
def test_k_of_n_counts_k_from_one(text, shard):
    assert Shard.parse(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize(
    "env, shard",
    [
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, Shard(1, 4)),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, Shard(4, 4)),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(1, 4)),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(4, 4)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "14",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "10",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            Shard(3, 4),
        ),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, Shard(3, 3)),  # no MIN: from 0
    ],
)
def test_auto_is_the_slurm_array_task(env, shard):
    assert Shard.parse("auto", env) == shard


@pytest.mark.parametrize(
    "text, env, message",
    [
        ("3/2", {}, "--shard 3/2 names no task; pass K/N with 1 <= K <= N (task K of N tasks), or auto in a Slurm"),
        ("0/0", {}, "--shard 0/0 names no task; pass K/N with 1 <= K <= N"),
        ("0/3", {}, "--shard 0/3 names no task; pass K/N with 1 <= K <= N"),
        ("2", {}, "--shard '2' is not K/N; pass K/N"),
        ("auto", {}, "--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set (not in a Slurm"),
        (
            "auto",
            {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"},
            "--shard auto: task 7 of an array of 3 from 1 (step 1) is not one of 3 consecutive tasks; submit with "
            "--array=0-2",
        ),
    ],
)
def test_a_bad_shard_is_one_line_naming_the_option_and_the_fix(text, env, message):
    with pytest.raises(T12kError) as err:
        Shard.parse(text, env)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("command", ["fetch", "shots", "extract", "run"])
@pytest.mark.parametrize("shard", ["3/2", "0/0", "auto"])
def test_the_commands_refuse_a_bad_shard_in_one_line(tmp_path, monkeypatch, capsys, command, shard):
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    (tmp_path / "videos").mkdir()
    rc.build(tmp_path / "videos")
    (tmp_path / "list.csv").write_text("id,url\nr1,http://127.0.0.1:9/r1.mp4\n")
    where = {
        "fetch": [str(tmp_path / "list.csv"), "--out", str(tmp_path / "v")],
        "run": [str(tmp_path / "list.csv"), "--out", str(tmp_path / "r")],
        "shots": ["--videos", str(tmp_path / "videos"), "--store", str(tmp_path / "s.zarr")],
        "extract": ["--videos", str(tmp_path / "videos"), "--shots", str(tmp_path / "s.zarr")],
    }[command]
    assert cli.main([command, *where, "--shard", shard, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"t12k {command}: error: --shard {shard}") and err.count("\n") == 1, err
    assert not (tmp_path / "v").exists() and not (tmp_path / "s.zarr").exists()


def test_fetch_tasks_of_different_shards_share_a_folder_and_the_same_shard_twice_is_refused(tmp_path):
    with folder_lock(tmp_path, Shard(1, 3)), folder_lock(tmp_path, Shard(2, 3)):
        with pytest.raises(locks.FolderInUse) as same:
            with folder_lock(tmp_path, Shard(2, 3)):
                pass
        assert str(same.value) == (
            f"another t12k fetch of shard 2/3 is writing to {tmp_path} (pid {os.getpid()}); give each task its "
            "own --shard K/3, or wait for it to finish"
        )
        with pytest.raises(locks.FolderInUse, match="another t12k fetch is writing to"):
            with folder_lock(tmp_path):  # the whole list would write the shards' ids too
                pass
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(locks.FolderInUse, match="a t12k fetch of the whole list is writing to"):
            with folder_lock(tmp_path, Shard(1, 3)):
                pass


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="other tasks' locks are seen in /proc/locks")
def test_a_fetch_task_of_another_n_is_refused_while_one_writes(tmp_path):
    with folder_lock(tmp_path, Shard(1, 3)):
        with pytest.raises(locks.FolderInUse) as other:
            with folder_lock(tmp_path, Shard(2, 4)):  # its ids overlap shard 1/3's
                pass
        assert str(other.value) == (
            f"a t12k fetch of shard 1/3 is writing to {tmp_path}; give every task over one folder the same N "
            "(--shard K/3), or wait for it to finish"
        )
        with folder_lock(tmp_path, Shard(3, 3)):
            pass
    with folder_lock(tmp_path, Shard(2, 4)):  # free once the other N is done
        pass


def test_a_shard_cleans_the_leftovers_of_its_own_ids_only(tmp_path):
    mine, theirs = Shard(1, 3), Shard(3, 3)
    a, b = mine.select(IDS)[0], theirs.select(IDS)[0]
    for mid in (a, b):
        (tmp_path / f".t12k-tmp-{mid}-0123abcd").mkdir()  # a download's folder
        (tmp_path / f".{mid}.t12k-tmp-89abcdef.mp4").write_bytes(b"x")  # an encode's file
    (tmp_path / f"{a}.mp4").write_bytes(b"video")
    assert clean_leftovers(tmp_path, mine) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{a}.mp4", f".t12k-tmp-{b}-0123abcd", f".{b}.t12k-tmp-89abcdef.mp4"]
    )
    assert clean_leftovers(tmp_path) == 2  # the whole list's run: every leftover
    assert [p.name for p in tmp_path.iterdir()] == [f"{a}.mp4"]


def _at_once(commands: list[list[str]], here: list[str] | None = None) -> list[subprocess.CompletedProcess]:
    """Run the `t12k` command lines at once, each with a deadline (and `here` in this process
    meanwhile, which must exit 0); their results."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "t12k.cli", *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    t0, done = time.monotonic(), []
    try:
        if here is not None:
            assert cli.main(here) == 0
        for p, c in zip(procs, commands):
            out, err = p.communicate(timeout=max(1.0, DEADLINE - (time.monotonic() - t0)))
            done.append(subprocess.CompletedProcess(c, p.returncode, out.decode(), err.decode()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    return done


def _items_file(path: Path) -> Path:
    path.write_text("id,url\n" + "".join(f"{it.id},{it.url}\n" for it in rc.items(rc.served())))
    return path


OPTIONS = ["--backbone", "shufflenet2d", "--weights", "none", "--device", "cpu", "--batch-size", "8", "--quiet"]


def test_three_run_tasks_at_once_end_as_one_run_over_the_whole_list(tmp_path):
    items, out = _items_file(tmp_path / "items.csv"), tmp_path / "out"
    shards = [Shard(k, 3) for k in (1, 2, 3)]
    assert all(s.select([*rc.GOOD, *rc.BAD]) for s in shards)  # every task has trailers of its own
    runs = _at_once(
        [["run", str(items), "--out", str(out), "--shard", str(s), "--workers", "2", *OPTIONS] for s in shards]
    )
    for r in runs:
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (r.args, r.stdout, r.stderr)
        assert "error:" not in r.stderr, r.stderr
    # every trailer once: the stores and manifests of the stage commands run over the whole list
    rc.assert_same_stores(out, rc.reference())
    rc.assert_same_statuses(out, rc.reference())
    for name in rc.MANIFESTS:
        lines = (out / name).read_text().splitlines()
        assert len(lines) == 1 + len(rc.statuses(out / name)), name  # one row per id once compacted
    assert not [p.name for p in (out / "videos").iterdir() if ".t12k-tmp" in p.name]
    # and `t12k status` reads it as done: every trailer through, the two bad ones failed at fetch
    fetch, shots, feats = collection_status(out, [*rc.GOOD, *rc.BAD]).stages
    assert (fetch.done, fetch.failed_total, fetch.not_started, fetch.in_flight) == (5, 2, 0, 0)
    assert [(s.done, s.failed_total, s.blocked, s.not_started) for s in (shots, feats)] == [(5, 0, 2, 0)] * 2


def test_three_fetch_tasks_at_once_write_what_one_fetch_writes(tmp_path):
    items, out = _items_file(tmp_path / "items.csv"), tmp_path / "out"
    tasks = ["1/3", "2/3", "3/3", "3/3"]  # the last by mistake: refused, or skipping what is there
    runs = _at_once(
        [["fetch", str(items), "--out", str(out / "videos"), "--workers", "2", "--quiet", "--shard", s] for s in tasks]
    )
    for r in runs[:2]:
        assert r.returncode in (0, 1) and "error:" not in r.stderr, (r.args, r.stderr)
    refused = [r for r in runs[2:] if r.returncode == 2]
    assert len(refused) <= 1 and len(runs[2:]) - len(refused) >= 1, [(r.returncode, r.stderr) for r in runs[2:]]
    for r in refused:  # the one that started while the other held the shard
        assert "error: another t12k fetch of shard 3/3 is writing to" in r.stderr and r.stderr.count("\n") == 1
    assert rc.statuses(out / "videos/manifest.csv") == rc.statuses(rc.reference() / "videos/manifest.csv")
    assert sorted(p.name for p in (out / "videos").glob("*.mp4")) == sorted(f"{m}.mp4" for m in rc.GOOD)
    assert not [p.name for p in (out / "videos").iterdir() if ".t12k-tmp" in p.name]


def _shots_task(videos: Path, store: Path, shard: str) -> None:
    ids = Shard.parse(shard).select(find_videos(videos))
    detect_shots(videos, store, rc.SHOTS, ids=ids, progress=False)


def test_shots_and_extract_tasks_at_once_write_what_one_task_writes(tmp_path):
    """Two shards at once, one of them given twice by mistake: every trailer whole, once. The
    shot detections run in threads of this process (the command line's and library calls); of
    the extractions, one runs here and two as processes (random weights are drawn from the
    process's generator: two extractions starting in one process would share it)."""
    out, ref = tmp_path / "out", rc.reference()
    videos, store, feats = out / "videos", out / "shots.zarr", out / "features"
    videos.mkdir(parents=True)
    for mid in rc.GOOD:  # the normalized videos the reference's stages read
        shutil.copy(ref / "videos" / f"{mid}.mp4", videos)
    assert Shard(1, 2).select(rc.GOOD) and Shard(2, 2).select(rc.GOOD)
    with ThreadPoolExecutor(2) as pool:
        tasks = [pool.submit(_shots_task, videos, store, "2/2") for _ in range(2)]
        shots = ["shots", "--videos", str(videos), "--store", str(store), "--device", "cpu", "--quiet"]
        assert cli.main([*shots, "--shard", "1/2"]) == 0
        for t in tasks:
            t.result(timeout=DEADLINE)
    extract = ["extract", "--videos", str(videos), "--shots", str(store), "--out", str(feats), *OPTIONS]
    for r in _at_once([[*extract, "--shard", s] for s in ("2/2", "2/2")], here=[*extract, "--shard", "1/2"]):
        assert r.returncode == 0, (r.args, r.stderr)
    rc.assert_same_stores(out, ref)
    for name in ("shots.manifest.csv", "features/extract.manifest.csv"):
        assert rc.statuses(out / name) == dict.fromkeys(rc.GOOD, "ok"), name
        assert len((out / name).read_text().splitlines()) == 1 + len(rc.GOOD), name  # one row per id
