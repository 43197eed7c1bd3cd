"""`t12k.run`: a whole collection from its URLs to feature stores, as one library call.

It is `t12k run` without the command line: the same stages, engines, stores, manifests and
summary. Settings are given by the name of their field (the command's option without its
dashes, `-` as `_`) and go to the stage whose settings dataclass has that field; a setting
several stages share goes to each of them, as the option does, except `workers`, which is
fetch's (the command line's `--workers`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Iterable
from typing import Any

from t12k.errors import T12kError
from t12k.pipeline.extract.config import ExtractConfig
from t12k.pipeline.fetch import FetchConfig, FetchItem, collect_items
from t12k.pipeline.run.collection import run_collection
from t12k.pipeline.run.config import RunConfig
from t12k.pipeline.shards import Shard
from t12k.pipeline.shots_command import ShotsConfig
from t12k.pipeline.summary import RunSummary

# The settings dataclass of each stage, in the order a shared setting is given to them.
_STAGES: dict[str, type] = {"run": RunConfig, "fetch": FetchConfig, "shots": ShotsConfig, "extract": ExtractConfig}
_OWNED = {"workers": "fetch"}  # a field of several stages that the command line gives to one


Items = str | os.PathLike[str] | Iterable[FetchItem | tuple[str, str] | str]


def run(
    items: Items,
    out: str | os.PathLike[str],
    backbone: str = ExtractConfig.backbones,
    engine: str = RunConfig.engine,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    shard: Shard | str | None = None,
    **settings: Any,
) -> RunSummary:
    """Download, normalize, detect shots and extract `backbone` features of every trailer of
    `items` into `out` (`videos/`, `shots.zarr`, `features/`), as `t12k run` does; the run's
    summary (`.ok`, `.done`, `.failed` with each trailer's reason, `.text()`).

    `items`: a list file (Trailers12k's metadata.json, a CSV, JSON or JSONL with id and URL
    fields, a text file of URLs), one URL, or an iterable of `FetchItem`, `(id, url)` pairs or
    URLs. `backbone`: a registered key, several joined by commas, or `all`. `engine`: `local` or
    `ray`. `settings`: any option of `t12k run` by its field name (`weights="none"`,
    `device="cpu"`, `sleep=0`, `fpc=16`, ...). Nothing is printed unless `progress` (bars) or
    `log` (a line per event) is given. Running the same call again resumes; an unknown setting,
    a bad value or unusable items raise `T12kError` before anything is written. `shard`
    (`Shard`, `"K/N"` or `"auto"` in a Slurm array job): only the trailers that task takes.

    >>> summary = t12k.run(corpus, work, "shufflenet2d", weights="none", device="cpu", sleep=0)
    >>> summary.ok, sorted(summary.done)
    (True, ['r1', 'r3'])
    >>> sorted(p.name for p in (work / "features").glob("*.zarr"))
    ['trailers_i_shufflenet_fpc24.zarr']
    >>> t12k.run(corpus, work, "shufflenet2d", treshold=0.4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    t12k.errors.T12kError: t12k.run has no setting 'treshold'; did you mean threshold? ...
    """
    configs = _configs({"backbones": backbone, "engine": engine, **settings})
    return run_collection(
        _items(items),
        out,
        configs["run"],
        fetch=configs["fetch"],
        shots=configs["shots"],
        extract=configs["extract"],
        progress=progress,
        log=log or (lambda message: None),
        shard=Shard.parse(shard) if isinstance(shard, str) else shard,
    )


def _items(items: Items) -> list[FetchItem]:
    """`items` as fetch items (a list file read as `t12k run ITEMS` reads it)."""
    if isinstance(items, (str, os.PathLike)):
        text = os.fspath(items)
        return collect_items(None, [text]) if "://" in text else collect_items(text)
    out: list[FetchItem] = []
    for item in items:
        if isinstance(item, FetchItem):
            out.append(item)
        elif isinstance(item, str):
            out += collect_items(None, [item])
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(FetchItem(str(item[0]), str(item[1])))
        else:
            raise T12kError(f"cannot read the item {item!r}; give a FetchItem, an (id, url) pair or a URL")
    if not out:
        raise T12kError("nothing to run; give a list file, a URL or (id, url) pairs")
    return out


def _configs(settings: dict[str, Any]) -> dict[str, Any]:
    """Each stage's settings dataclass made from the settings given by field name."""
    fields = {stage: {f.name for f in dataclasses.fields(cls)} for stage, cls in _STAGES.items()}
    known = set().union(*fields.values())
    for name in settings:
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise T12kError(
                f"t12k.run has no setting {name!r}; {hint}the settings are the options of `t12k run` "
                f"by field name: {', '.join(sorted(known))}"
            )
    configs = {}
    for stage, cls in _STAGES.items():
        mine = {k: v for k, v in settings.items() if k in fields[stage] and _OWNED.get(k, stage) == stage}
        configs[stage] = cls(**mine)
    return configs
