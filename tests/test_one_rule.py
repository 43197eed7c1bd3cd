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
        yield d, Outcome(d.item.id, "ok" if not kind else "cancelled" if kind == "cancelled" else "failed", kind)


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

    (tmp_path / "videos").mkdir()
    ledger, site, said = Ledger(Layout(tmp_path), total=len(kinds), progress=False), SiteBlock(), None
    for d, out in _downloads(kinds):
        if d.kind:
            said = site.failed(d.kind) if d.kind != "cancelled" else said
        else:
            site.downloaded()
        ledger.downloaded(d, out)
    assert said == ledger.summary.stopped == (BLOCKED.format(n=stopped) if stopped else None)
