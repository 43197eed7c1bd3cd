"""Preemption of the stage commands: SIGTERM (what Slurm sends, SIGKILL following after its
grace time) in the middle of a trailer stops `t12k fetch`, `t12k shots` and `t12k extract`
within seconds, with nothing half-written and no trailer recorded failed, and the same command
run again ends with what an uninterrupted run writes. (`t12k run`: tests/test_run_stop.py.)"""

from __future__ import annotations

import csv
import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from t12k.pipeline.extract import extract_features
from t12k.pipeline.fetch import fetch_collection
from t12k.pipeline.shots_command import detect_shots
from t12k.storage import FeatureStore, ShotStore

pytest.register_assert_rewrite("run_corpus")
import run_corpus as rc  # noqa: E402

SLOW = 2.0  # seconds each model call of the child takes: the stop may wait for the one in hand
STOP_DEADLINE = 10.0  # from SIGTERM to the exit (Slurm's grace time is often 30 s or more)
START_DEADLINE = 240.0  # for the child to reach the middle of its first trailer

# A `t12k` command whose method TARGET (module.Class.method) takes SLOW s a call, marking MARK
# when a call starts: the signal then lands in the middle of a trailer.
_SLOWED = textwrap.dedent(
    """
    import importlib, sys, time
    from pathlib import Path
    mark, slow, target = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    module, cls, name = target.rsplit(".", 2)
    owner = getattr(importlib.import_module(module), cls)
    real = getattr(owner, name)

    def slowed(self, *args, **kwargs):
        mark.touch()
        time.sleep(slow)
        return real(self, *args, **kwargs)

    setattr(owner, name, slowed)
    from t12k import cli
    sys.exit(cli.main(sys.argv[4:]))
    """
)


def _wait_for(ready, proc: subprocess.Popen, deadline: float, what: str) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() - t0 > deadline:
            pytest.fail(f"the command did not reach {what} in {deadline} s")
        time.sleep(0.05)


def _terminated(cmd: list[str], ready, what: str) -> tuple[str, float]:
    """Start `cmd`, send it SIGTERM once `ready()`, and return its stderr and the seconds it
    took to exit (failing past STOP_DEADLINE or on any exit but 130)."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(ready, proc, START_DEADLINE, what)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_DEADLINE} s after SIGTERM")
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 130, err
    assert "interrupted; finished trailers are kept" in err and "Traceback" not in err, err
    return err, seconds


def _slowed(mark: Path, target: str, args: list[str]) -> list[str]:
    return [sys.executable, "-c", _SLOWED, str(mark), str(SLOW), target, *args]


def _videos(folder: Path) -> Path:
    """The reference's normalized videos of the corpus (what its shots and features were made from)."""
    folder.mkdir(parents=True)
    for mid in rc.GOOD:
        shutil.copy(rc.reference() / "videos" / f"{mid}.mp4", folder)
    return folder


def _no_staging_left(store: Path) -> None:
    root = store.parent / f".{store.name}.staging"
    left = [p.name for p in root.iterdir() if p.name != ".lock"] if root.is_dir() else []
    assert not left, f"staging folders left beside {store}: {left}"


def test_sigterm_in_the_middle_of_a_shot_detection(tmp_path):
    out = tmp_path / "out"
    videos, store = _videos(out / "videos"), out / "shots.zarr"
    args = ["shots", "--videos", str(videos), "--store", str(store), "--device", "cpu", "--quiet"]
    mark = tmp_path / "window-started"
    _, seconds = _terminated(
        _slowed(mark, "t12k.shots.transnet.ShotDetector._forward", args), mark.exists, "its first TransNet V2 batch"
    )
    print(f"shots: exited {seconds:.1f} s after SIGTERM")
    assert "failed" not in rc.statuses(out / "shots.manifest.csv").values()
    assert len(ShotStore.open(store).ids()) < len(rc.GOOD)  # it did stop early
    _no_staging_left(store)
    summary = detect_shots(videos, store, rc.SHOTS, progress=False)
    assert summary.ok and set(summary.done) | set(summary.skipped) == set(rc.GOOD)
    ref = ShotStore.open(rc.reference() / "shots.zarr")
    got = ShotStore.open(store)
    assert got.ids() == sorted(rc.GOOD)
    for mid in rc.GOOD:
        assert (got.shots(mid) == ref.shots(mid)).all() and (got.predictions(mid) == ref.predictions(mid)).all()
    assert rc.statuses(out / "shots.manifest.csv") == dict.fromkeys(rc.GOOD, "ok")


