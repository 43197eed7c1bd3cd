"""The windowing of TransNet V2's reference implementation, written once.

The network looks at 48x27 RGB frames in windows of 100 frames. Windows start every 50
frames and each keeps the predictions of its middle 50 frames (25..74), so every frame of
the video is kept exactly once. The video is padded with 25 copies of its first frame in
front, and with copies of its last frame at the end up to a whole number of windows.

`Segments` cuts a stream of frames (an ffmpeg pipe) into runs of consecutive windows as
the frames arrive, so that a video is never held whole; `SegmentPool` shares them out to
threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from t12k.errors import T12kError

INPUT_SIZE = (48, 27)  # (W, H) of the frames TransNet V2 looks at
FRAME_SHAPE = (INPUT_SIZE[1], INPUT_SIZE[0], 3)  # one frame as an (H, W, 3) array
WINDOW = 100  # frames per window
STRIDE = 50  # frames between the starts of consecutive windows
CONTEXT = 25  # frames of context before the kept ones: the start padding, too
KEPT = slice(CONTEXT, CONTEXT + STRIDE)  # the window frames whose predictions are kept


def window_starts(num_frames: int) -> tuple[int, int, list[int]]:
    """Padding at the start and at the end of a video of `num_frames` frames, and the
    start of every window in the padded video."""
    pad_start = CONTEXT
    rem = num_frames % STRIDE
    pad_end = CONTEXT + STRIDE - (rem if rem else STRIDE)
    total = num_frames + pad_start + pad_end
    return pad_start, pad_end, list(range(0, total - WINDOW + 1, STRIDE))


def frame_blocks(frames: np.ndarray | Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """(k, H, W, 3) blocks of `frames`: an (N, H, W, 3) array (cut into views of `block`
    frames), or an iterable of (H, W, 3) frames or (k, H, W, 3) blocks, passed on as they come."""
    if isinstance(frames, np.ndarray) or hasattr(frames, "__array__"):
        arr = np.asarray(frames)
        if arr.ndim != 4:
            yield arr  # the check of `Segments` names the shape
            return
        for i in range(0, len(arr), block):
            yield arr[i : i + block]
        return
    for item in frames:
        arr = np.asarray(item)
        yield arr[None] if arr.ndim == 3 else arr


class Segments:
    """The windows of a stream of frames, as segments of up to `windows` consecutive windows.

    Iterating yields `(first, frames, count)`: `frames` are the padded frames of windows
    `first` .. `first + count - 1`, (STRIDE * count + WINDOW - STRIDE, H, W, 3) uint8, window
    `first + j` being `frames[STRIDE * j : STRIDE * j + WINDOW]`; consecutive segments overlap
    by WINDOW - STRIDE frames. A segment comes as soon as its frames have arrived, and the last
    one, padded with copies of the last frame, at the end of the stream: the frames held at
    once are one segment's, whatever the length of the video. The windows are exactly those of
    `window_starts` over the whole video. `n` is the number of frames seen so far (the video's
    length once the last segment has come); `ended` turns True just before the last segment.
    """

    def __init__(self, frames: np.ndarray | Iterable[np.ndarray], windows: int) -> None:
        self.frames, self.windows, self.n, self.ended = frames, max(1, int(windows)), 0, False

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, int]]:
        size = STRIDE * self.windows + WINDOW - STRIDE  # frames of a whole segment
        held: list[np.ndarray] = []  # padded frames not yet in a segment (from window `first` on)
        count, first, last = 0, 0, None
        for block in frame_blocks(self.frames, STRIDE * self.windows):
            check_frames(block)
            if not len(block):
                continue
            if last is None:
                held.append(np.repeat(block[:1], CONTEXT, axis=0))
                count += CONTEXT
            self.n += len(block)
            last = block[-1:]
            held.append(block)
            count += len(block)
            while count >= size:
                frames = np.concatenate(held)
                yield first, frames[:size], self.windows
                rest = frames[size - (WINDOW - STRIDE) :].copy()  # not a view keeping `frames` alive
                held, count, first = [rest], len(rest), first + self.windows
        if last is None:
            raise T12kError("a video with zero frames has no shots; re-fetch it or remove it")
        # the last windows: ceil(n / STRIDE) in all, the end padded with copies of the last frame
        remaining = -(-self.n // STRIDE) - first
        pad = STRIDE * remaining + WINDOW - STRIDE - count
        self.ended = True
        yield first, np.concatenate([*held, np.repeat(last, pad, axis=0)]), remaining


def check_frames(block: np.ndarray) -> None:
    """Raise ValueError unless `block` is (N, 27, 48, 3) uint8: frames at the input size."""
    if block.ndim != 4 or block.shape[1:] != FRAME_SHAPE or block.dtype != np.uint8:
        shape = ", ".join(map(str, FRAME_SHAPE))
        raise ValueError(f"frames must be uint8 (N, {shape}), got {block.dtype} {block.shape}")


class SegmentPool:
    """Segments shared out to `streams` threads so that they finish together.

    The reading thread `put`s the segments as `Segments` yields them (it waits while
    `streams` x `segment` windows are waiting already: the frames held stay bounded), then
    calls `end`. A stream `take`s the next segment whole while more may come; once the end
    has come, only its share of the windows still waiting, ceil(waiting / streams), cut off
    the front segment, so that the last windows are spread over the streams instead of
    leaving one stream with a whole segment to finish alone. Results come back by first
    window (`done`, or `fail` with an exception) and `results` gives them in order.
    Every wait is interruptible (it polls), and `close` releases every thread waiting."""

    POLL = 0.1  # seconds between a waiting thread's checks

    def __init__(self, streams: int, segment: int) -> None:
        self.streams, self.segment = max(1, streams), max(1, segment)
        self.cond = threading.Condition()
        self.waiting: deque[tuple[int, np.ndarray, int]] = deque()
        self.left = 0  # windows waiting
        self.out = 0  # segments taken and not yet done
        self.ended = self.closed = False
        self.done_: dict[int, np.ndarray] = {}
        self.error: BaseException | None = None

    def put(self, segment: tuple[int, np.ndarray, int]) -> None:
        with self.cond:
            while self.left >= self.streams * self.segment and not self.closed:
                self.cond.wait(self.POLL)
            self._check()
            self.waiting.append(segment)
            self.left += segment[2]
            self.cond.notify_all()

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def take(self) -> tuple[int, np.ndarray, int] | None:
        """The next segment to compute, or None once there is none left (or the pool was closed)."""
        with self.cond:
            while not self.closed and not self.waiting and not self.ended:
                self.cond.wait(self.POLL)
            if self.closed or not self.waiting:
                return None
            first, frames, count = self.waiting.popleft()
            share = min(count, -(-self.left // self.streams)) if self.ended else count
            if share < count:  # the rest stays in front: window `first + share` on
                rest = (first + share, frames[STRIDE * share :], count - share)
                self.waiting.appendleft(rest)
                frames = frames[: STRIDE * share + WINDOW - STRIDE]
            self.left -= share
            self.out += 1
            self.cond.notify_all()
            return first, frames, share

    def done(self, first: int, probs: np.ndarray) -> None:
        with self.cond:
            self.done_[first] = probs
            self.out -= 1
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = exc
            self.closed = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise RuntimeError("the segment pool was closed")

    def results(self) -> list[np.ndarray]:
        """Every segment's probabilities in order, once all are done (after `end`); a stream's
        exception is raised here."""
        with self.cond:
            while not self.closed and (self.waiting or self.out):
                self.cond.wait(self.POLL)
            self._check()
            return [self.done_[k] for k in sorted(self.done_)]
