"""`t12k.Pipeline` and the stage interface: a user's own stages run by the engines of `t12k run`;
t12k's own stages composed by hand leave what the stage commands leave; Ray placement comes
from the resources the stages declare; setup once, teardown at the end."""

from __future__ import annotations

import doctest
import os
import threading

import numpy as np
import pytest

import t12k
from t12k.pipeline import composed
from t12k.pipeline.extract import ExtractConfig
from t12k.pipeline.run.config import Layout, RunConfig
from t12k.pipeline.run.ray_engine import Placement
from t12k.pipeline.run.stages import Features, Shots, build_stages
from t12k.pipeline.shots_command import ShotsConfig
from t12k.storage import FeatureStore, ShotStore


def test_the_example_runs(three_videos, capfd):
    globs = {"t12k": t12k, "os": os, "video": str(three_videos / "a1.mp4")}
    (test,) = [t for t in doctest.DocTestFinder().find(composed.Pipeline, "Pipeline", globs=globs) if t.examples]
    result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE).run(test)
    assert result.attempted >= 5 and result.failed == 0
    assert not capfd.readouterr().out  # a library call prints nothing unless asked


class _Counted(t12k.Stage):
    """A stateful stage that counts its setups and teardowns and the threads it ran on."""

    name = "counted"
    stateful = True

    def __init__(self) -> None:
        self.setups, self.teardowns, self.threads = 0, 0, set()
        self.batch = 2

    def setup(self) -> None:
        self.setups += 1

    def process(self, tickets, stop=None):
        self.threads.add(threading.current_thread().name)
        return [t12k.Outcome(t.mid, "ok", data=len(tickets)) for t in tickets]

    def teardown(self) -> None:
        self.teardowns += 1


def test_setup_once_batches_and_teardown():
    stage = _Counted()
    summary = t12k.Pipeline([stage]).run([(f"t{i}", i) for i in range(5)])
    assert sorted(summary.done) == [f"t{i}" for i in range(5)] and summary.ok
    assert stage.setups == 1 and stage.teardowns == 1
    assert max(summary.outputs.values()) == 2  # calls of up to `batch` trailers
    assert stage.threads == {threading.main_thread().name}  # one stage: in the calling thread
    two = _Counted()
    two.name = "other"  # type: ignore[misc]
    assert t12k.Pipeline([_Counted(), two]).run([("t0", 0)]).ok
    assert two.threads and all(name.startswith("t12k-other") for name in two.threads)  # several: threads


def test_bad_pipelines_say_so_in_one_line():
    with pytest.raises(t12k.T12kError, match="takes a list of t12k.Stage objects"):
        t12k.Pipeline([print])
    with pytest.raises(t12k.T12kError, match="share a name"):
        t12k.Pipeline([_Counted(), _Counted()])
    with pytest.raises(t12k.T12kError, match="two items share an id"):
        t12k.Pipeline([_Counted()]).run([("a", 1), ("a", 2)])


def test_own_stages_composed_leave_what_the_stage_commands_leave(three_videos, tmp_path):
    """t12k's shots and feature stages in a user's pipeline, against `t12k shots` + `t12k extract`."""
    from t12k.pipeline.extract import extract_features
    from t12k.pipeline.shots_command import detect_shots

    config = ExtractConfig(backbones="shufflenet2d", weights="none", device="cpu", workers=0)
    ref = tmp_path / "ref"
    detect_shots(three_videos, ref / "shots.zarr", ShotsConfig(device="cpu"), progress=False)
    extract_features(three_videos, ref / "shots.zarr", ref / "features", config, progress=False, log=lambda m: None)

    out = tmp_path / "out"
    shots = Shots(out / "shots.zarr", ShotsConfig(device="cpu"))
    stages = [shots, Features(out / "features", out / "shots.zarr", config, batch=2)]
    videos = sorted(three_videos.glob("*.mp4"))
    summary = t12k.Pipeline(stages).run(videos)
    assert sorted(summary.done) == ["a1", "b2", "c3"] and summary.ok

    a, b = ShotStore.open(ref / "shots.zarr"), ShotStore.open(out / "shots.zarr")
    (store_name,) = [p.name for p in (ref / "features").glob("*.zarr")]
    fa, fb = FeatureStore.open(ref / "features" / store_name), FeatureStore.open(out / "features" / store_name)
    for mid in ("a1", "b2", "c3"):
        np.testing.assert_array_equal(a.shots(mid), b.shots(mid))
        np.testing.assert_allclose(fa.read(mid), fb.read(mid), rtol=1e-4, atol=1e-4)  # other batches
    again = t12k.Pipeline(stages).run(videos)  # resumes: everything is in the stores
    assert sorted(again.skipped) == ["a1", "b2", "c3"] and not again.done


