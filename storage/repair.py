"""Repairing a store whose group attributes are damaged (`t12k verify --repair STORE`).

A store's group attributes (`.zattrs` in format 2, the attributes of `zarr.json` in format 3)
say how it was made (`attrs['t12k']`) and, for a feature store, `num_features`. When that one
file is truncated or garbage every trailer is still sound, each array carrying its own
metadata and checksum. `repair_store` rebuilds the attributes from what survives:

- `num_features` from the per-id arrays' shapes (all of them must agree);
- the kind from the companion groups (`clips/`: features, `predictions/`: shots);
- `checksums` when every array records one;
- what the store's name says (backbone, fpc, fps, strategy: a `from_name` given by the caller,
  who knows the backbones);
- what can still be read from the damaged file (a truncated one keeps its beginning).

Settings none of these tell (the weights, the precision, ...) are said, and recorded under
`attrs['t12k']['lost_in_repair']`; appending never compares a setting the store lacks. The
new attributes are written whole (a file renamed over the damaged one); nothing else of the
store is touched, and sound attributes are left as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t12k.errors import T12kError
from t12k.storage.fastread import Damaged, ZarrFormat, open_array
from t12k.storage.folders import writable_folder
from t12k.storage.locks import ROOT_LOCK, Staging, locked
from t12k.storage.zarrstore import CHECKSUMS, _is_array_dir, _open_group, _staging_root

# (kind, store path) -> (the settings its name (and, for shots, its trailers) tell, the keys they cannot tell)
FromName = Callable[[str, Path], tuple[dict[str, Any], list[str]] | None]

KINDS = {"clips": "features", "predictions": "shots"}  # companion group -> kind of store
_ORDER: tuple[str, ...] = ("kind", "backbone", "model", "weights", "strategy", "fpc", "fps", "frame_selection")
_ORDER += ("shots", "detector", "threshold", "input_size", "precision", "t12k_version", "pretraining", "checksums")


@dataclass
class RepairReport:
    """What `repair_store` did: `problem` (None: the attributes were sound, nothing written),
    the attributes the store has now, the settings read back from the damaged file (`kept`)
    and those that could not be recovered (`lost`)."""

    path: Path
    problem: str | None
    attrs: dict[str, Any]
    trailers: int = 0
    kept: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if self.problem is None:
            return [f"{self.path}: its attributes are sound; nothing to repair"]
        t12k = self.attrs.get("t12k") or {}
        kind = t12k.get("kind", "features")
        out = [
            f"{self.path}: {self.problem}; rebuilt the attributes of this {kind} store from its "
            f"{self.trailers} trailers (kept as they are)"
            + (f" and from what was left of the file ({', '.join(self.kept)})" if self.kept else "")
        ]
        if self.lost:
            out.append(
                f"  could not recover: {', '.join(self.lost)}; appending will not check them: "
                "append only with the settings the store was made with"
            )
        return out


def attrs_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with the group attributes of the store at `path` (None: they are sound)."""
    return _read_group(Path(path), _format(Path(path)))[0]


def repair_store(path: str | os.PathLike[str], from_name: FromName | None = None) -> RepairReport:
    """Rebuild the damaged group attributes of the store at `path` from its arrays (see the
    module's note); T12kError when it is not a store or what it holds cannot be told."""
    p = Path(path)
    if not p.is_dir():
        raise T12kError(f"store {p} does not exist; check the path")
    fmt = _format(p)
    problem, salvaged = _read_group(p, fmt)
    if problem is None:
        return RepairReport(p, None, salvaged)
    arrays, companions = _arrays(p, fmt)
    kind = _kind(p, companions, salvaged, from_name)
    old = _dict(salvaged.get("t12k"))
    named, untold = (from_name(kind, p) if from_name else None) or ({}, [])
    t12k = {**{k: v for k, v in named.items() if k != "num_features"}, **old, "kind": kind}
    if all(a["checksum"] for a in arrays.values()):
        t12k["checksums"] = CHECKSUMS
    else:
        t12k.pop("checksums", None)  # an older store: only its arrays say what they are
    attrs: dict[str, Any] = {}
    if kind == "features":
        attrs["num_features"] = _num_features(p, arrays, named, salvaged)
    lost: list[str] = []
    if companions or old or any(a["checksum"] for a in arrays.values()):  # made by t12k, not published
        lost = [k for k in untold if k not in t12k]
        attrs["t12k"] = {k: t12k[k] for k in _ORDER if k in t12k}
        attrs["t12k"].update({k: v for k, v in t12k.items() if k not in _ORDER})
        if lost:
            attrs["t12k"]["lost_in_repair"] = lost
    _write_attrs(p, fmt, attrs)
    trailers = sum(1 for name in arrays if "/" not in name)
    kept = [k for k in ("num_features", *old) if k in salvaged or k in old]
    return RepairReport(p, problem, attrs, trailers, [k for k in kept if k != "kind"], lost)


# ---- reading what is left ------------------------------------------------------------------------


def _format(p: Path) -> ZarrFormat:
    """The zarr format of the store at `p`, from its group metadata file or else its arrays'."""
    if (p / "zarr.json").exists():
        return 3
    if (p / ".zgroup").exists() or (p / ".zattrs").exists():
        return 2
    for entry in os.scandir(p):
        if (Path(entry.path) / ".zarray").is_file():
            return 2
        if (Path(entry.path) / "zarr.json").is_file():
            return 3
    raise T12kError(f"{p} is not a zarr store (no group metadata and no arrays); point to a t12k store")


