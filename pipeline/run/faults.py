"""Faults injected into the stages on purpose, so that the tests can show what a run does when
a worker, an actor or a node is lost in the middle of a trailer.

A `Fault` names a stage and a trailer. At the point of that stage where the trailer's work is
done but not yet committed, `inject` either kills the process that runs it (SIGKILL, as the
kernel's out-of-memory killer or a crashing decoder would) or holds it there for a while (so
that a test can take its node away). Marker files in `marks` count the attempts across
processes and nodes (the folder must be one every node sees). A run without faults, which is
every real run, passes over `inject` at the cost of one loop over an empty tuple.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fault:
    """Kill (`action='kill'`) the first `times` attempts of `stage` on `mid` (0: every attempt),
    or hold each attempt for `seconds` (`action='hold'`)."""

    stage: str
    mid: str
    marks: str  # a folder for the marker files
    action: str = "kill"
    times: int = 1
    seconds: float = 0.0


def _where() -> str:
    """The Ray node this process runs on, when it runs in Ray; else ''."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # not in a worker
        return ""


def attempts(fault: Fault) -> int:
    """How many attempts of the fault's stage and trailer have reached `inject`."""
    folder = Path(fault.marks)
    return len(list(folder.glob(f"{fault.stage}-{fault.mid}-*"))) if folder.is_dir() else 0


def inject(faults: tuple[Fault, ...], stage: str, mid: str) -> None:
    """Apply the faults that name this stage and trailer (see `Fault`)."""
    for f in faults:
        if f.stage != stage or f.mid != mid:
            continue
        folder = Path(f.marks)
        folder.mkdir(parents=True, exist_ok=True)
        seen = attempts(f)
        mark = folder / f"{stage}-{mid}-{uuid.uuid4().hex[:8]}"
        mark.write_text(f"{os.getpid()} {_where()}\n")  # the process and node the attempt runs on
        if f.action == "hold":
            time.sleep(f.seconds)
        elif f.times == 0 or seen < f.times:
            os.kill(os.getpid(), signal.SIGKILL)
