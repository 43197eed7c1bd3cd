"""`t12k fetch`: the download and normalize stages of `t12k run` (`Download`, `Normalize`)
through its scheduler and local engine, one manifest row per id.

Downloads run `workers` at once, paced by one `Pacer`; each finished download goes to a
normalizing process (a thread per process waits for it), and the queue between them is
bounded so that downloaded files waiting for a normalizer stay few. Repeated "confirm you
are not a bot" or rate-limit answers stop new downloads before the site bans the address
(`FetchRecords`). Ctrl-C stops downloads and ffmpeg, keeps what finished, removes the
temporary files and re-raises.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from t12k.pipeline import media
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.download import warm_up_yt_dlp
from t12k.pipeline.fetch.ids import FetchItem, check_items
from t12k.pipeline.fetch.records import MANIFEST_FIELDS, FetchRecords, FetchSummary, Recorder
from t12k.pipeline.fetch.resume import clean_leftovers, folder_lock, still_to_fetch
from t12k.pipeline.shards import Shard
from t12k.pipeline.stage import Ticket

if TYPE_CHECKING:
    from t12k.storage import Manifest


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
            from t12k.pipeline.composed import run_stages
            from t12k.pipeline.run.fetch_stages import Download, Normalize

            recorder = Recorder(manifest, summary, bar)
            todo = still_to_fetch(items, out, cfg, recorder)
            if todo:
                warm_up_yt_dlp()
            stages = [Download(out, cfg), Normalize(out, cfg)]
            entries = [("download", Ticket(it.id, it)) for it in todo]
            # the files that may wait for a normalizer: two per normalizing process
            summary.not_attempted = run_stages(stages, entries, FetchRecords(recorder), max(2, 2 * cfg.processes))
        finally:
            bar.close()
            clean_leftovers(out, shard)
            _in_list_order(manifest, items)
            manifest.compact()
    summary.finish(time.perf_counter() - t0, cfg.quality_seconds, cfg.quality_min_lines)
    return summary
