"""The run of a fetch: downloads in a thread pool, normalizations in worker processes, one
manifest row per id.

Downloads run `workers` at once, paced by one `Pacer`; each finished download goes to a
normalizing process (a thread per process waits for it), and the queue is bounded so that
downloaded files waiting for a normalizer stay few. Repeated "confirm you are not a bot" or
rate-limit answers stop the run before the site bans the address. Ctrl-C stops downloads and
ffmpeg, keeps what finished, removes the temporary files and re-raises.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t12k.pipeline import media
from t12k.pipeline.fetch.blocking import SiteBlock
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.download import Downloaded, download_item, warm_up_yt_dlp
from t12k.pipeline.fetch.ids import FetchItem, check_items
from t12k.pipeline.fetch.normalizer import TARGET, normalize_item
from t12k.pipeline.fetch.pacing import Pacer
from t12k.pipeline.fetch.procpool import WorkerPool
from t12k.pipeline.fetch.records import MANIFEST_FIELDS, FetchSummary, Recorder
from t12k.pipeline.fetch.resume import clean_leftovers, folder_lock, still_to_fetch
from t12k.pipeline.shards import Shard

if TYPE_CHECKING:
    from t12k.storage import Manifest


class Run:
    """The scheduler of one fetch: hands items to the download threads, downloads to the
    normalizing processes, and outcomes to the recorder."""

    def __init__(self, todo: list[FetchItem], out: Path, config: FetchConfig, recorder: Recorder):
        self.out, self.config, self.recorder = out, config, recorder
        self.workers, self.processes = config.workers, config.processes
        self.stop = threading.Event()
        self.pacer = Pacer()
        self.downloaders = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="t12k-download")
        self.waiters = ThreadPoolExecutor(max_workers=self.processes, thread_name_prefix="t12k-normalize")
        self.pool = WorkerPool(TARGET)
        self.downloads: dict[Future, FetchItem] = {}
        self.normalizing: dict[Future, Downloaded] = {}
        self.queue = iter(todo)
        self.left = len(todo)  # items not recorded yet
        self.site = SiteBlock()  # bot checks and rate limits in a row stop the run

    @property
    def summary(self) -> FetchSummary:
        return self.recorder.summary

    def _record(self, d: Downloaded, status: str, reason: str = "", fields: dict | None = None) -> None:
        self.recorder.finished(d, status, reason, fields)
        self.left -= 1

    def _fill(self) -> None:
        """Start downloads while there is room (downloads plus files waiting for a normalizer)."""
        if self.stop.is_set() or self.summary.stopped:
            return
        room = self.workers + 2 * self.processes
        while len(self.downloads) < self.workers and len(self.downloads) + len(self.normalizing) < room:
            item = next(self.queue, None)
            if item is None:
                return
            fut = self.downloaders.submit(download_item, item, self.out, self.config, self.pacer, self.stop)
            self.downloads[fut] = item

    def _download_failed(self, d: Downloaded) -> None:
        shutil.rmtree(d.folder, ignore_errors=True)
        if d.kind == "quality":
            self._record(d, "rejected", d.reason, {"quality": d.reason})
        else:
            self._record(d, "failed", d.reason)
        stop = self.site.failed(d.kind)
        if stop:
            self.summary.stopped = stop

    def _downloaded(self, d: Downloaded) -> None:
        if d.kind == "cancelled":
            return
        if d.kind:
            self._download_failed(d)
            return
        self.site.downloaded()
        if self.stop.is_set():  # stopping: no new encodes
            shutil.rmtree(d.folder, ignore_errors=True)
            return
        dst = self.out / f"{d.item.id}.mp4"
        self.normalizing[self.waiters.submit(normalize_item, d, dst, self.config, self.pool)] = d

    def _normalized(self, d: Downloaded, answer: dict) -> None:
        shutil.rmtree(d.folder, ignore_errors=True)
        if answer["status"] != "cancelled":
            self._record(d, answer["status"], answer["reason"], answer["fields"])

    def _step(self) -> None:
        finished, _ = wait(list(self.downloads) + list(self.normalizing), return_when=FIRST_COMPLETED)
        for fut in finished:
            if fut in self.downloads:
                self.downloads.pop(fut)
                self._downloaded(fut.result())
            else:
                self._normalized(self.normalizing.pop(fut), fut.result())

    def run(self) -> None:
        """Fetch every item; on Ctrl-C (or a bug) stop downloads and ffmpeg, keep what
        finished, then re-raise."""
        try:
            if self.left:
                warm_up_yt_dlp()
            self._fill()
            while self.downloads or self.normalizing:
                self._step()
                self._fill()
        except BaseException:
            self.stop.set()
            self.pool.stop()
            while self.downloads or self.normalizing:
                self._step()
            raise
        finally:
            self.stop.set()
            self.downloaders.shutdown(wait=True, cancel_futures=True)
            self.waiters.shutdown(wait=True, cancel_futures=True)
            self.pool.close()
            self.summary.not_attempted = self.left


def _in_list_order(manifest: Manifest, items: list[FetchItem]) -> None:
    """Manifest rows in the order of the list (ids of earlier runs that it no longer names last)."""
    order = [it.id for it in items if it.id in manifest.rows]
    manifest.rows = {**{m: manifest.rows[m] for m in order}, **manifest.rows}


def fetch_collection(
    items: Iterable[FetchItem],
    out_dir: str | os.PathLike,
    config: FetchConfig | None = None,
    *,
    progress: bool = True,
    shard: Shard | None = None,
    **settings: Any,
) -> FetchSummary:
    """Download and normalize every item into `out_dir/{id}.mp4`; one manifest row per id.

    `config` (default `FetchConfig()`), with `settings` overriding its fields, says how:
    `workers` downloads run at once and `normalize_workers` processes re-encode. Between the
    starts of two downloads there are at least `sleep` seconds and between the requests of
    one extraction `sleep_requests` seconds (None: DEFAULT_SLEEP and DEFAULT_SLEEP_REQUESTS,
    no pause for loopback hosts). Transient network errors are retried `retries` times with
    exponential backoff; permanent ones (HTTP 4xx, removed, private, geo-blocked,
    age-restricted, ...) are not. Ids whose video is already there and readable are skipped
    unless `overwrite`. Every trailer's quality against the paper's rules (60 to 210 s, at
    least 480p) is in the manifest; `enforce_quality` keeps the ones that break them out of
    `out_dir` (status 'rejected'). A failed item is recorded with its reason and the others
    go on. On Ctrl-C the run stops downloads and ffmpeg, removes its temporary files and
    raises KeyboardInterrupt. `shard`: only the items it takes, beside the other shards' tasks.
    """
    cfg = dataclasses.replace(config or FetchConfig(), **settings)
    items = [it for it in items if shard is None or shard.takes(it.id)]
    check_items(items)
    cfg.validate()
    cfg = dataclasses.replace(cfg, ffmpeg=cfg.ffmpeg or media.ffmpeg_exe())
    from tqdm import tqdm

    from t12k.storage import Manifest
    from t12k.storage.folders import writable_folder

    out = writable_folder(out_dir)
    summary = FetchSummary(out_dir=out)
    t0 = time.perf_counter()

    with folder_lock(out, shard):
        clean_leftovers(out, shard)
        manifest = Manifest(out / "manifest.csv", MANIFEST_FIELDS)
        bar = tqdm(total=len(items), desc="fetch", unit="trailer", disable=not progress, leave=False)
        try:
            recorder = Recorder(manifest, summary, bar)
            Run(still_to_fetch(items, out, cfg, recorder), out, cfg, recorder).run()
        finally:
            bar.close()
            clean_leftovers(out, shard)
            _in_list_order(manifest, items)
            manifest.compact()
    summary.finish(time.perf_counter() - t0, cfg.quality_seconds, cfg.quality_min_lines)
    return summary