def test_sigterm_in_the_middle_of_a_feature_extraction(tmp_path):
    out = tmp_path / "out"
    videos, feats = _videos(out / "videos"), out / "features"
    shutil.copytree(rc.reference() / "shots.zarr", out / "shots.zarr")
    args = ["extract", "--videos", str(videos), "--shots", str(out / "shots.zarr"), "--out", str(feats)]
    args += ["--backbone", "shufflenet2d", "--weights", "none", "--device", "cpu", "--batch-size", "1", "--quiet"]
    mark = tmp_path / "batch-started"
    _, seconds = _terminated(
        _slowed(mark, "t12k.pipeline.extract.backbone.BackboneRunner.forward", args), mark.exists, "its first batch"
    )
    print(f"extract: exited {seconds:.1f} s after SIGTERM")
    assert "failed" not in rc.statuses(feats / "extract.manifest.csv").values()
    (name,) = [p.name for p in feats.glob("*.zarr")]
    assert len(FeatureStore.open(feats / name).ids()) < len(rc.GOOD)
    _no_staging_left(feats / name)
    summary = extract_features(videos, out / "shots.zarr", feats, rc.EXTRACT, progress=False, log=lambda m: None)
    assert summary.ok and set(summary.done) | set(summary.skipped) == set(rc.GOOD)
    rc.assert_same_stores(out, rc.reference())
    assert rc.statuses(feats / "extract.manifest.csv") == dict.fromkeys(rc.GOOD, "ok")


class _Trickle(http.server.SimpleHTTPRequestHandler):
    """Serves files a few hundred bytes at a time while the server's `delay` is set."""

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        while chunk := source.read(256):
            outputfile.write(chunk)
            outputfile.flush()
            time.sleep(self.server.delay)  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:  # type: ignore[no-untyped-def]
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    delay = 0.0

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # a stopped download
            super().handle_error(request, client_address)


def _downloading(videos: Path) -> bool:
    """Whether a download has written part of a file (a temporary folder with a file in it)."""
    if not videos.is_dir():
        return False
    return any(p.is_dir() and any(p.iterdir()) for p in videos.glob(".t12k-tmp-*"))


def test_sigterm_in_the_middle_of_a_download(tmp_path):
    corpus = rc.build(tmp_path / "corpus")
    server = _Server(("127.0.0.1", 0), functools.partial(_Trickle, directory=str(corpus)))
    server.delay = 0.1  # about 2.5 KB/s: a trailer takes seconds
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        items = tmp_path / "items.csv"
        items.write_text("id,url\n" + "".join(f"{it.id},{it.url}\n" for it in rc.items(url)))
        videos = tmp_path / "out" / "videos"
        args = ["fetch", str(items), "--out", str(videos), "--workers", "2", "--sleep", "0", "--quiet"]
        cmd = [sys.executable, "-m", "t12k.cli", *args]
        _, seconds = _terminated(cmd, lambda: _downloading(videos), "the middle of a download")
        print(f"fetch: exited {seconds:.1f} s after SIGTERM")
        assert not [p.name for p in videos.iterdir() if ".t12k-tmp" in p.name]  # nothing half-written
        rows = rc.statuses(videos / "manifest.csv")
        assert not [m for m in rc.GOOD if rows.get(m) == "failed"], rows
        assert len([m for m in rc.GOOD if (videos / f"{m}.mp4").is_file()]) < len(rc.GOOD)
        server.delay = 0.0
        summary = fetch_collection(rc.items(url), videos, rc.FETCH, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(summary.done + summary.skipped) == sorted(rc.GOOD), summary.text()
    ref = rc.reference() / "videos"
    assert rc.statuses(videos / "manifest.csv") == rc.statuses(ref / "manifest.csv")

    def facts(path: Path) -> dict[str, tuple[str, str]]:
        with open(path, newline="") as fh:
            return {r["id"]: (r["frames"], r["duration"]) for r in csv.DictReader(fh) if r["id"] in rc.GOOD}

    assert facts(videos / "manifest.csv") == facts(ref / "manifest.csv")
