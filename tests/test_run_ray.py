"""`t12k run --engine ray` on a local Ray cluster of two simulated nodes: the same stores as
the stage commands, and what happens when workers, actors, a node or the driver are lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from t12k import cli
from t12k.pipeline.run import RunConfig, run_collection
from t12k.pipeline.run.faults import Fault

pytest.register_assert_rewrite("run_corpus")  # its asserts explain themselves too
import run_corpus as rc  # noqa: E402

ray = pytest.importorskip("ray", reason="Ray is the optional extra t12k[ray] (the test install has it)")

NODE_CPUS = 3  # per simulated node: a shots and a features actor and a normalizing task
KW = {"fetch": rc.FETCH, "shots": rc.SHOTS, "extract": rc.EXTRACT, "progress": False, "log": lambda m: None}


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs (the driver's node) and two nodes of NODE_CPUS, this process connected."""
    from ray.cluster_utils import Cluster

    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=NODE_CPUS)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()
    if auth is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = auth


def _config(cluster, **kw) -> RunConfig:
    return RunConfig(engine="ray", address=cluster.address, decode_workers=0, **kw)


def _marks(folder: Path, stage: str, mid: str) -> list[list[str]]:
    """(pid, node) of every attempt of `stage` on `mid` that reached its fault, in order."""
    return [p.read_text().split() for p in sorted(folder.glob(f"{stage}-{mid}-*"), key=lambda p: p.stat().st_mtime_ns)]


def test_two_nodes_with_workers_killed_mid_trailer_end_as_the_stage_commands(cluster, tmp_path):
    url, ref = rc.served(), rc.reference()
    out, marks = tmp_path / "out", tmp_path / "marks"
    kill_once = tuple(
        Fault(stage, mid, str(marks)) for stage, mid in (("normalize", "r1"), ("shots", "r2"), ("features", "r4"))
    )
    summary = run_collection(rc.items(url), out, _config(cluster, actors=2, faults=kill_once), **KW)
    assert sorted(summary.done) == sorted(rc.GOOD) and sorted(summary.failed) == ["junk", "missing"]
    rc.assert_same_stores(out, ref)
    rc.assert_same_statuses(out, ref)
    for f in kill_once:  # killed once (a task's worker, a model actor) mid-trailer, then redone
        assert len(_marks(marks, f.stage, f.mid)) == 2, f
    assert "busy download" in summary.text()


def test_a_poison_trailer_fails_alone_after_its_attempts(cluster, tmp_path):
    url, ref = rc.served(), rc.reference()
    out, marks = tmp_path / "out", tmp_path / "marks"
    ids = ["r1", "r2", "r3"]
    poison = Fault("features", "r3", str(marks), times=0)  # kills its actor on every attempt
    summary = run_collection(rc.items(url, ids), out, _config(cluster, attempts=2, faults=(poison,)), **KW)
    assert sorted(summary.done) == ["r1", "r2"] and list(summary.failed) == ["r3"], summary.text()
    assert summary.failed["r3"].startswith("features: its worker died in each of 2 attempts")
    assert 2 <= len(_marks(marks, "features", "r3")) <= 4  # 2 in its group's call, 2 alone at most
    rc.assert_same_stores(out, ref, ids=["r1", "r2"])
    extracted = rc.statuses(out / "features" / "extract.manifest.csv")
    assert extracted == {"r1": "ok", "r2": "ok", "r3": "failed"}
    assert rc.statuses(out / "shots.manifest.csv") == dict.fromkeys(ids, "ok")


@pytest.mark.slow
def test_a_node_removed_while_it_holds_work(cluster, tmp_path):
    url, ref = rc.served(), rc.reference()
    out, marks = tmp_path / "out", tmp_path / "marks"
    ids = ["r1", "r2", "r5"]
    hold = Fault("features", "r2", str(marks), action="hold", seconds=3.0)
    result: dict = {}

    def run():
        result["summary"] = run_collection(rc.items(url, ids), out, _config(cluster, faults=(hold,)), **KW)

    driver = threading.Thread(target=run)
    driver.start()
    try:
        while not _marks(marks, "features", "r2") and driver.is_alive():
            time.sleep(0.1)
        (_, node_id), *_ = _marks(marks, "features", "r2")  # the features actor holds r2 on this node
        node = next(n for n in cluster.list_all_nodes() if n.node_id == node_id)
        cluster.remove_node(node, allow_graceful=False)
    finally:
        driver.join(timeout=300)
        cluster.add_node(num_cpus=NODE_CPUS)  # the next tests' cluster as before
    assert not driver.is_alive() and sorted(result["summary"].done) == ids
    nodes = [where for _, where in _marks(marks, "features", "r2")]
    assert len(nodes) >= 2 and nodes[-1] != node_id  # redone on the node left
    rc.assert_same_stores(out, ref, ids=ids)
    assert rc.statuses(out / "features" / "extract.manifest.csv") == dict.fromkeys(ids, "ok")


