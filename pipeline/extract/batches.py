"""The main side of the engine after the inputs are ready: clips packed into model batches
across trailers, the batches run through every backbone with their features read back one
batch late, and each trailer's features assembled until its last clip is done."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from t12k.errors import describe
from t12k.pipeline.extract.device_io import DeviceIO
from t12k.pipeline.extract.stats import EngineStats
from t12k.pipeline.extract.stream import Chunk

Owner = tuple[str, int, int]  # the clips of a batch that belong to one trailer: (id, first clip, count)


class Batcher:
    """Clip inputs waiting for the model, from any number of trailers, cut into batches."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, int, list[torch.Tensor]]] = deque()  # (id, first clip, inputs)
        self.queued = 0  # clips in the queue

    def __len__(self) -> int:
        return self.queued

    def add(self, mid: str, first: int, inputs: list[torch.Tensor]) -> None:
        self.queue.append((mid, first, inputs))
        self.queued += len(inputs[0])

    def drop(self, mid: str) -> None:
        """Forget the queued clips of a trailer that failed."""
        kept = [q for q in self.queue if q[0] != mid]
        self.queued = sum(len(q[2][0]) for q in kept)
        self.queue = deque(kept)

    def take(self, limit: int) -> tuple[list[Owner], list[list[torch.Tensor]]]:
        """Up to `limit` clips from the front of the queue: who they belong to and their inputs
        per trailer part (a part split at the limit leaves its rest at the front)."""
        parts, owners, n = [], [], 0
        while self.queue and n < limit:
            mid, first, inputs = self.queue.popleft()
            take = min(len(inputs[0]), limit - n)
            if take < len(inputs[0]):
                self.queue.appendleft((mid, first + take, [x[take:] for x in inputs]))
                inputs = [x[:take] for x in inputs]
            parts.append(inputs)
            owners.append((mid, first, take))
            n += take
        self.queued -= n
        return owners, parts


def join(parts: list[list[torch.Tensor]], groups: int) -> list[torch.Tensor]:
    """One model batch per geometry group from the parts `Batcher.take` gave."""
    return [torch.cat([p[g] for p in parts]) if len(parts) > 1 else parts[0][g] for g in range(groups)]


@dataclass
class _Trailer:
    total: int
    feats: dict[str, np.ndarray]
    reps: np.ndarray
    done: int = 0
    device_reps: list = field(default_factory=list)  # (first clip, host tensor being filled)


class Trailers:
    """Each open trailer's features as its clips come back from the models. A trailer whose
    last clip is done goes to `on_done(mid, feats, reps)`; one that fails, or whose `on_done`
    raises, to `on_failed(mid, reason)`."""

    def __init__(self, runners: list, on_done: Callable, on_failed: Callable, stats: EngineStats):
        self.runners, self.on_done, self.on_failed, self.stats = runners, on_done, on_failed, stats
        self.open: dict[str, _Trailer] = {}

    def add(self, chunk: Chunk) -> None:
        """Open the chunk's trailer at its first chunk; record the chunk's representative frames.
        A chunk whose `total` is negative leaves the trailer's count of clips to a later chunk
        (its rows grow as its chunks come)."""
        end = chunk.first + len(chunk)
        tr = self.open.get(chunk.mid)
        if tr is None:
            rows = max(chunk.total, end)
            feats = {r.spec.key: np.zeros((rows, r.spec.num_features), np.float32) for r in self.runners}
            tr = self.open[chunk.mid] = _Trailer(chunk.total, feats, np.full(rows, -1, np.int32))
        elif end > len(tr.reps):
            rows = max(chunk.total, end, 2 * len(tr.reps))
            tr.feats = {k: _grown(v, rows, 0) for k, v in tr.feats.items()}
            tr.reps = _grown(tr.reps, rows, -1)
        if chunk.total >= 0:
            tr.total = chunk.total
        tr.reps[chunk.first : end] = chunk.reps.numpy()

    def add_device_reps(self, mid: str, first: int, host: torch.Tensor) -> None:
        """Representative frames being copied back from the device, read when the trailer is done."""
        self.open[mid].device_reps.append((first, host))

    def fail(self, mid: str, reason: str) -> bool:
        """Drop the trailer and report it failed; whether it was open."""
        was_open = self.open.pop(mid, None) is not None
        self.on_failed(mid, reason)
        return was_open

    def scatter(self, key: str, owners: list[Owner], y: np.ndarray) -> None:
        """Features `y` of one batch for backbone `key` into their trailers' rows."""
        off = 0
        for mid, first, take in owners:
            if mid in self.open:  # else it failed while this batch ran
                self.open[mid].feats[key][first : first + take] = y[off : off + take]
            off += take

    def count(self, owners: list[Owner]) -> None:
        """Count a batch's clips done; hand over the trailers it completes."""
        for mid, _, take in owners:
            tr = self.open.get(mid)
            if tr is None:
                continue
            tr.done += take
            if tr.done == tr.total:
                del self.open[mid]
                self._complete(mid, tr)

    def _complete(self, mid: str, tr: _Trailer) -> None:
        for first, host in tr.device_reps:  # copies queued before this batch: done
            tr.reps[first : first + len(host)] = host.numpy()
        tr.feats, tr.reps = {k: v[: tr.total] for k, v in tr.feats.items()}, tr.reps[: tr.total]
        with self.stats.timing("write_s"):
            try:
                self.on_done(mid, tr.feats, tr.reps)
            except Exception as exc:
                self.on_failed(mid, describe(exc))


def _grown(a: np.ndarray, rows: int, fill: float) -> np.ndarray:
    """`a` with `rows` rows, the new ones `fill`."""
    out = np.full((rows, *a.shape[1:]), fill, a.dtype)
    out[: len(a)] = a
    return out


class ModelQueue:
    """Model batches run through every backbone. On a GPU the features of a batch are read
    back only once the next batch is queued, so the device never waits for Python."""

    def __init__(self, runners: list, which: list[int], io: DeviceIO, trailers: Trailers, stats: EngineStats):
        self.runners, self.which, self.io, self.trailers, self.stats = runners, which, io, trailers, stats
        self.inflight: deque[tuple[list[Owner], object, list]] = deque()  # (owners, host handle, marks)

    def __len__(self) -> int:
        return len(self.inflight)

    def launch(self, owners: list[Owner], batch: list[torch.Tensor]) -> None:
        """Queue one model batch (inputs per geometry group) through every backbone."""
        marks, ys = [self.io.mark()], []
        for r, g in zip(self.runners, self.which):
            ys.append(r.forward(batch[g]))
            marks.append(self.io.mark())
        self.inflight.append((owners, self.io.to_host(ys), marks))

    def finish(self) -> None:
        """Scatter the oldest launched batch's features; complete the trailers it finishes."""
        owners, handle, marks = self.inflight.popleft()
        ys = self.io.wait(handle)
        for i, (r, y) in enumerate(zip(self.runners, ys)):
            self.stats.add_model(r.spec.key, self.io.seconds(marks[i], marks[i + 1]))
            self.trailers.scatter(r.spec.key, owners, y.numpy())
        self.stats.clips += sum(take for _, _, take in owners)
        self.trailers.count(owners)

    def drain(self, keep: int = 0) -> None:
        """Finish batches until at most `keep` are in flight."""
        while len(self.inflight) > keep:
            self.finish()
