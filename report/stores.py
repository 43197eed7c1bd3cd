"""The stores of a work folder: for each, what it is (backbone, weights, clip settings), how
much it holds (trailers, clips, size on disk) and whether `t12k verify` finds it whole."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from t12k.errors import describe
from t12k.report.discover import Found, Work
from t12k.report.html import esc, human_bytes, note, rel, table, write_page
from t12k.storage.zarrstore import ArrayStore


@dataclass
class StoreFacts:
    path: Path
    kind: str
    settings: dict = field(default_factory=dict)
    num_features: int | None = None
    trailers: int = 0
    rows: int = 0  # clips (features) or shots (shots store)
    size: int = 0
    damaged: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why it cannot be read at all

    @property
    def whole(self) -> bool:
        return self.problem is None and not self.damaged

    def health(self) -> str:
        if self.problem:
            return f"cannot be read: {self.problem}"
        if self.damaged:
            return f"{len(self.damaged)} of {self.trailers} trailers damaged"
        return "whole"


def _disk_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _rows(path: Path) -> int:
    """The first dimension of the array at `path`, from its metadata (format 2 or 3); 0 when unreadable."""
    for name, key in ((".zarray", "shape"), ("zarr.json", "shape")):
        try:
            return int(json.loads((path / name).read_text())[key][0])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
    return 0


def store_facts(found: Found, verify: bool = True) -> StoreFacts:
    """What `found` is and holds; with `verify`, every trailer checked as `t12k verify` checks it."""
    from t12k.storage.verify import verify_store

    facts = StoreFacts(found.path, found.kind, size=_disk_size(found.path), problem=found.problem)
    if found.problem:
        return facts
    store = _open(found)
    facts.settings = store.settings
    facts.num_features = store.attrs.get("num_features")
    ids = store.ids()
    facts.trailers = len(ids)
    facts.rows = sum(_rows(store.path / m) for m in ids)
    if verify:
        try:
            facts.damaged = verify_store(found.path).damaged
        except Exception as exc:  # noqa: BLE001 - reported on the page
            facts.problem = describe(exc)
    return facts


def _open(found: Found) -> ArrayStore:
    from t12k.storage import FeatureStore, ShotStore

    return (ShotStore if found.kind == "shots" else FeatureStore).open(found.path)


def all_facts(work: Work, verify: bool = True, threads: int = 2) -> list[StoreFacts]:
    found = [*work.shots, *work.features, *work.broken]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(lambda f: store_facts(f, verify), found))


def _clip_settings(s: dict) -> str:
    if not s.get("strategy"):
        return ""
    name = {"shot": "Shot", "seq": "Seq"}.get(str(s["strategy"]), str(s["strategy"]))
    text = f"{name}-{s.get('fpc', '?')}, {s.get('fps', '?')} fps"
    return text + (f", {s['frame_selection']} frame" if s.get("frame_selection") else "")


def stores_page(root: Path, facts: list[StoreFacts], work_root: Path) -> Path:
    """stores.html: one row per store, and the damaged trailers of each."""
    path = root / "stores.html"
    if not facts:
        return write_page(root, path, "Stores", note(f"no shots or feature store found in {work_root}"))
    rows = []
    for f in facts:
        s = f.settings
        what = s.get("backbone") or s.get("detector") or ("?" if f.problem else "published")
        weights = s.get("weights", "")
        clip = _clip_settings(s) if f.kind == "features" else f"threshold {s.get('threshold', '?')}"
        health = f"<span class='{'ok' if f.whole else 'bad'}'>{esc(f.health())}</span>"
        rows.append(
            [
                esc(os.path.relpath(f.path, work_root)),
                esc(f.kind or "?"),
                esc(what),
                esc(weights),
                esc(clip),
                esc(f.num_features or ""),
                f.trailers,
                f.rows,
                esc(human_bytes(f.size)),
                health,
            ]
        )
    head = ["store", "kind", "backbone / detector", "weights", "clips", "features", "trailers", "clips / shots"]
    body = table([*head, "size", "verify"], rows, numeric=(5, 6, 7, 8), raw=True)
    for f in facts:
        if f.damaged:
            items = "".join(
                f"<li><a href='{rel(root / 't' / f'{m}.html', path)}'>{esc(m)}</a>: {esc(r)}</li>"
                for m, r in list(f.damaged.items())[:200]
            )
            more = f"<p>... and {len(f.damaged) - 200} more</p>" if len(f.damaged) > 200 else ""
            body += f"<h2>Damaged in {esc(f.path.name)}</h2><ul>{items}</ul>{more}"
            body += f"<p>To redo them: <code>t12k verify {esc(f.path)}</code>, then re-run the stage that wrote it.</p>"
    return write_page(root, path, "Stores", body)
