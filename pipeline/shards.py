"""A shard of a collection: the part of its ids that one task of several takes (`--shard K/N`).

Task K of N (K counts from 1 to N) takes the ids whose stable hash falls in its part: the
first 8 bytes of the BLAKE2b digest of the id, modulo N, equal K - 1. The part depends on
the id alone, never on the list's order or on Python's per-process `hash()`, so a task
re-submitted after a preemption takes the same ids again, N tasks take every id exactly
once, and tasks given different lists (one shorter, one reordered) still agree.

`Shard.parse("auto")` reads the task of a Slurm array job from its environment:
`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT` and, when Slurm sets them,
`SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_STEP`: `--array=0-9` and `--array=1-10` both
make tasks 1/10 to 10/10.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from t12k.errors import T12kError

T = TypeVar("T")

OPTION = "--shard"
_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_FIX = "pass K/N with 1 <= K <= N (task K of N tasks), or auto in a Slurm array job"


def bucket(mid: str, count: int) -> int:
    """The part (0 to count - 1) of the id `mid` among `count` parts."""
    digest = hashlib.blake2b(str(mid).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Task `index` (1 to `count`) of `count` tasks over one list of ids."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise T12kError(f"{OPTION} {self.index}/{self.count} names no task; {_FIX}")

    @classmethod
    def parse(cls, text: str, env: Mapping[str, str] | None = None) -> Shard:
        """`K/N` (task K of N, K from 1) or `auto` (the Slurm array task, from `env`:
        default `os.environ`); T12kError naming the option and the fix otherwise."""
        if text.strip().lower() == "auto":
            return cls.from_slurm(os.environ if env is None else env)
        m = _TEXT.match(text)
        if not m:
            raise T12kError(f"{OPTION} {text!r} is not K/N; {_FIX}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_slurm(cls, env: Mapping[str, str]) -> Shard:
        """The shard of the Slurm array task whose environment is `env`."""
        try:
            task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
            first, step = int(env.get("SLURM_ARRAY_TASK_MIN", "0")), int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
        except KeyError:
            raise T12kError(
                f"{OPTION} auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set (not in a Slurm "
                "array job); submit with sbatch --array=0-N, or pass --shard K/N"
            ) from None
        except ValueError:
            raise T12kError(
                f"{OPTION} auto: the SLURM_ARRAY_TASK_* variables are not numbers; pass --shard K/N"
            ) from None
        offset, rest = divmod(task - first, max(1, step))
        if rest or not 0 <= offset < count:
            raise T12kError(
                f"{OPTION} auto: task {task} of an array of {count} from {first} (step {step}) is not one of "
                f"{count} consecutive tasks; submit with --array=0-{count - 1} (no gaps), or pass --shard K/N"
            )
        return cls(offset + 1, count)

    def takes(self, mid: str) -> bool:
        """Whether this task takes the id `mid`."""
        return bucket(mid, self.count) == self.index - 1

    def select(self, things: Iterable[T], key: Callable[[T], str] = str) -> list[T]:
        """The things whose id (`key`, default the thing as a string) this task takes, in their order."""
        return [t for t in things if self.takes(key(t))]

    @property
    def name(self) -> str:
        """A file-name form: `2-of-10`."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """`Shard.parse(text)`, None without a text (every id)."""
    return None if text is None else Shard.parse(text, env)
