"""`run_collection`: a list of trailers through fetch, shots and features in one run."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from t12k.pipeline import media
from t12k.pipeline.composed import open_engine
from t12k.pipeline.extract.config import ExtractConfig
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.ids import FetchItem, check_items
from t12k.pipeline.fetch.resume import clean_leftovers, folder_lock, still_to_fetch
from t12k.pipeline.run.config import Layout, RunConfig
from t12k.pipeline.run.ledger import Ledger
from t12k.pipeline.run.scheduler import Scheduler
from t12k.pipeline.shards import Shard
from t12k.pipeline.shots_command import ShotsConfig
from t12k.pipeline.stage import Ticket
from t12k.pipeline.summary import RunSummary


def _check(cfg: RunConfig, shots: ShotsConfig, extract: ExtractConfig) -> list:
    """The backbones, loaded: every setting is checked (device, runtime, weights) before the
    run touches the disk. A Ray run's device is the cluster's: here they load on the CPU."""
    from t12k.device import resolve_device
    from t12k.pipeline.run.stages import load_runners

    if cfg.engine == "local":
        resolve_device(shots.device)
        return load_runners(extract)
    return load_runners(extract, device="cpu")


def _feature_stores(layout: Layout, extract: ExtractConfig) -> list[Path]:
    """Where the run's feature stores are (one per backbone, as `t12k extract` names them)."""
    from t12k.backbones import parse_backbones

    return [
        layout.features / s.store_name(extract.fpc, extract.fps, extract.strategy)
        for s in parse_backbones(extract.backbones)
    ]


def run_collection(
    items: Iterable[FetchItem],
    out_dir: str | os.PathLike,
    config: RunConfig | None = None,
    *,
    fetch: FetchConfig | None = None,
    shots: ShotsConfig | None = None,
    extract: ExtractConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    shard: Shard | None = None,
    **settings: Any,
) -> RunSummary:
    """Take every item through download, normalization, shot detection and the backbones.

    `out_dir` ends up holding what the three stage commands would write: `videos/` (with
    `manifest.csv`), `shots.zarr` (with `shots.manifest.csv`) and `features/` (the feature
    stores and `extract.manifest.csv`). `config` (with `settings` overriding its fields) says
    where the stages run (`engine`: this machine or a Ray cluster) and how much may wait
    between them; `fetch`, `shots` and `extract` are the stages' own settings. Each stage
    skips what an earlier run finished, so running the same call again resumes. A trailer
    that fails is recorded with its stage and reason and the others go on. On Ctrl-C the
    workers stop, finished trailers are kept and nothing is left half-written. Every setting
    is checked before anything is written; each trailer in a store has its manifest row,
    also when an earlier run was killed between the commit and the row. `shard`: only the
    items it takes, beside the other shards' tasks (`pipeline.shards`).
    """
    cfg = dataclasses.replace(config or RunConfig(), **settings)
    fetch = fetch or FetchConfig()
    shots = shots or ShotsConfig()
    extract = extract or ExtractConfig()
    if cfg.decode_workers is not None:
        extract = dataclasses.replace(extract, workers=cfg.decode_workers)
    items = [it for it in items if shard is None or shard.takes(it.id)]
    check_items(items)
    fetch.validate()
    fetch = dataclasses.replace(fetch, ffmpeg=fetch.ffmpeg or media.ffmpeg_exe())
    runners = _check(cfg, shots, extract)
    layout = Layout(Path(out_dir))
    layout.make()
    with folder_lock(layout.videos, shard):
        clean_leftovers(layout.videos, shard)
        from t12k.pipeline.run.stages import build_stages

        stages = build_stages(layout, cfg, fetch, shots, extract, log, runners)
        backend = open_engine(stages, cfg)
        del runners  # the backend's now (a Ray run's go once their stores are opened)
        ledger = Ledger(layout, len(items), progress, dict(backend.slots), one_decode=cfg.decode == "once")
        ledger.restore(_feature_stores(layout, extract))
        scheduler = Scheduler(stages, backend, ledger, cfg.queue)
        model = "features" if cfg.decode == "once" else "shots"  # the first model stage
        try:
            still = still_to_fetch(items, layout.videos, fetch, ledger.recorder)
            ledger.fetch_skipped(items, still)
            todo, fetched = {it.id for it in still}, set(ledger.fetch.skipped)
            entries = [
                ("download", Ticket(it.id, it))
                if it.id in todo
                else (model, Ticket(it.id, it, str(layout.video(it.id))))
                for it in items
                if it.id in todo or it.id in fetched
            ]
            scheduler.run(entries)
        finally:
            backend.close()
            summary = ledger.close(items, scheduler.not_attempted)
            clean_leftovers(layout.videos, shard)
    return summary
