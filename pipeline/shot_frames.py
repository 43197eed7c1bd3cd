"""The frames of a list of trailers at TransNet V2's input size, each decoded by ffmpeg while
the detector works on the one before it (one ahead), through a bounded buffer: memory stays
flat whatever the trailers' lengths. The shots stage's group calls read through it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from t12k.errors import Cancelled
from t12k.heap import share_heap
from t12k.pipeline.media import iter_frames
from t12k.shots.windows import INPUT_SIZE, STRIDE

_POLL = 0.1  # seconds between a waiting thread's checks that the reader was closed
_JOIN = 2.0  # seconds `FrameReader.close` waits for its thread to end ffmpeg


class FrameReader:
    """One trailer's frames at TransNet V2's input size, decoded by ffmpeg and read by a thread
    into a bounded buffer of blocks: the frames stream to the detector as it asks for them
    (`blocks`), and at most LIMIT frames wait at once, whatever the trailer's length.

    The thread is a daemon and stops (ending its ffmpeg) at the next frame once `close` is
    called; the caller's waits for frames are interruptible (Ctrl-C)."""

    BLOCK = STRIDE  # frames per block
    LIMIT = 4096  # frames buffered at most (16 MB): a whole trailer of under 170 s, decoded while PyTorch is imported

    def __init__(self, path: Path):
        self.path = path
        self.buffer: deque[np.ndarray] = deque()
        self.buffered = 0
        self.ended = False  # the thread has finished: all frames read, or `error`
        self.error: BaseException | None = None
        self.stopped = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="t12k-shots-decode", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        frames = iter_frames(self.path, INPUT_SIZE)
        error: BaseException | None = None
        try:
            block: list[np.ndarray] = []
            for frame in frames:
                block.append(frame)
                if len(block) == self.BLOCK:
                    if not self._put(np.stack(block)):
                        return
                    block = []
            if block:
                self._put(np.stack(block))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            error = exc
        finally:
            frames.close()  # ends ffmpeg if it still runs
            with self.cond:
                self.ended, self.error = True, error
                self.cond.notify_all()

    def _put(self, block: np.ndarray) -> bool:
        """Append a block once there is room; False if the reader was closed meanwhile."""
        with self.cond:
            while self.buffered >= self.LIMIT and not self.stopped:
                self.cond.wait(_POLL)
            if self.stopped:
                return False
            self.buffer.append(block)
            self.buffered += len(block)
            self.cond.notify_all()
            return True

    def blocks(self) -> Iterator[np.ndarray]:
        """The trailer's frames, block by block, as they are decoded; a decoding error is raised
        after the blocks before it."""
        while True:
            with self.cond:
                while not self.buffer and not self.ended:
                    self.cond.wait(_POLL)
                if self.stopped:
                    raise Cancelled(f"decoding {self.path} was stopped")
                if not self.buffer:
                    if self.error is not None:
                        raise self.error
                    return
                block = self.buffer.popleft()
                self.buffered -= len(block)
                self.cond.notify_all()
            yield block

    def prefix(self) -> tuple[np.ndarray, bool] | None:
        """The frames decoded so far, and whether they are all of them, without waiting or
        taking them (None when there are none yet, or the trailer cannot be decoded)."""
        with self.cond:
            if not self.buffer or self.error is not None:
                return None
            return np.concatenate(self.buffer), self.ended

    def close(self) -> None:
        """Stop reading and end ffmpeg (waits a moment for the thread to do so)."""
        with self.cond:
            self.stopped = True
            self.buffer.clear()
            self.cond.notify_all()
        self.thread.join(timeout=_JOIN)


class FrameDecoder:
    """Decodes the trailers still to do at TransNet V2's input size, one ahead: the next
    trailer's ffmpeg process (and reader thread) starts when this one's does, and reads up to
    `FrameReader.LIMIT` frames while the model works on this one."""

    def __init__(self, paths: Mapping[str, Path], todo: list[str]):
        share_heap()  # before the first reader thread: the detector's threads reuse what it frees
        self.paths, self.todo = paths, todo
        self.order = {m: i for i, m in enumerate(todo)}
        self.readers: dict[str, FrameReader] = {}

    def __enter__(self) -> FrameDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()

    def _start(self, i: int) -> None:
        if i < len(self.todo) and self.todo[i] not in self.readers:
            self.readers[self.todo[i]] = FrameReader(self.paths[self.todo[i]])

    def frames(self, mid: str) -> Iterator[np.ndarray]:
        """The frames of `mid`, block by block as they are decoded; the next trailer's decoding starts."""
        self._start(self.order[mid])
        self._start(self.order[mid] + 1)
        return self.readers[mid].blocks()

    def done(self, mid: str) -> None:
        """Stop decoding `mid` (finished or failed)."""
        reader = self.readers.pop(mid, None)
        if reader is not None:
            reader.close()

    def ready_after(self, mid: str) -> list[tuple[str, np.ndarray, bool]]:
        """The first frames of the trailer after `mid` decoded so far, and whether they are all
        of them; nothing if none yet (never waits)."""
        i = self.order[mid] + 1
        reader = self.readers.get(self.todo[i]) if i < len(self.todo) else None
        got = reader.prefix() if reader is not None else None
        return [(self.todo[i], *got)] if got is not None else []
