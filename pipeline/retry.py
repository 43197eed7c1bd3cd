"""The one retry policy of t12k: a bounded number of retries with jittered exponential backoff.

Every network client of t12k (yt-dlp downloads in `fetch`, the published stores in
`download-reps`) retries through this policy and only through it: the libraries underneath
are told not to retry on their own, so `retries=r` means at most r + 1 attempts.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from t12k.errors import Cancelled, T12kError

T = TypeVar("T")


class Transient(Exception):
    """A failure worth another attempt (connection trouble, timeouts, HTTP 5xx/408/429)."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2  # attempts after the first
    backoff: float = 2.0  # seconds before the first retry; doubled for each further one
    jitter: float = 0.25  # +- share of the delay drawn at random, so workers do not retry in step

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise T12kError(f"retries must be 0 or more, not {self.retries}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        spread = 1.0 + self.jitter * (2.0 * random.random() - 1.0)
        return self.backoff * (2 ** (attempt - 1)) * spread

    def call(
        self,
        fn: Callable[[int], T],
        *,
        stop: threading.Event | None = None,
        on_retry: Callable[[int, Transient], None] | None = None,
    ) -> T:
        """`fn(attempt)` until it returns; a `Transient` it raises is retried after the backoff,
        at most `retries` times, then raised again. Anything else goes straight through.
        A set `stop` event ends the wait with `Cancelled`."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(attempt)
            except Transient as exc:
                if attempt > self.retries:
                    raise
                if on_retry is not None:
                    on_retry(attempt, exc)
                wait = self.delay(attempt)
                if stop is not None:
                    if stop.wait(wait):
                        raise Cancelled("stopped while waiting to retry") from None
                else:
                    threading.Event().wait(wait)
