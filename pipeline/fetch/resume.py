"""Picking up where an earlier run stopped: one run per folder (a lock file), the leftovers of
a killed run removed, and the ids whose video is already there (and passes its check) skipped.

The tasks of a sharded fetch (`--shard K/N`) share the folder: each holds the folder's lock
shared and its shard's lock alone, so a fetch of the whole list waits for none of them and
is refused while they run, a second task of the same shard is refused, and a task removes
only the leftovers of its own ids (temporary names carry the id)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from t12k.errors import T12kError
from t12k.pipeline import media
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.fetch.ids import FetchItem
from t12k.pipeline.fetch.normalizer import SOURCE_TAG
from t12k.pipeline.fetch.records import MANIFEST_FIELDS, Recorder
from t12k.storage.checksum import file_digest
from t12k.storage.locks import FolderInUse, held_locks, hold_folder, is_live

if TYPE_CHECKING:
    from t12k.pipeline.shards import Shard
    from t12k.storage import Manifest

LOCK_NAME = ".t12k-fetch.lock"
_SHARD_LOCK = ".t12k-fetch."  # + "{K}-of-{N}.lock": a shard's lock (`shard_lock_name`)
# the id in a temporary name: a download's folder, `.t12k-tmp-{id}-{8 hex}`, and an encode's
# file, `.{id}.t12k-tmp-{8 hex}.mp4` (`media.ffmpeg.tmp_name`)
_TMP_ID = (
    re.compile(rf"^{re.escape(media.TMP_MARK)}-(.+)-[0-9a-f]{{8}}$"),
    re.compile(rf"^\.(.+){re.escape(media.TMP_MARK)}-[0-9a-f]{{8}}\.[^.]+$"),
)
_SRC_KEYS = ("src_width", "src_height", "src_fps", "src_codec", "src_duration", "quality")


@contextmanager
def folder_lock(out: Path, shard: Shard | None = None) -> Iterator[None]:
    """One fetch at a time per output folder (`storage.locks.hold_folder`), or one task per
    shard when `shard` is given (several shards of one list at once)."""

    def busy(_pid: str) -> str:
        return f"another t12k fetch is writing to {out}; wait for it to finish or choose another output folder"

    if shard is None:
        with hold_folder(out, LOCK_NAME, busy):
            yield
        return

    def whole(_pid: str) -> str:
        return (
            f"a t12k fetch of the whole list is writing to {out}; wait for it to finish, or give every task a --shard"
        )

    def same(pid: str) -> str:
        return (
            f"another t12k fetch of shard {shard} is writing to {out} (pid {pid}); give each task its own "
            f"--shard K/{shard.count}, or wait for it to finish"
        )

    with hold_folder(out, LOCK_NAME, whole, shared=True), hold_folder(out, shard_lock_name(shard), same):
        _refuse_other_counts(out, shard)
        yield


def _refuse_other_counts(out: Path, shard: Shard) -> None:
    """FolderInUse when a task of another N is seen writing to `out` (its shards overlap this
    one's): the lock files of other shards held by a process of this machine, or beaten by one
    on another machine sharing the folder (`storage.locks.is_live`)."""
    held = held_locks()
    for p in out.glob(f"{_SHARD_LOCK}*.lock"):
        other = shard_of_lock(p.name)
        if other is not None and other.count != shard.count and is_live(p, held):
            raise FolderInUse(
                f"a t12k fetch of shard {other} is writing to {out}; give every task over one folder the same N "
                f"(--shard K/{other.count}), or wait for it to finish"
            )


def shard_lock_name(shard: Shard) -> str:
    """The lock file of one shard's fetch in the output folder."""
    return f"{_SHARD_LOCK}{shard.name}.lock"


def shard_of_lock(name: str) -> Shard | None:
    """The shard whose lock file is named `name` (None for any other name)."""
    from t12k.pipeline.shards import Shard

    if not (name.startswith(_SHARD_LOCK) and name.endswith(".lock")):
        return None
    k, _, n = name[len(_SHARD_LOCK) : -len(".lock")].partition("-of-")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        return None
    return Shard(int(k), int(n))


def leftover_id(name: str) -> str | None:
    """The trailer id in the temporary name `name` a fetch writes in its folder, else None."""
    for pattern in _TMP_ID:
        m = pattern.match(name)
        if m:
            return m.group(1)
    return None


def clean_leftovers(out: Path, shard: Shard | None = None) -> int:
    """Remove what killed runs left in `out` (we hold the lock: nothing else writes there);
    with `shard`, only the leftovers of the ids it takes (other tasks write the others)."""
    n = 0
    for p in out.iterdir():
        if shard is not None:
            mid = leftover_id(p.name)
            mine = mid is not None and shard.takes(mid)
        else:
            mine = (p.name.startswith(".") and media.TMP_MARK in p.name) or p.name == "manifest.csv.tmp"
        if mine:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n


def source_tags(path: Path) -> dict:
    """The source facts a normalized video keeps in its container comment ({} when none)."""
    comment = media.read_tags(path).get("comment", "")
    if not comment.startswith(SOURCE_TAG):
        return {}
    try:
        tags = json.loads(comment[len(SOURCE_TAG) :])
    except json.JSONDecodeError:
        return {}
    return tags if isinstance(tags, dict) else {}


def existing(item: FetchItem, dst: Path, manifest: Manifest) -> dict | None:
    """Manifest fields of an id whose video is already there, readable and from this URL;
    None when it must be fetched (again)."""
    if not dst.is_file():
        return None
    row = manifest.rows.get(item.id) or {}
    if row and row.get("url") and row.get("url") != item.url:
        return None  # the list now names another source for this id: fetch it again
    size = dst.stat().st_size
    trusted = row.get("status") in ("ok", "skipped") and row.get("bytes") == str(size) and bool(row.get("sha256"))
    try:
        info = media.probe(dst, verify=not trusted)
    except T12kError:
        return None
    src = {k: row.get(k, "") for k in _SRC_KEYS}
    if not trusted or not all(src[k] for k in ("src_width", "src_height", "src_duration")):
        tags = source_tags(dst)  # a video renamed into place just before a kill has no row yet
        if tags.get("url") and tags["url"] != item.url:
            return None
        src = {k: src[k] or str(tags.get(k, "")) for k in _SRC_KEYS}
    return {
        "url": item.url,
        "error": "",
        **src,
        "duration": f"{info.duration:.3f}",
        "frames": info.num_frames,
        "bytes": size,
        "sha256": row["sha256"] if trusted else file_digest(dst),
        "attempts": 0,
        "seconds": "0.00",
    }


def still_to_fetch(items: list[FetchItem], out: Path, config: FetchConfig, recorder: Recorder) -> list[FetchItem]:
    """The items to download; the others are recorded at once: ids without a URL (failed),
    videos already there (skipped, or rejected and removed when they break enforced quality
    rules) and ids an earlier run rejected for this URL (rejected again, without a download)."""
    manifest = recorder.manifest
    todo: list[FetchItem] = []
    for it in items:
        dst = out / f"{it.id}.mp4"
        if not it.url:
            recorder.no_url(it.id)
            continue
        fields = None if config.overwrite else existing(it, dst, manifest)
        row = manifest.rows.get(it.id) or {}
        if fields is not None:
            if config.enforce_quality and fields.get("quality") not in ("", "ok"):
                dst.unlink()
                recorder.rejected(it.id, fields["quality"], {**fields, "error": "quality"})
            else:
                recorder.skipped(it.id, fields)
        elif (
            config.enforce_quality
            and not config.overwrite
            and row.get("status") == "rejected"
            and row.get("url") == it.url
        ):
            recorder.rejected(it.id, row.get("reason", ""), {k: row.get(k, "") for k in MANIFEST_FIELDS})
        else:
            todo.append(it)
    return todo
