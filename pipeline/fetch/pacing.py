"""Politeness towards remote sites: pauses between the starts of downloads (all workers
together) and between the requests of one extraction. Loopback hosts get no pause unless
one is asked for."""

from __future__ import annotations

import ipaddress
import threading
import time
from urllib.parse import urlparse

from t12k.pipeline.fetch.config import FetchConfig

DEFAULT_SLEEP = 5.0  # seconds between the starts of two downloads, all workers together
DEFAULT_SLEEP_REQUESTS = 1.0  # seconds between the requests yt-dlp makes to extract one video


def is_loopback(url: str) -> bool:
    """Whether `url` points at this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlparse(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pauses(url: str, config: FetchConfig) -> tuple[float, float]:
    """(pause between download starts, pause between extraction requests) for `url`."""
    local = is_loopback(url)
    sleep = config.sleep if config.sleep is not None else (0.0 if local else DEFAULT_SLEEP)
    requests = (
        config.sleep_requests if config.sleep_requests is not None else (0.0 if local else DEFAULT_SLEEP_REQUESTS)
    )
    return sleep, requests


class Pacer:
    """At least `interval` seconds between the starts of two downloads, whatever thread asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self.turns: list[float] = []  # the monotonic times granted, in order

    def wait(self, interval: float, stop: threading.Event) -> bool:
        """Wait for this download's turn; False if the run is stopping."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + max(0.0, interval)
            self.turns.append(start)
        return not (start > now and stop.wait(start - now))
