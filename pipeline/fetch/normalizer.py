"""Normalizing a download: probe it, check the quality rules, re-encode it (ffmpeg, H.264 at
a constant frame rate), checksum the result.

`normalize_job` runs in a worker process of the run's `WorkerPool`, so several trailers
re-encode at once on all cores; `normalize_item` is its caller in the main process (a thread
waits for each), with one more try in a new process when a worker dies. Jobs and answers are
plain JSON: an answer is {'status': 'ok' | 'rejected' | 'failed' | 'cancelled', 'fields':
manifest fields, 'reason': one line}.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from t12k.errors import Cancelled, T12kError, describe
from t12k.pipeline import media
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.download import Downloaded
from t12k.pipeline.fetch.procpool import WorkerDied, WorkerPool
from t12k.pipeline.fetch.quality import quality_report
from t12k.storage.checksum import file_digest

SOURCE_TAG = "t12k-source "  # prefix of the container comment in which a normalized video keeps its source facts
TARGET = "t12k.pipeline.fetch.normalizer:normalize_job"  # what the pool's workers run


def source_fields(info: media.VideoInfo, seconds: Iterable[float], min_lines: int) -> dict[str, Any]:
    """The manifest fields of a download's facts, and its quality against the rules."""
    return {
        "src_width": info.width,
        "src_height": info.height,
        "src_fps": f"{info.fps:.3f}",
        "src_codec": info.codec,
        "src_duration": f"{info.duration:.3f}",
        "quality": quality_report(
            info.duration, info.width, info.height, info.sar, seconds=tuple(seconds), min_lines=min_lines
        ),
    }


def _not_a_video(exc: media.UnreadableVideo, url: str) -> dict:
    return {
        "status": "failed",
        "fields": {"error": "not-a-video"},
        "reason": f"the download is not a readable video ({exc.why}); check that {url} points to a video",
    }


def normalize_job(job: dict[str, Any], cancel: Callable[[], bool]) -> dict[str, Any]:
    """Probe, check and normalize one download (in a worker process); the answer, never raises."""
    src, dst, url = Path(job["src"]), Path(job["dst"]), job["url"]
    fields: dict = {}
    try:
        try:
            src_info = media.probe(src)
        except media.UnreadableVideo as exc:
            return _not_a_video(exc, url)
        fields = source_fields(src_info, job["quality_seconds"], job["quality_min_lines"])
        if job["enforce_quality"] and fields["quality"] != "ok":
            return {"status": "rejected", "fields": {**fields, "error": "quality"}, "reason": fields["quality"]}
        tag = json.dumps({"url": url, **fields}, separators=(",", ":"))
        info = media.normalize(
            src,
            dst,
            fps=job["fps"],
            max_short_side=job["max_short_side"],
            keep_audio=job["keep_audio"],
            threads=job["threads"],
            src_info=src_info,
            ffmpeg=job["ffmpeg"],
            metadata={"comment": SOURCE_TAG + tag},
            cancel=cancel,
        )
        fields.update(
            duration=f"{info.duration:.3f}", frames=info.num_frames, bytes=dst.stat().st_size, sha256=file_digest(dst)
        )
        return {"status": "ok", "fields": fields, "reason": ""}
    except Cancelled:
        return {"status": "cancelled", "fields": fields, "reason": ""}
    except T12kError as exc:
        return {"status": "failed", "fields": {**fields, "error": "normalize"}, "reason": describe(exc)}
    except Exception as exc:
        return {"status": "failed", "fields": {**fields, "error": "normalize"}, "reason": f"unexpected {describe(exc)}"}


def make_job(d: Downloaded, dst: Path, config: FetchConfig) -> dict:
    """The job of normalizing download `d` into `dst`."""
    return {
        "src": str(d.src),
        "dst": str(dst),
        "url": d.item.url,
        "fps": config.fps,
        "max_short_side": config.max_short_side,
        "keep_audio": config.keep_audio,
        "threads": None,  # ffmpeg's choice
        "ffmpeg": config.ffmpeg or media.ffmpeg_exe(),
        "enforce_quality": config.enforce_quality,
        "quality_seconds": list(config.quality_seconds),
        "quality_min_lines": config.quality_min_lines,
    }


def normalize_item(d: Downloaded, dst: Path, config: FetchConfig, pool: WorkerPool) -> dict:
    """Normalize a download in a worker process (a thread waits for it); a worker that dies
    (killed, out of memory, a crash in a decoder) gets one more try in a new process."""
    job = make_job(d, dst, config)
    for attempt in range(2):
        try:
            return pool.run(job)
        except Cancelled:
            return {"status": "cancelled", "fields": {}, "reason": ""}
        except WorkerDied as exc:
            if attempt:
                return {
                    "status": "failed",
                    "fields": {"error": "normalize"},
                    "reason": f"the normalizing process died ({exc}; killed, or out of memory?); "
                    f"run again, or check the file",
                }
    raise AssertionError("unreachable")
