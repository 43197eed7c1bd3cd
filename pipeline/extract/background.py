"""Items of an iterator made in a background thread of this process, a bounded number ahead.

`t12k extract` on a CPU decodes this way (`--workers 0`, the CPU's default): ffmpeg decodes in
its own process, and the thread reads its frames, counts the colour histograms and resizes
while the main thread runs the networks (OpenCV, PyTorch and OpenVINO let go of the GIL). No
chunk crosses a process boundary, and the resize uses the process's thread pool: 1.1x to 1.4x
the clips/s of one decode worker process on 2 cores (`bench/bench_extract_cpu.py`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

from t12k.errors import Cancelled

T = TypeVar("T")


def put(out: queue.Queue[T], item: T, stop: threading.Event) -> None:
    """Put `item`, waiting for room; once `stop` is set, items other than None are dropped."""
    while True:
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set() and item is not None:
                return


def drain(out: queue.Queue) -> None:
    try:
        while True:
            out.get_nowait()
    except queue.Empty:
        pass


def until(stop: threading.Event, items: Iterator) -> Iterator:
    """The items of `items` while `stop` is not set; once it is, Cancelled: checked before each
    item is handed on and when `items` ends (a producer that stopped early is not taken for
    one that finished). `items` is closed (its threads and processes ended) however this ends."""
    try:
        for item in items:
            if stop.is_set():
                raise Cancelled("stopped")
            yield item
        if stop.is_set():
            raise Cancelled("stopped")
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def in_thread(source: Iterable, ahead: int) -> Iterator:
    """`source`'s items, made in a background thread at most `ahead` items ahead. An exception
    of the source is raised here; closing this generator (or an exception in its consumer)
    stops the thread and closes the source (its ffmpeg processes with it)."""
    stop = threading.Event()
    out: queue.Queue = queue.Queue(maxsize=max(1, int(ahead)))
    failure: list[BaseException] = []

    def work() -> None:
        items = iter(source)
        try:
            with torch.inference_mode():
                for item in items:
                    put(out, item, stop)
                    if stop.is_set():
                        break
        except BaseException as exc:  # handed to the consumer
            failure.append(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            put(out, None, stop)

    thread = threading.Thread(target=work, name="t12k-decode", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not None:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():
            drain(out)
            thread.join(0.05)
