"""`t12k run --engine local`: the three stages as staged workers on this machine."""

from __future__ import annotations

import csv
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from t12k import cli
from t12k.errors import T12kError
from t12k.pipeline.fetch import FetchItem
from t12k.pipeline.fetch.download import Downloaded
from t12k.pipeline.run import RunConfig, run_collection
from t12k.pipeline.run.config import STAGES, Layout
from t12k.pipeline.run.faults import Fault
from t12k.pipeline.run.ledger import Ledger
from t12k.pipeline.run.scheduler import Scheduler
from t12k.pipeline.stage import Outcome, Stage, Ticket

pytest.register_assert_rewrite("run_corpus")  # its asserts explain themselves too
import run_corpus as rc  # noqa: E402

RUN_OPTIONS = ["--backbone", "shufflenet2d", "--weights", "none", "--device", "cpu", "--batch-size", "8", "--quiet"]


@pytest.fixture
def run_command():
    """`t12k run ARGS` through cli.main."""
    return lambda *args: cli.main(["run", *args])


def _items_csv(path: Path, url: str) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "url"])
        w.writerows((it.id, it.url) for it in rc.items(url))
    return path


def _array_times(out: Path) -> dict[str, float]:
    """When each trailer's arrays were committed (the per-id folders of every store)."""
    stores = [out / "shots.zarr", *(out / "features").glob("*.zarr")]
    return {f"{s.name}/{p.name}": p.stat().st_mtime_ns for s in stores for p in s.iterdir() if p.name in rc.GOOD}


@pytest.mark.parametrize("decode", ["once", "per-stage"])
def test_run_leaves_what_the_three_stage_commands_leave_and_resumes(run_command, tmp_path, capsys, decode):
    url, ref = rc.served(), rc.reference()
    out = tmp_path / "out"
    items = _items_csv(tmp_path / "items.csv", url)
    options = [*RUN_OPTIONS, "--decode", decode]
    assert run_command(str(items), "--out", str(out), "--workers", "2", *options) == 1  # two bad trailers
    text = capsys.readouterr().out
    assert "run: 5 done, 0 already done, 2 failed" in text
    assert (
        "missing: download: not-found (HTTP 404" in text and "junk: normalize: the download is not a readable" in text
    )
    assert "busy download" in text and "features" in text
    rc.assert_same_stores(out, ref)
    rc.assert_same_statuses(out, ref)
    assert not [p.name for p in (out / "videos").iterdir() if p.name.startswith(".") and "t12k-tmp" in p.name]

    before = _array_times(out)
    assert run_command(str(items), "--out", str(out), *options) == 1
    again = capsys.readouterr().out
    assert "run: 0 done, 5 already done, 2 failed" in again  # only the failed ones are tried again
    assert _array_times(out) == before
    fetched = {**dict.fromkeys(rc.GOOD, "skipped"), "missing": "failed", "junk": "failed"}  # as `t12k fetch` again
    assert rc.statuses(out / "videos" / "manifest.csv") == fetched


def test_bad_run_settings_are_one_line_errors(run_command, tmp_path, capsys):
    with pytest.raises(T12kError, match="--queue must be at least 1"):
        RunConfig(queue=0)
    assert run_command("--url", "http://127.0.0.1:9/x.mp4", "--out", str(tmp_path), "--address", "h:1") == 2
    err = capsys.readouterr().err.strip()
    assert err == "t12k run: error: --address h:1 names a Ray cluster; add --engine ray (or drop --address)"


def test_the_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    from t12k.pipeline.run.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(T12kError, match=r"^--engine ray needs Ray; install it with pip install 't12k\[ray\]'$"):
        import_ray()


