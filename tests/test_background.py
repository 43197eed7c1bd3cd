"""Decoding in a background thread (`--workers 0`, the CPU's default): the items come in order
from another thread, a failure reaches the consumer, and stopping early stops the thread and
closes the source."""

import threading
import time

import numpy as np
import pytest
from conftest import THREE_SHOTS, MeanRunner, mean_features

from t12k.pipeline import extract as ex
from t12k.pipeline.extract.background import in_thread
from t12k.shots import plan_clips


def test_items_come_in_order_from_another_thread():
    made_in = []

    def source():
        for i in range(50):
            made_in.append(threading.current_thread().name)
            yield i

    assert list(in_thread(source(), 3)) == list(range(50))
    assert set(made_in) == {"t12k-decode"}


def test_a_failure_of_the_source_reaches_the_consumer_after_its_items():
    def source():
        yield 1
        yield 2
        raise ValueError("bad frame 3")

    got = []
    with pytest.raises(ValueError, match="bad frame 3"):
        for x in in_thread(source(), 1):
            got.append(x)
    assert got == [1, 2]


def test_stopping_early_closes_the_source_and_ends_the_thread():
    closed = threading.Event()

    def source():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    items = in_thread(source(), 2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert closed.wait(5)
    deadline = time.monotonic() + 5
    while any(t.name == "t12k-decode" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "t12k-decode" for t in threading.enumerate())


def test_the_engine_decodes_in_a_thread_with_no_workers_and_gives_every_clip(three_videos, monkeypatch):
    assert ex.worker_count("auto", "cpu") == 0
    plans = {m: plan_clips(np.array(s), s[-1][1] + 1, "shot", 24, 8) for m, s in THREE_SHOTS.items()}
    decoded_in = set()
    real = ex.stream.iter_clip_inputs

    def spy(*a, **k):
        decoded_in.add(threading.current_thread().name)
        yield from real(*a, **k)

    monkeypatch.setattr(ex.stream, "iter_clip_inputs", spy)
    runners = [MeanRunner("img", "2d"), MeanRunner("vid", "3d")]
    done, failed = {}, {}
    jobs = [ex.Job(m, str(three_videos / f"{m}.mp4"), p) for m, p in plans.items()]
    ex.Engine(runners, 5, workers=0).run(jobs, lambda m, f, r: done.__setitem__(m, f), failed.__setitem__)
    assert not failed and sorted(done) == sorted(plans) and decoded_in == {"t12k-decode"}
    for m, plan in plans.items():
        video = three_videos / f"{m}.mp4"
        np.testing.assert_allclose(done[m]["img"], mean_features(video, plan, runners[0].geometry), rtol=1e-6)
        np.testing.assert_allclose(done[m]["vid"], mean_features(video, plan, runners[1].geometry), rtol=1e-6)