def test_ray_placement_comes_from_the_declared_resources(tmp_path):
    from t12k.pipeline.fetch import FetchConfig

    layout = Layout(tmp_path)
    extract = ExtractConfig(backbones="shufflenet2d", weights="none", workers=2)
    for decode in ("once", "per-stage"):
        run = RunConfig(engine="ray", decode=decode, actors=2)
        stages = build_stages(layout, run, FetchConfig(workers=3), ShotsConfig(), extract)
        cpu = Placement.plan({"CPU": 16}, run, stages, "test")
        gpu = Placement.plan({"CPU": 16, "GPU": 2}, run, stages, "test")
        assert cpu.device == "cpu" and gpu.device == "cuda"
        assert cpu.options["download"] == {"num_cpus": 0} and cpu.slots["download"] == 3
        if decode == "once":  # the feature actors run TransNet V2 too, and share the GPUs alone
            assert [s.name for s in cpu.stages] == ["download", "normalize", "features"]
            assert cpu.options["features"] == {"num_cpus": 1 + 2 + 1}
            assert gpu.options["features"] == {"num_cpus": 2 + 1, "num_gpus": 1.0}
        else:  # a shots actor and a features actor per GPU
            assert cpu.options["shots"] == {"num_cpus": 1} and cpu.options["features"] == {"num_cpus": 3}
            assert gpu.options["shots"] == {"num_cpus": 1, "num_gpus": 0.5}
        held = sum(2 * cpu.options[s.name]["num_cpus"] for s in cpu.stages if s.stateful)
        assert cpu.slots["normalize"] == 16 - held and cpu.cpus_needed == held + 1
    short = r"has 4 CPUs and this run needs at least 9: 2 shots actor\(s\) of 1 CPU\(s\), 2 features actor"
    with pytest.raises(t12k.T12kError, match=short):
        Placement.plan({"CPU": 4}, run, stages, "test")
    cuda = build_stages(layout, run, FetchConfig(), ShotsConfig(device="cuda"), extract)
    with pytest.raises(t12k.T12kError, match="--device cuda asks for a GPU but the Ray cluster"):
        Placement.plan({"CPU": 16}, run, cuda, "test")


def test_a_users_stage_runs_on_ray():
    ray = pytest.importorskip("ray")
    import sys

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # the workers cannot import this test module: its stage class travels by value, as a notebook's would
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    stage = _Counted()
    summary = t12k.Pipeline([stage]).run([(f"t{i}", i) for i in range(3)], engine="ray")
    assert sorted(summary.done) == ["t0", "t1", "t2"] and summary.ok, summary.failed
    assert stage.setups == 0  # set up in its actor, not here


def test_the_stage_commands_run_their_stages_through_the_scheduler(tmp_path, monkeypatch):
    """`fetch`, `shots` and `extract` hand their stage objects to the scheduler of `t12k run`."""
    import sys

    from t12k.pipeline.extract import extract_features
    from t12k.pipeline.fetch import fetch_collection
    from t12k.pipeline.run.scheduler import Scheduler
    from t12k.pipeline.shots_command import detect_shots

    sys.path.insert(0, os.path.dirname(__file__))
    import run_corpus as rc

    seen: list[list[str]] = []
    real = Scheduler.__init__

    def spy(self, stages, *args, **kw):
        seen.append([s.name for s in stages])
        real(self, stages, *args, **kw)

    monkeypatch.setattr(Scheduler, "__init__", spy)
    videos = tmp_path / "videos"
    fetched = fetch_collection(rc.items(rc.served(), ["r1"]), videos, rc.FETCH, sleep=0, progress=False)
    shots = detect_shots(videos, tmp_path / "shots.zarr", rc.SHOTS, progress=False)
    feats = extract_features(videos, tmp_path / "shots.zarr", tmp_path / "f", rc.EXTRACT, progress=False, log=print)
    assert fetched.done == shots.done == feats.done == ["r1"]
    assert seen == [["download", "normalize"], ["shots"], ["features"]]
    assert feats.totals["clips"] == len(FeatureStore.open(next((tmp_path / "f").glob("*.zarr"))).read("r1"))


