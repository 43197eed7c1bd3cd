"""Rules that live once: the folder lock of fetch, train and experiment (storage.locks.hold_folder),
the stop after the site's bot checks (pipeline.fetch.blocking), and the range and choice checks
that come from the settings fields (settings.check_fields)."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest

from t12k.errors import T12kError
from t12k.pipeline.fetch import fetch_collection
from t12k.pipeline.fetch.resume import LOCK_NAME, folder_lock
from t12k.storage import locks


def _failing_flock(err: int):
    real = fcntl.flock

    def flock(fd, flags):
        if flags & fcntl.LOCK_NB:  # the folder lock (the manifest's lock blocks)
            raise OSError(err, os.strerror(err))
        return real(fd, flags)

    return flock


def test_a_file_system_without_locks_is_not_called_another_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(locks.fcntl, "flock", _failing_flock(errno.ENOLCK))
    with pytest.raises(T12kError) as err:
        fetch_collection([], tmp_path, progress=False)
    assert str(err.value) == f"cannot lock output folder {tmp_path} (No locks available); pass another --out"
    assert not isinstance(err.value, locks.FolderInUse)


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES])
def test_a_lock_file_that_cannot_be_written_is_named_truthfully(tmp_path, monkeypatch, err):
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if os.fspath(path).endswith(LOCK_NAME):
            raise OSError(err, os.strerror(err), os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(T12kError) as exc:
        with folder_lock(tmp_path):
            pass
    assert str(exc.value) == f"cannot write in output folder {tmp_path} ({os.strerror(err)}); pass another --out"
    assert "another" not in str(exc.value).split(";")[0]


def test_a_lock_file_in_the_way_is_not_another_fetch(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()  # a folder where the lock file goes: any user, any file system
    with pytest.raises(T12kError) as exc:
        fetch_collection([], tmp_path, progress=False)
    assert str(exc.value) == f"cannot write in output folder {tmp_path} (Is a directory); pass another --out"


def test_a_second_fetch_on_a_held_folder_is_refused_and_the_holder_is_recorded(tmp_path):
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(locks.FolderInUse) as exc:
            fetch_collection([], tmp_path, progress=False)
    assert str(exc.value) == (
        f"another t12k fetch is writing to {tmp_path}; wait for it to finish or choose another output folder"
    )
    with folder_lock(tmp_path):  # free again once the holder is done
        pass


def test_train_and_experiment_locks_share_the_rule(tmp_path):
    from t12k.divita.runfiles import FolderInUse
    from t12k.divita.runfiles import folder_lock as run_lock

    assert FolderInUse is locks.FolderInUse
    with run_lock(tmp_path, ".t12k-train.lock", "run folder", "training"):
        with pytest.raises(FolderInUse) as exc:
            with run_lock(tmp_path, ".t12k-train.lock", "run folder", "training"):
                pass
    assert str(exc.value) == (
        f"run folder {tmp_path} is in use by another training (pid {os.getpid()}); wait for it or pass another --out"
    )


# ---- the stop after the site's bot checks ---------------------------------------------------------


def _downloads(kinds: list[str]):
    from t12k.pipeline.fetch.download import Downloaded
    from t12k.pipeline.fetch.ids import FetchItem
    from t12k.pipeline.run.stages import Outcome

    for k, kind in enumerate(kinds):
        d = Downloaded(FetchItem(f"t{k}", f"https://youtu.be/v{k}"), folder=None, t0=0.0, kind=kind, reason=kind)
        status = "ok" if not kind else "cancelled" if kind == "cancelled" else "failed"
        yield d, Outcome(d.item.id, status, kind, data=d)


@pytest.mark.parametrize(
    ("kinds", "stopped"),
    [
        (["bot-check", "rate-limited", "bot-check"], 3),
        (["bot-check", "bot-check", "", "bot-check", "bot-check"], None),  # a download that worked starts again
        (["bot-check", "http-404", "bot-check", "cancelled", "bot-check", "rate-limited"], 4),  # others leave it
    ],
)
def test_the_run_stops_where_fetch_stops_after_the_site_blocks(tmp_path, kinds, stopped):
    from t12k.pipeline.fetch.blocking import BLOCKED, SiteBlock
    from t12k.pipeline.run.config import Layout
    from t12k.pipeline.run.ledger import Ledger
    from t12k.pipeline.stage import Ticket

    (tmp_path / "videos").mkdir()
    ledger, site, said = Ledger(Layout(tmp_path), total=len(kinds), progress=False), SiteBlock(), None
    for d, out in _downloads(kinds):
        if d.kind:
            said = site.failed(d.kind) if d.kind != "cancelled" else said
        else:
            site.downloaded()
        ledger.record("download", Ticket(d.item.id, d.item), out, stopping=False)
    assert said == ledger.summary.stopped == (BLOCKED.format(n=stopped) if stopped else None)


# ---- ranges and choices from the settings fields --------------------------------------------------


def _refusal(make) -> str:
    with pytest.raises(T12kError) as exc:
        make()
    return str(exc.value)


def test_every_stage_says_a_broken_range_or_choice_in_one_way():
    from t12k.divita.config import TrainConfig
    from t12k.pipeline.extract.config import ExtractConfig
    from t12k.pipeline.fetch.config import FetchConfig
    from t12k.pipeline.run.config import RunConfig
    from t12k.pipeline.shots_command import ShotsConfig

    def train(**kw):
        return TrainConfig(image_store="s.zarr", labels="m.csv", out_dir="run", **kw).validate()

    cases = {
        "--fpc must be at least 1; got 0": lambda: ExtractConfig(fpc=0),
        "--prefetch must be at least 1; got -2": lambda: ExtractConfig(prefetch=-2),
        "--zarr-format must be one of 2, 3; got 5": lambda: ExtractConfig(zarr_format=5),
        "--reps-on must be one of auto, workers, device; got 'gpu'": lambda: ExtractConfig(reps_on="gpu"),
        "--threshold must be a probability between 0 and 1; got 1.5": lambda: ShotsConfig(threshold=1.5),
        "--threshold must be a probability between 0 and 1; got 'high'": lambda: ShotsConfig(threshold="high"),
        "--zarr-format must be one of 2, 3; got 4": lambda: ShotsConfig(zarr_format=4),
        "--engine must be one of local, ray; got 'dask'": lambda: RunConfig(engine="dask"),
        "--queue must be at least 1; got 0": lambda: RunConfig(queue=0),
        "--ray-cpus must be at least 1; got 0": lambda: RunConfig(ray_cpus=0),
        "--workers must be at least 1; got 0": lambda: FetchConfig(workers=0).validate(),
        "--retries must be 0 or more; got -1": lambda: FetchConfig(retries=-1).validate(),
        "--timeout must be a positive number of seconds; got 0.0": lambda: FetchConfig(timeout=0.0).validate(),
        "--sleep-requests must be 0 or more seconds; got -1": lambda: FetchConfig(sleep_requests=-1).validate(),
        "--split must be one of 0, 1, 2; got 3": lambda: train(split=3),
        "--aggregation must be one of tsfm, gru, conv, savg, ctt; got 'lstm'": lambda: train(aggregation="lstm"),
        "--max-epochs must be at least 1; got 0": lambda: train(max_epochs=0),
        "--lr must be positive; got 0.0": lambda: train(lr=0.0),
    }
    assert {message: _refusal(make) for message, make in cases.items()} == {m: m for m in cases}
    # None (not given) keeps every rule; values on the bounds are in range
    RunConfig(actors=None, ray_cpus=None)
    ShotsConfig(threshold=0.0), ShotsConfig(threshold=1.0)
    FetchConfig(sleep=0, sleep_requests=None, download_deadline=None, retries=0).validate()
    train(max_epochs=1, lr=1e-9)


def test_the_command_line_prints_the_rule_of_the_field(tmp_path, capsys):
    from t12k.cli import main

    argv = ["run", "--url", "http://127.0.0.1:9/x.mp4", "--out", str(tmp_path / "o"), "--backbone", "shufflenet2d"]
    assert main([*argv, "--queue", "0", "--weights", "none"]) == 2
    assert capsys.readouterr().err == "t12k run: error: --queue must be at least 1; got 0\n"


def test_settings_in_files_keep_the_field_ranges_too():
    from t12k.divita.config import check_setting

    assert check_setting("max_epochs", "3", "a.yaml") == 3
    assert _refusal(lambda: check_setting("max_epochs", 0, "a.yaml (configuration 1)")) == (
        "a.yaml (configuration 1): max_epochs 0 is not valid; max_epochs must be at least 1"
    )
    assert _refusal(lambda: check_setting("fusion", "middle", "a.yaml")) == (
        "a.yaml: fusion 'middle' is not valid; fusion must be one of early, late"
    )


def test_one_checker_reads_the_rule_from_the_metadata():
    from dataclasses import dataclass

    from t12k.settings import check_fields, setting

    @dataclass
    class Plugin:
        mode: str = setting("a", "a mode", choices=("a", "b"))
        rate: float | None = setting(None, "a rate", above=0.5, max=2, unit="Hz")
        count: int = setting(1, "a count", flag="--n", min=1, max=9)

    check_fields(Plugin())
    assert _refusal(lambda: check_fields(Plugin(mode="c"))) == "--mode must be one of a, b; got 'c'"
    assert _refusal(lambda: check_fields(Plugin(rate=0.5))) == "--rate must be more than 0.5 and at most 2 Hz; got 0.5"
    assert _refusal(lambda: check_fields(Plugin(rate=3))) == "--rate must be more than 0.5 and at most 2 Hz; got 3"
    assert (
        _refusal(lambda: check_fields(Plugin(rate=float("nan"))))
        == "--rate must be more than 0.5 and at most 2 Hz; got nan"
    )
    assert _refusal(lambda: check_fields(Plugin(count=10))) == "--n must be between 1 and 9; got 10"
    check_fields(Plugin(rate=2, count=9))