def _read_group(p: Path, fmt: ZarrFormat) -> tuple[str | None, dict[str, Any]]:
    """(what is wrong with the group's metadata or attributes or None, the attributes or what
    could be read of them)."""
    if fmt == 3:
        meta, problem = _load(p / "zarr.json", 3)  # {"attributes": {"t12k": {...}}}
        if problem is None and (meta.get("zarr_format") != 3 or meta.get("node_type") != "group"):
            problem = "its zarr.json is not that of a group"
        attrs = _dict(meta.get("attributes"))
        where = "zarr.json"
    else:
        group, problem = _load(p / ".zgroup")
        if problem is None and group.get("zarr_format") != 2:
            problem = "its .zgroup is not that of a format 2 group"
        attrs, attrs_problem = _load(p / ".zattrs", 2)  # {"t12k": {...}}
        problem = problem or attrs_problem
        where = ".zattrs"
    if problem is None and not ({"num_features", "t12k"} & attrs.keys()):
        problem = f"its {where} holds no num_features and no t12k settings"
    return problem, attrs


def _load(path: Path, depth: int = 1) -> tuple[dict[str, Any], str | None]:
    """(the JSON object in `path`, or what could be read of a damaged one (`_salvage`, with
    the objects that hold settings `depth` deep); what is wrong or None)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}, f"its {path.name} is missing"
    except OSError as exc:  # not damage: never rewritten
        raise T12kError(f"cannot read {path} ({exc.strerror}); check its permissions") from None
    try:
        value = json.loads(text)
    except ValueError:
        return _salvage(text, depth), f"its {path.name} is not valid JSON ({len(text)} bytes: truncated or garbage)"
    if not isinstance(value, dict):
        return {}, f"its {path.name} is not a JSON object"
    return value, None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _salvage(text: str, depth: int) -> dict[str, Any]:
    """What a truncated JSON object still says: the longest beginning of `text` that, cut after
    a complete member of one of its `depth` outermost objects and closed, parses ({} when none
    does). Members of deeper objects or of lists are kept whole or not at all, so that no value
    is a cut one."""
    closers: list[str] = []
    cuts: list[tuple[int, str]] = []  # (end of a complete member, the brackets then open)
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and closers:
            closers.pop()
            if len(closers) <= depth and "]" not in closers:
                cuts.append((i + 1, "".join(reversed(closers))))
        elif ch == "," and len(closers) <= depth and "]" not in closers:
            cuts.append((i, "".join(reversed(closers))))
    for end, close in reversed(cuts):
        try:
            value = json.loads(text[:end] + close)
        except ValueError:
            continue
        return value if isinstance(value, dict) else {}
    return {}


def _arrays(p: Path, fmt: ZarrFormat) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Every array of the store ("{id}" and "{companion}/{id}": its shape and whether it
    records a checksum; one whose metadata cannot be read records none) and the companion
    groups there are."""
    out: dict[str, dict[str, Any]] = {}
    companions: set[str] = set()
    for entry in sorted(os.scandir(p), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if entry.name in KINDS:
            companions.add(entry.name)
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if sub.is_dir() and _is_array_dir(sub.path):
                    out[f"{entry.name}/{sub.name}"] = _array_facts(sub.path, fmt)
        elif _is_array_dir(entry.path):
            out[entry.name] = _array_facts(entry.path, fmt)
    return out, companions


def _array_facts(path: str, fmt: ZarrFormat) -> dict[str, Any]:
    try:
        array = open_array(path, fmt)
        return {"shape": tuple(array.shape), "checksum": array.checksum is not None}
    except (Damaged, OSError, ValueError):
        return {"shape": None, "checksum": False}


def _kind(p: Path, companions: set[str], salvaged: dict[str, Any], from_name: FromName | None) -> str:
    kinds = {KINDS[c] for c in companions}
    t12k = _dict(salvaged.get("t12k"))
    if not kinds and t12k.get("kind") in KINDS.values():
        kinds = {t12k["kind"]}
    if not kinds and ("num_features" in salvaged or (from_name and from_name("features", p))):
        kinds = {"features"}
    if len(kinds) != 1:
        raise T12kError(
            f"cannot tell what store {p} holds (no clips/ or predictions/ group, and its name says nothing); "
            "restore its attributes file from a copy of the store"
        )
    return kinds.pop()


def _num_features(p: Path, arrays: dict[str, dict[str, Any]], named: dict[str, Any], salvaged: dict[str, Any]) -> int:
    """The one number of features of the store's per-id arrays (the name's or the file's when
    it holds none); T12kError when they disagree or nothing tells."""
    widths = {a["shape"][1] for n, a in arrays.items() if "/" not in n and a["shape"] and len(a["shape"]) == 2}
    if len(widths) > 1:
        raise T12kError(
            f"the trailers of store {p} have {sorted(widths)} features: it mixes stores; "
            "run `t12k verify` on a copy, keep the trailers of one width, then repair"
        )
    told = named.get("num_features", salvaged.get("num_features"))
    if widths:
        return int(widths.pop())
    if isinstance(told, int):
        return told
    raise T12kError(f"cannot tell the number of features of store {p} (no trailer in it); write to a new store path")


def _write_attrs(p: Path, fmt: ZarrFormat, attrs: dict[str, Any]) -> None:
    """Write the group metadata with `attrs` as zarr writes it, each file renamed into place."""
    fix = "make it writable and repair it again"
    writable_folder(p, "store", fix)
    writable_folder(p.parent, "the folder of store", fix)  # the staging folder goes there
    root = _staging_root(p)
    root.mkdir(exist_ok=True)
    with Staging(root) as staging, locked(root / ROOT_LOCK):
        _open_group(staging.path / "group", "w", fmt).attrs.update(attrs)
        for name in ("zarr.json",) if fmt == 3 else (".zgroup", ".zattrs"):
            os.replace(staging.path / "group" / name, p / name)