HOLD_KILL = 45.0  # seconds of r4's 120 s hold after which the driver is killed anyway
_DRIVER = """
import json, sys
from t12k.pipeline.shots_command import ShotsConfig
from t12k.pipeline.extract import ExtractConfig
from t12k.pipeline.fetch import FetchConfig, FetchItem
from t12k.pipeline.run import RunConfig, run_collection
from t12k.pipeline.run.faults import Fault

a = json.loads(sys.argv[1])
hold = Fault("features", a["hold"], a["marks"], action="hold", seconds=120.0)
config = RunConfig(engine="ray", address=a["address"], decode_workers=0, group=1, queue=1, faults=(hold,))
run_collection(
    [FetchItem(m, u) for m, u in a["items"]], a["out"], config, fetch=FetchConfig(workers=2),
    shots=ShotsConfig(device="cpu"), progress=False,
    extract=ExtractConfig(backbones="shufflenet2d", weights="none", device="cpu", batch_size=8),
)
"""


def _in_store(out: Path, ids: list[str]) -> set[str]:
    """The trailers among `ids` whose features are in the run's store (each appears whole)."""
    store = next((out / "features").glob("*.zarr"), None)
    return set() if store is None else {p.name for p in store.iterdir() if p.name in ids}


@pytest.mark.slow
def test_the_driver_killed_then_the_same_command_resumes(cluster, tmp_path):
    url, ref = rc.served(), rc.reference()
    out, marks = tmp_path / "out", tmp_path / "marks"
    ids = ["r1", "r2", "r3", "r4"]
    args = {
        "address": cluster.address,
        "items": [(it.id, it.url) for it in rc.items(url, ids)],
        "out": str(out),
        "marks": str(marks),
        "hold": "r4",
    }
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, json.dumps(args)], env=env)

    held_since: list[float] = []

    def killed_point() -> bool:
        """r4 held in its features (120 s), and another trailer done on the other actor; or, when
        the others wait behind r4 on its actor (the scheduler may route them so), r4 held for
        HOLD_KILL s, well before its hold ends."""
        if not _marks(marks, "features", "r4"):
            return False
        held_since[:1] = held_since[:1] or [time.monotonic()]
        return bool(_in_store(out, ids)) or time.monotonic() - held_since[0] > HOLD_KILL

    try:
        deadline = time.monotonic() + 240
        while not killed_point() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the driver ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)  # while r4 is in the middle of its features
    finally:
        proc.kill()
        proc.wait()
    store = next((out / "features").glob("*.zarr"))
    done = {p.name: p.stat().st_mtime_ns for p in store.iterdir() if p.name in ids}
    assert "r4" not in done  # held when the driver died: never committed

    summary = run_collection(rc.items(url, ids), out, _config(cluster), **KW)
    assert set(summary.skipped) == set(done) and set(summary.done) == set(ids) - set(done)
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir() if p.name in done} == done  # not redone
    rc.assert_same_stores(out, ref, ids=ids)
    for name in rc.MANIFESTS:  # every trailer once, done
        lines = (out / name).read_text().splitlines()[1:]
        assert sorted(line.split(",")[0] for line in lines) == ids, name


@pytest.fixture
def run_command():
    """`t12k run ARGS` through cli.main."""
    return lambda *args: cli.main(["run", *args])


def test_an_unreachable_address_and_a_cluster_short_of_resources_say_so_in_one_line(
    cluster, run_command, tmp_path, capsys
):
    base = ["--url", f"{rc.served()}/r1.mp4", "--out", str(tmp_path), "--engine", "ray", "--weights", "none"]

    def error(*more) -> str:
        assert run_command(*base, *more) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        return err

    assert error("--address", "127.0.0.1:1").startswith(
        "t12k run: error: cannot reach a Ray cluster at 127.0.0.1:1 (Connection refused); start it with `ray start"
    )
    assert (
        f"the Ray cluster ({cluster.address}) has {2 * NODE_CPUS} CPUs and this run needs at least 7: "
        "3 features actor(s) of 2 CPU(s)"
        in error("--address", cluster.address, "--actors", "3", "--decode-workers", "0", "--device", "cpu")
    )
    assert "at least 11: 5 shots actor(s) of 1 CPU(s), 5 features actor(s) of 1 CPU(s)" in error(
        "--address",
        cluster.address,
        "--actors",
        "5",
        "--decode-workers",
        "0",
        "--device",
        "cpu",
        "--decode",
        "per-stage",
    )
    assert f"--device cuda asks for a GPU but the Ray cluster ({cluster.address}) has none" in error(
        "--address", cluster.address, "--device", "cuda"
    )