def test_the_readmes_pipeline_block_runs(three_videos, tmp_path, monkeypatch):
    """The README's stage of one's own, run as written in a folder with videos/."""
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    section = readme.read_text().split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "t12k.Pipeline(" in b]
    (tmp_path / "videos").symlink_to(three_videos)
    monkeypatch.chdir(tmp_path)
    scope: dict = {"t12k": t12k, "print": lambda *a: None}
    exec(compile(block, str(readme), "exec"), scope)
    want = {m: len(t12k.detect_shots(three_videos / f"{m}.mp4", "cpu").scenes) for m in ("a1", "b2", "c3")}
    assert scope["summary"].outputs == want and scope["summary"].ok


def test_status_sees_the_trailers_the_model_stages_are_on(three_videos, tmp_path, monkeypatch):
    """`t12k status` counts as in flight the trailer the shots stage is detecting and the ones
    whose clips reached the backbones and are not committed yet (their claims), and none after."""
    from t12k.pipeline.run import stages as stages_module
    from t12k.pipeline.status import collection_status

    work = tmp_path / "work"
    work.mkdir()
    (work / "videos").symlink_to(three_videos)
    ids = ["a1", "b2", "c3"]

    def flying() -> dict[str, int]:
        return {s.stage: s.in_flight for s in collection_status(work, ids).stages}

    seen: dict[str, dict[str, int]] = {}
    detect, commit = stages_module.Shots.__call__, stages_module.Features._commit

    def detecting(self, mid, *args, **kw):
        seen[f"shots {mid}"] = flying()
        return detect(self, mid, *args, **kw)

    def committing(self, mid, *args, **kw):
        seen[f"features {mid}"] = flying()
        return commit(self, mid, *args, **kw)

    monkeypatch.setattr(stages_module.Shots, "__call__", detecting)
    monkeypatch.setattr(stages_module.Features, "_commit", committing)
    config = ExtractConfig(backbones="shufflenet2d", weights="none", device="cpu", workers=0)
    shots = Shots(work / "shots.zarr", ShotsConfig(device="cpu"), batch=3)
    features = Features(work / "features", work / "shots.zarr", config, batch=3)
    assert t12k.Pipeline([shots, features]).run([(m, three_videos / f"{m}.mp4") for m in ids]).ok
    for mid in ids:
        assert seen[f"shots {mid}"]["shots"] == 1  # the one in hand, not the group's others
        assert 1 <= seen[f"features {mid}"]["features"] <= 3
    assert seen["features a1"]["features"] > seen["features c3"]["features"] == 1  # released as committed
    assert {s.stage: s.in_flight for s in collection_status(work, ids).stages} == {
        "fetch": 0, "shots": 0, "features": 0,
    }  # fmt: skip


def test_a_writer_on_another_machine_is_live_while_it_beats(tmp_path, monkeypatch):
    """A lock this machine does not see held (its holder runs on another node sharing the
    folder) reads as live while its holder's heartbeat keeps touching it, and not once the
    holder lets go; `t12k status` counts that holder's claims in flight."""
    import time

    from t12k.pipeline import status
    from t12k.storage import locks

    monkeypatch.setattr(locks, "BEAT", 0.05)
    lock = tmp_path / "x.lock"
    lock.write_text("")
    os.utime(lock, (1, 1))
    assert not locks.is_live(lock, set())  # neither held here nor beaten
    beat = locks.Heartbeat(lock)
    os.utime(lock, (1, 1))
    deadline = time.monotonic() + 10
    while os.stat(lock).st_mtime < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert locks.is_live(lock, set())  # beaten again by its thread
    beat.close()
    assert not beat.thread.is_alive() and not locks.is_live(lock, set())  # let go: dated back

    # another node's shots worker on a1: its claim folder, its lock beaten, not held here
    work = tmp_path / "work"
    claim = work / ".shots.zarr.staging" / "0123abcd"
    claim.mkdir(parents=True)
    (work / "shots.zarr").mkdir()
    (claim / ".lock").write_text("")
    (claim / "a1").touch()
    monkeypatch.setattr(status, "held_locks", lambda: set())
    flying = {s.stage: s.in_flight for s in status.collection_status(work, ["a1", "b2"]).stages}
    assert flying["shots"] == 1
    os.utime(claim / ".lock", (1, 1))  # its node died two minutes ago
    flying = {s.stage: s.in_flight for s in status.collection_status(work, ["a1", "b2"]).stages}
    assert flying["shots"] == 0
