"""The download and normalize stages of `t12k run` and `t12k fetch`, on fetch's own code
(yt-dlp's download, the normalizer's processes), one trailer per call, without global state
and without torch (a Ray worker's download and normalize tasks import only this)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.download import Downloaded, download_item
from t12k.pipeline.fetch.ids import FetchItem
from t12k.pipeline.fetch.normalizer import make_job, normalize_item, normalize_job
from t12k.pipeline.run.faults import Fault, inject
from t12k.pipeline.stage import Outcome, Resources, Stage, Ticket

if TYPE_CHECKING:
    from t12k.pipeline.fetch.procpool import WorkerPool


def download(
    item: FetchItem, videos: Path, config: FetchConfig, pacer: Any, stop: threading.Event | None = None
) -> Outcome:
    """Download one item into a temporary folder in `videos`, paced by `pacer` (an object
    with fetch's `Pacer.wait(interval, stop)`); `data` is fetch's `Downloaded`."""
    t0 = time.perf_counter()
    d = download_item(item, Path(videos), config, pacer, stop or threading.Event())
    if d.kind and d.kind != "cancelled":
        shutil.rmtree(d.folder, ignore_errors=True)
    status = "ok" if not d.kind else {"cancelled": "cancelled", "quality": "rejected"}.get(d.kind, "failed")
    fields = {"quality": d.reason} if d.kind == "quality" else {}
    return Outcome(item.id, status, d.reason, fields, time.perf_counter() - t0, d)


def normalize(
    d: Downloaded, videos: Path, config: FetchConfig, pool: WorkerPool | None = None, faults: tuple[Fault, ...] = ()
) -> Outcome:
    """Normalize a download into `videos/{id}.mp4`: in a process of fetch's `WorkerPool` when
    `pool` is given, else in this process (a Ray task). The download's folder is removed once
    the answer is in; `data` is the video's path."""
    t0 = time.perf_counter()
    mid = d.item.id
    dst = Path(videos) / f"{mid}.mp4"
    if pool is not None:
        answer = normalize_item(d, dst, config, pool)
    else:
        answer = normalize_job(make_job(d, dst, config), None)
        inject(faults, "normalize", mid)
    if answer["status"] != "cancelled":
        shutil.rmtree(d.folder, ignore_errors=True)
    return Outcome(mid, answer["status"], answer["reason"], answer["fields"], time.perf_counter() - t0, str(dst))


class Download(Stage):
    """The download stage: yt-dlp into a temporary folder in `videos`, `config.workers` at
    once, politely paced by one clock (`pacer`: fetch's `Pacer` on this machine; on a
    cluster the engine hands it the cluster's one clock). Its input is the ticket's item."""

    name = "download"

    def __init__(self, videos: Path, config: FetchConfig, pacer: Any = None) -> None:
        self.videos, self.config, self.pacer = Path(videos), config, pacer
        self.slots = config.workers

    def resources(self) -> Resources:
        return Resources(cpus=0)  # it waits on the network

    def setup(self) -> None:
        if self.pacer is None:
            from t12k.pipeline.fetch.pacing import Pacer

            self.pacer = Pacer()

    def process(self, tickets: list[Ticket], stop: threading.Event | None = None) -> list[Outcome]:
        self.setup()  # (a no-op once set up)
        return [download(t.item, self.videos, self.config, self.pacer, stop) for t in tickets]


class Normalize(Stage):
    """The normalize stage: a download re-encoded into `videos/{id}.mp4` (H.264, 24 fps). With
    `processes` (this machine) each runs in a process of fetch's `WorkerPool`, which a stop
    ends at once; without (a Ray task, a process of its own already) in the calling process."""

    name = "normalize"

    def __init__(
        self, videos: Path, config: FetchConfig, faults: tuple[Fault, ...] = (), processes: bool = True
    ) -> None:
        self.videos, self.config, self.faults, self.processes = Path(videos), config, faults, processes
        self.slots = config.processes
        self.pool: WorkerPool | None = None

    def resources(self) -> Resources:
        return Resources(cpus=1)  # ffmpeg's encoder keeps a core busy

    def setup(self) -> None:
        if self.processes and self.pool is None:
            from t12k.pipeline.fetch.normalizer import TARGET
            from t12k.pipeline.fetch.procpool import WorkerPool

            self.pool = WorkerPool(TARGET)

    def process(self, tickets: list[Ticket], stop: threading.Event | None = None) -> list[Outcome]:
        return [normalize(t.data, self.videos, self.config, self.pool, self.faults) for t in tickets]

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "pool": None}  # a pool stays on its machine