def test_ctrl_c_stops_the_workers_and_the_same_run_resumes(tmp_path):
    url, ref = rc.served(), rc.reference()
    out, marks = tmp_path / "out", tmp_path / "marks"
    hold = Fault("features", "r3", str(marks), action="hold", seconds=2.0)
    config = RunConfig(queue=1, group=1, faults=(hold,))

    def interrupt_when_held():
        while not list(marks.glob("features-r3-*")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while r3 is held before its commit

    threading.Thread(target=interrupt_when_held, daemon=True).start()
    kw = {"fetch": rc.FETCH, "shots": rc.SHOTS, "extract": rc.EXTRACT, "progress": False, "log": lambda m: None}
    with pytest.raises(KeyboardInterrupt):
        run_collection(rc.items(url), out, config, **kw)
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert not [n for n in videos if "t12k-tmp" in n]  # no download or encode left half-written
    done_before = set(rc.statuses(out / "features" / "extract.manifest.csv"))
    assert "r3" in done_before  # the trailer in hand was finished and committed
    assert done_before < set(rc.GOOD)  # the others stopped

    summary = run_collection(rc.items(url), out, RunConfig(), **kw)
    assert set(summary.skipped) == done_before and set(summary.done) == set(rc.GOOD) - done_before
    rc.assert_same_stores(out, ref)
    assert rc.statuses(out / "features" / "extract.manifest.csv") == dict.fromkeys(rc.GOOD, "ok")


class _Named(Stage):
    """A stage of the run known by its name alone (the fake backends below do its work)."""

    def __init__(self, name: str, batch: int = 1):
        self.name, self.batch = name, batch  # type: ignore[misc]


def _stages(**batch: int) -> list[Stage]:
    return [_Named(s, batch.get(s, 1)) for s in STAGES]


class _SlowModels:
    """A backend whose downloads, normalizations and shots finish at once and whose feature
    stage finishes one call per `every` waits, counting what is past download and not done."""

    def __init__(self, every: int = 4):
        self.slots = {"download": 3, "normalize": 2, "shots": 1, "features": 1}
        self.group = {"features": 2}
        self.every, self.waits = every, 0
        self.pending: dict[Future, tuple[str, list[Ticket]]] = {}
        self.started: dict[str, int] = dict.fromkeys(self.slots, 0)
        self.features_done = 0
        self.most_held = 0  # trailers downloaded and not through the feature stage, at most

    def submit(self, stage, tickets):
        fut: Future = Future()
        self.pending[fut] = (stage, tickets)
        self.started[stage] += len(tickets)
        held = self.started["download"] - self.features_done
        self.most_held = max(self.most_held, held)
        return fut

    def wait(self, handles, timeout):
        self.waits += 1
        done = []
        for fut in handles:
            stage, tickets = self.pending[fut]
            if stage != "features" or self.waits % self.every == 0:
                done.append(fut)
                if stage == "features":
                    self.features_done += len(tickets)
                fut.set_result([self._outcome(stage, t) for t in tickets])
        return done

    @staticmethod
    def _outcome(stage, t):
        data = Downloaded(t.item, Path("/nonexistent"), 0.0) if stage == "download" else f"/v/{t.mid}.mp4"
        return Outcome(t.mid, "ok", fields={"frames": 1, "shots": 1, "clips": 1}, data=data)

    def result(self, fut):
        return fut.result()

    def failure(self, exc):
        return str(exc)

    def stop(self):
        pass

    def close(self):
        pass


def _held_at_most(folder: Path, n: int) -> int:
    """Trailers downloaded and not through the slow feature stage, at most, in a run of `n`."""
    layout = Layout(folder)
    layout.make()
    backend = _SlowModels()
    ledger = Ledger(layout, n, progress=False, slots=backend.slots)
    tickets = [("download", Ticket(f"t{i:03d}", FetchItem(f"t{i:03d}", f"http://x/{i}"))) for i in range(n)]
    assert Scheduler(_stages(features=2), backend, ledger, bound=2).run(tickets) == 0
    summary = ledger.close([t.item for _, t in tickets])
    assert len(summary.done) == n and backend.features_done == n
    assert backend.started == {"download": n, "normalize": n, "shots": n, "features": n}
    return backend.most_held


def test_a_slow_stage_holds_back_the_ones_before_it(tmp_path, monkeypatch):
    """However long the list, what waits between download and the slow last stage is bounded."""
    monkeypatch.setattr("t12k.pipeline.run.ledger.Recorder.finished", lambda *a, **k: None)
    short, long = _held_at_most(tmp_path / "a", 40), _held_at_most(tmp_path / "b", 400)
    assert short == long <= 20
