"""Options and helpers that several `t12k` commands share (a part of `cli.py`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from t12k.pipeline.shards import Shard


def quiet_option(p: argparse.ArgumentParser) -> None:
    """`--quiet`: no progress bars."""
    p.add_argument("--quiet", action="store_true", help="no progress bars (the summary is still printed)")


def ids_option(p: argparse.ArgumentParser) -> None:
    """`--ids`: some of the folder's videos."""
    p.add_argument("--ids", help="comma-separated ids to process (default: every video in the folder)")


def parse_ids(text: str | None) -> list[str] | None:
    """The ids of `--ids a,b` (None: every one)."""
    return [i.strip() for i in text.split(",") if i.strip()] if text else None


def finish(summary: Any) -> int:
    """Print a batch run's summary; the exit status: 1 when some item failed."""
    print(summary.text())
    return 0 if summary.ok else 1


def items_options(p: argparse.ArgumentParser) -> None:
    """The list of trailers `fetch` and `run` take."""
    p.add_argument(
        "items",
        nargs="?",
        help="list of trailers: the Trailers12k metadata.json, a CSV, JSON or JSONL with id and URL fields, "
        "or a text file of URLs (one per line)",
    )
    p.add_argument("--url", action="append", default=[], metavar="URL", help="a URL to fetch (repeatable)")
    p.add_argument(
        "--labels",
        metavar="MTGC_CSV",
        help="take the ids of this mtgc.csv, in its order, with their URLs from ITEMS (ids without a URL are "
        "recorded as failed)",
    )
    p.add_argument(
        "--id-field",
        default="id",
        help="name of the id field in CSV/JSON/JSONL lists (JSON: dotted paths like imdb.id; default id, else mid)",
    )
    p.add_argument(
        "--url-field",
        default="url",
        help="name of the URL field in CSV/JSON/JSONL lists (a field named like youtube_id may hold bare YouTube ids)",
    )


def shard_option(p: argparse.ArgumentParser) -> None:
    """`--shard K/N`: one task of several over the same list and output (`pipeline.shards`)."""
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="take only part K of N of the ids (K from 1 to N; a fixed part by a hash of each id, whatever the "
        "list's order), so that N tasks at once over the same output share the work; auto: the task of a Slurm "
        "array job (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT)",
    )


def parse_shard(text: str | None) -> Shard | None:
    """The `Shard` of `--shard` (None: every id)."""
    from t12k.pipeline.shards import parse_shard as parse

    return parse(text)


def shard_ids(videos: str, ids: list[str] | None, shard: Shard | None) -> list[str] | None:
    """The ids of `--videos` (or of `--ids`) that `shard` takes; `ids` without a shard."""
    if shard is None:
        return ids
    from t12k.pipeline.videos import find_videos

    return shard.select(find_videos(videos, ids))


_F = TypeVar("_F", bound=Callable[..., Any])

# command -> its summary (`t12k --help`), description (`t12k COMMAND --help`) and the modules
# it runs on (imported at start-up with the collector paused: `startup.program`).
ABOUT: dict[str, tuple[str, str, tuple[str, ...]]] = {}


def command(name: str, summary: str, description: str, needs: tuple[str, ...] = ()) -> Callable[[_F], _F]:
    """Record what `t12k --help` says of the command whose options the decorated function adds."""

    def record(options: _F) -> _F:
        ABOUT[name] = (summary, description, needs)
        return options

    return record
