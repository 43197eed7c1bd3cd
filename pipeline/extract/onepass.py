"""One decode per trailer for both model stages: shots and the backbones' clip inputs at once.

One ffmpeg process decodes the video and writes each frame twice (`iter_frame_pairs`): at
TransNet V2's 48x27, byte for byte what `t12k shots` decodes, and at the video's own size.
The small frames stream through the detector (`ShotDetector.stream`), whose probabilities
plan the clips as they come (`ClipPlanner`); the large frames wait in a short queue until
their clip is planned, then become the clip's backbone inputs, every geometry applied, sent
on as `Chunk`s to the engine's batches (`Engine.consume`). A trailer's shots are committed to
the shots store before its last chunk goes out, so its features are never committed without
its shots. A trailer whose shots are in the store already decodes only the large frames.

Memory per trailer: the large frames between the one being read and the oldest one not yet
in a clip, about 100 frames on CPU (a window of TransNet V2) plus a clip; during a long
transition (frames in no shot), its frames until it ends. A video that starts with a
transition holds at most `hold` frames; should the whole video be one transition (then the
reference makes it one shot), it is decoded a second time.

Trailers run in `threads` threads of this process (ffmpeg decodes in its own process; the
detector, OpenCV and torch release the GIL), feeding one bounded queue.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from t12k.backbones import Kind
from t12k.errors import Cancelled, T12kError, describe
from t12k.pipeline.extract.background import drain, put
from t12k.pipeline.extract.clip_inputs import ClipInput, apply_geometries, iter_clip_inputs
from t12k.pipeline.extract.stream import Chunk, Failed
from t12k.pipeline.extract.transforms import Geometry
from t12k.pipeline.media.decode import iter_frame_pairs
from t12k.shots.clips import color_counts, plan_clips, representative_from_counts
from t12k.shots.streaming import Clip, ClipPlanner, as_plan
from t12k.shots.windows import INPUT_SIZE

if TYPE_CHECKING:
    from t12k.pipeline.extract.config import ExtractConfig
    from t12k.shots.clips import ClipPlan
    from t12k.shots.transnet import ShotDetector

HOLD = 240  # large frames held while every frame so far is a transition (10 s at 24 fps)


@dataclass
class Shot:
    """What the shot side did with one trailer: its shots and probabilities, committed or
    found in the store (`found`), and the seconds its detection took."""

    mid: str
    shots: np.ndarray
    preds: np.ndarray
    found: bool = False
    seconds: float = 0.0


def clip_input(index: int, clip: Clip, frames: list[np.ndarray], need_2d: bool, need_3d: bool) -> ClipInput:
    """A clip's backbone inputs from its real frames (`frames[k]` is frame clip.first + k):
    the 2D representative and the 3D sub-sampled frames, black-padded (as `iter_clip_inputs`)."""
    rep, frame, stack = clip.first, None, None
    if need_2d:
        k = representative_from_counts(np.stack([color_counts(f) for f in frames]))
        rep, frame = clip.first + k, frames[k]
    if need_3d:
        black = np.zeros_like(frames[0])
        stack = np.stack([frames[j - clip.first] if j >= 0 else black for j in clip.frames])
    return ClipInput(index, rep, frame, stack)


class OnePass:
    """Shots and clip inputs of trailers from one decode each (see the module).

    `detector`: a `ShotDetector`; `commit(shot)`: writes a trailer's shots (the shots store's
    per-trailer commit); `known(mid)`: its (shots, probabilities) when the store has them
    sound, else None; `planning`: `ClipPlanner` settings (threshold, strategy, fpc, fps).
    `pairs(video, small)`: a trailer's (small, large) frame pairs (default `iter_frame_pairs`:
    the file decoded), and `again(video, plan, need_2d, need_3d)`: its clip inputs from a
    second decode, when the whole video was one transition (default `iter_clip_inputs`), for
    a caller whose `video` is not a file (predict decodes while it normalizes)."""

    def __init__(
        self,
        detector: ShotDetector,
        commit: Callable[[Shot], None],
        known: Callable[[str], tuple[np.ndarray, np.ndarray] | None],
        geometries: list[Geometry],
        planning: dict,
        chunk: int = 32,
        threads: int = 1,
        hold: int = HOLD,
        pairs: Callable[[str, tuple[int, int]], Iterator[tuple[np.ndarray, np.ndarray]]] | None = None,
        again: Callable[[str, ClipPlan, bool, bool], Iterator[ClipInput]] | None = None,
    ) -> None:
        self.pairs, self.again = pairs, again  # None: the module's functions, looked up when called
        self.detector, self.commit, self.known = detector, commit, known
        self.geometries, self.planning, self.chunk = geometries, planning, max(1, int(chunk))
        self.threads, self.hold = max(1, int(threads)), max(1, int(hold))
        self.need_2d = any(g.kind == Kind.IMAGE for g in geometries)
        self.need_3d = any(g.kind == Kind.VIDEO for g in geometries)
        self.shots: dict[str, Shot] = {}  # what the shot side did, by trailer, for the caller
        self.streams = 1  # TransNet V2's threads per trailer (set by `items`)
        self.detecting = 0  # trailers whose shots are being found now
        self._count = threading.Lock()

    # ---- many trailers, in threads ---------------------------------------------------------------

    def items(self, trailers: list[tuple[str, str]], stop: threading.Event | None = None) -> Iterator[Chunk | Failed]:
        """Chunks of every trailer's clips (and `Failed` for those that fail), `threads`
        trailers at once; each trailer's chunks come in order, the last with its `total`."""
        stop = stop or threading.Event()
        todo: deque[tuple[str, str]] = deque(trailers)
        out: queue.Queue = queue.Queue(maxsize=2 * self.threads)
        lock = threading.Lock()

        def work() -> None:
            torch.set_num_threads(1)  # OpenMP threads are set per calling thread
            with torch.inference_mode():
                while not stop.is_set():
                    with lock:
                        if not todo:
                            break
                        mid, video = todo.popleft()
                    for item in self.trailer(mid, video, stop):
                        put(out, item, stop)
            put(out, None, stop)

        threads = torch.get_num_threads()
        count = min(self.threads, len(todo))
        # TransNet V2 shares the process's threads among the trailers in flight, as streams of
        # one thread each (`ShotDetector.stream`)
        self.streams = max(1, threads // max(1, count))
        workers = [threading.Thread(target=work, name="t12k-onepass") for _ in range(count)]
        for w in workers:
            w.start()
        try:
            ended = 0
            while ended < len(workers):
                item = out.get()
                if item is None:
                    ended += 1
                else:
                    # the backbones (in this thread) take one thread while TransNet V2 runs,
                    # all of the process's once it is done: no core is oversubscribed
                    torch.set_num_threads(1 if self.detecting else threads)
                    yield item
        finally:
            stop.set()
            for w in workers:
                while w.is_alive():
                    drain(out)
                    w.join(0.05)
            torch.set_num_threads(threads)  # parts of the workers' setting are global to torch

    # ---- one trailer --------------------------------------------------------------------------

    def trailer(self, mid: str, video: str, stop: threading.Event) -> Iterator[Chunk | Failed]:
        """One trailer's chunks, or a `Failed` with the reason (after any chunks sent)."""
        pending: list[ClipInput] = []
        try:
            t0 = time.perf_counter()
            known = self.known(mid)
            clips = self._from_store(mid, video, known) if known is not None else self._one_decode(mid, video, stop)
            for clip in clips:
                pending.append(clip)
                if len(pending) > self.chunk:  # one clip stays back, so the last chunk is never empty
                    yield self._chunk(mid, pending[: self.chunk], -1, t0)
                    pending, t0 = pending[self.chunk :], time.perf_counter()
            if not pending:
                raise T12kError(f"{video} has no clips (empty video?); re-fetch it")
            yield self._chunk(mid, pending, pending[-1].index + 1, t0)
        except Cancelled:
            yield Failed(mid, "cancelled")
        except Exception as exc:  # a bad trailer is reported, the others go on
            yield Failed(mid, describe(exc))

    def _chunk(self, mid: str, clips: list[ClipInput], total: int, t0: float) -> Chunk:
        reps = torch.tensor([c.representative if self.need_2d else -1 for c in clips], dtype=torch.int32)
        inputs = apply_geometries(self.geometries, clips)
        return Chunk(mid, clips[0].index, total, reps, inputs, time.perf_counter() - t0)

    def _from_store(self, mid: str, video: str, known: tuple[np.ndarray, np.ndarray]) -> Iterator[ClipInput]:
        shots, preds = known
        p = self.planning
        plan = plan_clips(shots, len(preds), p["strategy"], p["fpc"], p["fps"])
        self.shots[mid] = Shot(mid, shots, preds, found=True)
        return iter_clip_inputs(video, plan, self.need_2d, self.need_3d)

    def _one_decode(self, mid: str, video: str, stop: threading.Event) -> Iterator[ClipInput]:
        """Clip inputs while the shots are found, from one decode; the shots committed at the end."""
        t0 = time.perf_counter()
        planner = ClipPlanner(**self.planning)
        held: deque[np.ndarray] = deque()  # large frames from frame `base` on
        base, dropped, index, probs = 0, False, 0, []

        def small_frames() -> Iterator[np.ndarray]:
            nonlocal base, dropped
            for little, big in (self.pairs or iter_frame_pairs)(video, INPUT_SIZE):
                if stop.is_set():
                    raise Cancelled("stopped")
                held.append(big)
                if len(held) > self.hold and planner.undecided:  # in no shot, unless all frames are
                    for _ in range(planner.n - base):  # those known to be transitions
                        held.popleft()
                    base, dropped = planner.n, True
                yield little

        with self._count:
            self.detecting += 1
        try:
            for p in self.detector.stream(small_frames(), streams=self.streams, stop=stop):
                probs.append(p)
                for clip in planner.feed(p):
                    yield self._take(index, clip, held, base)
                    base, index = clip.last + 1, index + 1
        finally:
            with self._count:
                self.detecting -= 1
        clips = planner.finish()
        preds = np.concatenate(probs)
        shot = Shot(mid, planner.shot_array(), preds, seconds=time.perf_counter() - t0)
        self.commit(shot)
        self.shots[mid] = shot
        if dropped and clips and clips[0].first < base:  # the whole video one transition: decode again
            plan = as_plan(clips, self.planning["fpc"], self.planning["fps"], self.planning["strategy"])
            yield from (self.again or iter_clip_inputs)(video, plan, self.need_2d, self.need_3d)
            return
        for clip in clips:
            yield self._take(index, clip, held, base)
            base, index = clip.last + 1, index + 1

    def _take(self, index: int, clip: Clip, held: deque, base: int) -> ClipInput:
        """Clip `index`'s inputs from the held frames (the first held is frame `base`); the
        frames up to its last leave the queue."""
        for _ in range(clip.first - base):
            held.popleft()
        frames = [held.popleft() for _ in range(clip.last - clip.first + 1)]
        return clip_input(index, clip, frames, self.need_2d, self.need_3d)


def onepass_threads(workers: int | str | None, device: str | torch.device) -> int:
    """Trailers decoded at once by `OnePass`: `--workers` when given; auto: one per core on a
    CPU (each runs TransNet V2 on one thread, the step that bounds a CPU run), else as many as
    the decode workers of `t12k extract` (`worker_count`)."""
    from t12k.pipeline.extract.config import worker_count

    if (workers is None or workers == "auto") and torch.device(device).type == "cpu":
        return max(1, os.cpu_count() or 1)
    return max(1, worker_count(workers, device))


def planning_of(config: ExtractConfig, threshold: float) -> dict[str, Any]:
    """`ClipPlanner` settings from an `ExtractConfig` and the detector's threshold."""
    if config.fps < 1:
        raise T12kError(f"--fps must be positive; got {config.fps}")
    return {"threshold": threshold, "strategy": config.strategy, "fpc": config.fpc, "fps": config.fps}
