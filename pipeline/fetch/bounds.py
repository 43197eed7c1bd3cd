"""Bounds on one download attempt: its size (`max_filesize`) and its time (the deadline).

yt-dlp stops a file whose announced size passes `max_filesize`, but a server that announces
no size (or lies) can send an endless body, and a server that trickles a byte every few
seconds keeps every socket read under the network timeout forever. So:

- the progress hook (`Watch.check`) stops a download whose received bytes pass the cap;
- a watchdog thread (`Watch`) ends the attempt at its deadline, or at once when the run
  stops: it shuts down the sockets this attempt opened, which wakes a read blocked in
  another thread (closing the response would wait for that read's lock). The sockets are
  found with the interpreter's audit event 'socket.connect', raised in the thread that
  connects, so whatever HTTP library yt-dlp picks (requests or urllib) is covered.

Both are permanent failures (a retry would meet the same server), recorded with their own
error kind: 'too-large' and 'too-slow'.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import weakref

from t12k.pipeline.fetch.classify import Permanent

_POLL = 0.25  # seconds between the watchdog's looks at the clock and the stop event

_local = threading.local()  # the Watch of the attempt running in this thread, if any
_hooked = False
_hook_lock = threading.Lock()


def _audit(event: str, args: tuple) -> None:
    """The audit hook: hands every socket that a watched thread connects to its Watch."""
    if event == "socket.connect":
        watch = getattr(_local, "watch", None)
        if watch is not None:
            watch.connected(args[0])


def _install_hook() -> None:
    """Install the audit hook once per process (audit hooks cannot be removed; this one does
    nothing in threads without a Watch)."""
    global _hooked
    with _hook_lock:
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True


def size_text(n: float) -> str:
    """Bytes as a short text: '2 GiB', '500 MiB', '64 KiB', '100 bytes'."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{int(n)} bytes"


def too_large(cap: int, *, announced: int | None = None, received: int | None = None) -> Permanent:
    """The failure of a file larger than `cap` bytes: the size the server `announced`, or
    the bytes `received` when the download was stopped."""
    if announced:
        what = f" (the server announces {size_text(announced)})"
    elif received:
        what = f" (stopped after receiving {size_text(received)})"
    else:
        what = ""
    return Permanent(
        "too-large",
        f"too-large (not retried): the file is larger than the {size_text(cap)} cap{what}; "
        "check that the URL is a trailer, or raise --max-filesize",
    )


class Watch:
    """The bounds of one download attempt, used as a context manager in the thread that runs it.

    `budget` is the seconds the attempt may take from `start()` (the first request);
    `set_budget` changes it once the duration of the video is known. `cap` is the most bytes
    one file may have. When the budget runs out (`expired`) or `stop` is set, the watchdog
    shuts down the attempt's sockets, so that a blocked read returns at once, and refuses new
    connections; the caller then raises `failure()` or `Cancelled`.
    """

    def __init__(self, stop: threading.Event, budget: float, cap: int):
        self.stop, self.budget, self.cap = stop, float(budget), int(cap)
        self.t0: float | None = None
        self.expired = False
        self._sockets: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()
        self._cut = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        _install_hook()
        _local.watch = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.watch = None
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def start(self) -> None:
        """Start the clock (at the first request, after the pause before the download)."""
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="t12k-download-watch", daemon=True)
        self._thread.start()

    def set_budget(self, budget: float) -> None:
        self.budget = float(budget)

    @property
    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def connected(self, sock: socket.socket) -> None:
        """A socket this attempt connects (from the audit hook): watched, or refused once cut."""
        with self._lock:
            if self._cut:
                raise ConnectionAbortedError("the download was stopped (deadline passed or run stopping)")
            self._sockets.add(sock)

    def check(self, status: dict) -> None:
        """The progress hook's part: the download so far is within the cap and the deadline."""
        total = status.get("total_bytes") or 0
        if total > self.cap:
            raise too_large(self.cap, announced=total)
        got = status.get("downloaded_bytes") or 0
        if got > self.cap:
            raise too_large(self.cap, received=got)
        if self.elapsed > self.budget:
            self.expired = True
            raise self.failure()

    def failure(self) -> Permanent:
        """The failure of an attempt that passed its deadline."""
        return Permanent(
            "too-slow",
            f"too-slow (not retried): the download took longer than its deadline of {self.budget:.0f} s "
            "(the server is too slow or stalls); raise --download-deadline or fetch it again later",
        )

    def _run(self) -> None:
        while not self._done.wait(_POLL):
            if self.stop.is_set() or self.elapsed > self.budget:
                self.expired = not self.stop.is_set()
                self._shutdown()
                return

    def _shutdown(self) -> None:
        """Shut down every socket of the attempt (a read blocked on one returns at once)."""
        with self._lock:
            self._cut = True
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already, or never connected
                pass
