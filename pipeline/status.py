"""`t12k status WORK`: where a collection stands, whichever tasks or engines wrote it.

It reads what the stages leave in a run folder (`run.config.Layout`: `videos/` with
`manifest.csv`, `shots.zarr` with `shots.manifest.csv`, `features/` with its stores and
`extract.manifest.csv`), the same whether one `t12k run`, the stage commands, N Slurm array
tasks (`--shard`) or a Ray run wrote them, and says for each stage (fetch, shots, features)
how many trailers are:

- done: a video in `videos/`, a trailer committed to the shots store, a trailer in every
  feature store (stores are listed, not read: a per-id array is moved in last, so its
  presence means the trailer was committed whole);
- failed, grouped by reason (the manifests' rows; fetch's `rejected`, kept out by the quality
  rules, is counted apart); a trailer failed or rejected at an earlier stage is `blocked`;
- in flight: held by a live writer: a download or an encode of a fetch whose folder lock (or
  shard lock) is held, a commit in a store's staging folder whose lock is held;
- not started: the rest of the collection (the ids of `items` when given, else every id
  seen in the manifests and stores).

The rate is the rows a stage recorded (ok, failed or rejected) over the last `window` minutes,
and the time left its trailers still to do at that rate. Nothing takes a lock or writes:
manifests are read as they are (the last row of an id wins, a killed writer's partial line is
left out) and locks are looked up in /proc/locks (Linux; elsewhere nothing is in flight), so a
writer is never held up. No model, video or array is opened.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t12k.errors import T12kError
from t12k.pipeline.fetch.resume import LOCK_NAME, leftover_id, shard_of_lock
from t12k.pipeline.run.config import Layout
from t12k.pipeline.shards import Shard
from t12k.storage.locks import held_locks, is_live
from t12k.storage.manifest import read_rows

STAGES = ("fetch", "shots", "features")
WINDOW = 10.0  # minutes of rows the rate is measured over
_TIME = "%Y-%m-%dT%H:%M:%S"  # manifest rows' time (local), which sorts as text
_WORK = ("ok", "failed", "rejected")  # rows that record work done (fetch's `skipped` rows do not)


@dataclass
class StageStatus:
    """Where one stage stands: trailers per state, its recent rate and the time left."""

    stage: str
    done: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # reason ({id} for the trailer's id) -> trailers
    rejected: int = 0  # fetch: kept out by the quality rules
    blocked: int = 0  # failed or rejected at an earlier stage
    in_flight: int = 0
    not_started: int = 0
    recent: int = 0  # rows recorded over the window
    rate: float | None = None  # trailers a minute over the window (None: no row in it)
    seconds_left: float | None = None  # at that rate (None: no rate, 0: nothing left)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def left(self) -> int:
        return self.in_flight + self.not_started


@dataclass
class Status:
    """Where a collection stands (`collection_status`); `.text()` and `.to_json()` say it."""

    work: Path
    total: int
    from_list: bool  # total is the list's (else: the ids seen in the folder)
    stages: list[StageStatus]
    writers: list[str]  # live writers seen: "fetch shard 2/4 (pid 123)"
    window: float
    seconds: float = 0.0  # how long reading took
    notes: list[str] = field(default_factory=list)

    @property
    def seconds_left(self) -> float | None:
        """The time left of the slowest stage (None when a stage with trailers left has no rate)."""
        lefts = [s.seconds_left for s in self.stages]
        return None if any(v is None for v in lefts) else max(v for v in lefts if v is not None)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["work"] = str(self.work)
        out["seconds_left"] = self.seconds_left
        for st, js in zip(self.stages, out["stages"]):
            js["failed_total"] = st.failed_total
        return out

    def text(self) -> str:
        seen = "in its list" if self.from_list else "seen in its manifests and stores; --items LIST counts all"
        lines = [f"{self.work}: {self.total} trailers ({seen})"]
        head = ("stage", "done", "failed", "blocked", "in flight", "not started", "per min", "time left")
        rows = [head] + [
            (
                s.stage,
                str(s.done),
                str(s.failed_total) + (f" +{s.rejected} rejected" if s.rejected else ""),
                str(s.blocked),
                str(s.in_flight),
                str(s.not_started),
                "-" if s.rate is None else f"{s.rate:.1f}",
                _duration(s.seconds_left, s.left),
            )
            for s in self.stages
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for r in rows:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        for s in self.stages:
            if s.failed:
                top = sorted(s.failed.items(), key=lambda kv: (-kv[1], kv[0]))
                shown = "; ".join(f"{n} x {reason}" for reason, n in top[:5])
                more = f"; {len(top) - 5} other reasons" if len(top) > 5 else ""
                lines.append(f"failed at {s.stage}: {shown}{more}")
        lines.append("writers: " + (", ".join(self.writers) if self.writers else "none seen"))
        lines += self.notes
        lines.append(f"rates over the last {self.window:g} minutes; read in {self.seconds:.2f} s")
        return "\n".join(lines)


def _duration(seconds: float | None, left: int) -> str:
    if not left:
        return "done"
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---- what is held by a live process ----------------------------------------------------------


def _pid(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or "?"
    except OSError:
        return "?"


# ---- reading the folder ---------------------------------------------------------------------


def _videos(folder: Path, held: set[tuple[int, int, int]] | None) -> tuple[set[str], set[str], list[str]]:
    """The ids with a video, the ids a live fetch is downloading or encoding, and the live fetch writers."""
    done: set[str] = set()
    temp: set[str] = set()
    shard_locks: list[tuple[Shard, Path]] = []
    if not folder.is_dir():
        return done, temp, []
    from t12k.pipeline.videos import VIDEO_SUFFIXES

    for e in os.scandir(folder):
        name = e.name
        shard = shard_of_lock(name)
        if shard is not None:
            shard_locks.append((shard, Path(e.path)))
        elif not name.startswith("."):
            stem, dot, suffix = name.rpartition(".")
            if dot and f".{suffix.lower()}" in VIDEO_SUFFIXES:
                done.add(stem)
        else:
            mid = leftover_id(name)
            if mid is not None:
                temp.add(mid)
    writers: list[str] = []
    live: list[Shard | None] = []
    for shard, path in sorted(shard_locks, key=lambda sp: (sp[0].count, sp[0].index)):
        if is_live(path, held):
            writers.append(f"fetch or run of shard {shard} (pid {_pid(path)})")
            live.append(shard)
    if not live and is_live(folder / LOCK_NAME, held):  # sharded tasks hold it too, shared
        writers.append(f"fetch or run of the whole list (pid {_pid(folder / LOCK_NAME)})")
        live.append(None)
    flying = {m for m in temp - done if any(s is None or s.takes(m) for s in live)}
    return done, flying, writers


def _store_ids(path: Path, kind: str, notes: list[str]) -> set[str] | None:
    """The ids committed to the store at `path` (None when there is no store)."""
    if not path.is_dir():
        return None
    from t12k.storage import FeatureStore, ShotStore

    cls = ShotStore if kind == "shots" else FeatureStore
    try:
        return set(cls.open(path).ids())
    except T12kError as exc:
        notes.append(f"{path}: cannot list ({exc})")
        return set()


def _committing(path: Path, held: set[tuple[int, int, int]] | None, companions: tuple[str, ...]) -> set[str]:
    """Ids a live writer is committing to the store at `path` (in its staging folders)."""
    root = path.parent / f".{path.name}.staging"
    if not root.is_dir():
        return set()
    out: set[str] = set()
    for e in os.scandir(root):
        if e.is_dir(follow_symlinks=False) and is_live(os.path.join(e.path, ".lock"), held):
            try:
                names = os.listdir(e.path)
            except OSError:
                continue
            out.update(n for n in names if not n.startswith((".", "trash-")) and n not in (*companions, "store"))
    return out


def _recent(rows: dict[str, dict[str, str]], ids: set[str], now: float, window: float) -> tuple[int, float | None]:
    """Rows of work among `ids` over the last `window` minutes, and their rate a minute."""
    cutoff = time.strftime(_TIME, time.localtime(now - window * 60))
    times = sorted(
        r["time"] for m, r in rows.items() if m in ids and r["status"] in _WORK and r.get("time", "") >= cutoff
    )
    if not times:
        return 0, None
    try:
        first = time.mktime(time.strptime(times[0], _TIME))
    except ValueError:
        first = now - window * 60
    span = min(window * 60, max(60.0, now - first))  # a stage that began within the window: since then
    return len(times), len(times) / (span / 60)


def _failed(rows: dict[str, dict[str, str]], ids: Iterable[str], status: str = "failed") -> dict[str, str]:
    """id -> reason of the rows of `ids` whose status is `status`."""
    out = {}
    for m in ids:
        r = rows.get(m)
        if r is not None and r["status"] == status:
            out[m] = r.get("reason", "")
    return out


def _reasons(failed: dict[str, str]) -> dict[str, int]:
    """Failures grouped by reason (the id in a reason written {id}, so that alike ones group)."""
    return dict(Counter((_without_id(reason, mid)[:160] or "no reason recorded") for mid, reason in failed.items()))


def _without_id(reason: str, mid: str) -> str:
    """`reason` with the id `mid` written {id} where it stands as a word of its own."""
    return re.sub(rf"(?<![\w.-]){re.escape(mid)}(?![\w-]|\.\w)", "{id}", reason)


def collection_status(
    work: str | os.PathLike[str],
    items: Iterable[str] | None = None,
    *,
    window: float = WINDOW,
    now: float | None = None,
) -> Status:
    """Where the collection in the run folder `work` stands (see the module's text).

    `items`: the ids of the whole collection (its list), so that the ids no stage has seen
    yet count as not started; without, the collection is every id seen in `work`. `window`:
    minutes the rates are measured over; `now`: the time they end at (default: now)."""
    t0 = time.perf_counter()
    now = time.time() if now is None else now
    if not window > 0:
        raise T12kError(f"--window {window} is not a number of minutes; pass a positive one, e.g. 10")
    lay = Layout(Path(work))
    if not lay.root.is_dir():
        raise T12kError(
            f"{lay.root} is not a folder; pass the --out folder of `t12k run` (videos/, shots.zarr, features/)"
        )
    if not (lay.videos.is_dir() or lay.shots.is_dir() or lay.features.is_dir()):
        raise T12kError(
            f"{lay.root} holds no videos/, shots.zarr or features/; pass the --out folder of `t12k run` "
            "(or of the stage commands with --out WORK/videos, --store WORK/shots.zarr, --out WORK/features)"
        )
    held, notes = held_locks(), []
    if held is None:
        notes.append("in flight seen through the lock files' heartbeats alone (no /proc/locks on this system)")
    fetch_rows = read_rows(lay.videos / "manifest.csv")
    shots_rows = read_rows(lay.shots_manifest)
    feat_rows = read_rows(lay.features_manifest)
    videos, downloading, writers = _videos(lay.videos, held)
    shots = _store_ids(lay.shots, "shots", notes)
    stores = sorted(lay.features.glob("*.zarr")) if lay.features.is_dir() else []
    listed = [ids for ids in (_store_ids(p, "features", notes) for p in stores) if ids is not None]
    features = set.intersection(*listed) if listed else set()
    committing_shots = _committing(lay.shots, held, ("predictions",))
    committing_feats = set().union(*(_committing(p, held, ("clips",)) for p in stores)) - features

    if items is not None:
        universe = set(items)
    else:
        universe = set(fetch_rows) | set(shots_rows) | set(feat_rows) | videos | (shots or set()) | features
    done = {"fetch": videos & universe, "shots": (shots or set()) & universe, "features": features & universe}
    failed = {
        "fetch": _failed(fetch_rows, universe - done["fetch"]),
        "shots": _failed(shots_rows, universe - done["shots"]),
        "features": _failed(feat_rows, universe - done["features"]),
    }
    rejected = set(_failed(fetch_rows, universe - done["fetch"], "rejected"))
    flying = {"fetch": downloading, "shots": committing_shots, "features": committing_feats}
    rows = {"fetch": fetch_rows, "shots": shots_rows, "features": feat_rows}
    result, stopped = [], rejected | set(failed["fetch"])
    for stage in STAGES:
        st = StageStatus(stage, done=len(done[stage]))
        gone = set(failed[stage])
        blocked = (stopped - done[stage] - gone) if stage != "fetch" else set()
        own_rejected = rejected if stage == "fetch" else set()
        in_flight = (flying[stage] & universe) - done[stage] - gone - blocked
        st.failed, st.rejected, st.blocked = _reasons(failed[stage]), len(own_rejected), len(blocked)
        st.in_flight = len(in_flight)
        st.not_started = len(universe - done[stage] - gone - own_rejected - blocked - in_flight)
        st.recent, st.rate = _recent(rows[stage], universe, now, window)
        st.seconds_left = 0.0 if not st.left else (st.left / st.rate * 60 if st.rate else None)
        result.append(st)
        stopped |= gone | blocked
    if shots is None and (videos or shots_rows):
        notes.append(f"no shots store at {lay.shots} yet")
    return Status(lay.root, len(universe), items is not None, result, writers, window, time.perf_counter() - t0, notes)


def list_ids(path: str | os.PathLike[str]) -> list[str]:
    """The ids of a list file, as `t12k fetch LIST` and `t12k run LIST` read it."""
    from t12k.pipeline.fetch.lists import collect_items

    return [it.id for it in collect_items(os.fspath(path))]
