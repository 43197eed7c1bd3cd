"""How a t12k program starts: its modules imported with Python's cyclic garbage collector paused,
then frozen.

Importing PyTorch, zarr and the pipeline makes about half a million Python objects that live as
long as the process. While they are made, the collector runs its full passes over all of them
again and again (0.2 s on a 2-core CPU), and at exit it walks them once more before the
process ends (0.2-0.4 s). `gc.freeze()` moves them to the collector's permanent generation:
they are still freed by reference counting, never scanned again. Later collections (a training
loop's, an extraction's) see only the objects made after start-up. Measured on `t12k extract`'s
start and exit: 1.8 s down to 1.4 s (`bench/bench_extract_cpu.py` runs its t12k side so).
`program` is the `t12k` console script.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def settled_imports() -> Iterator[None]:
    """Pause the collector for the imports in the block, then freeze what they made. For a
    process's start only: objects alive at the end of the block are never scanned again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()


def program() -> int:
    """The `t12k` program: `cli.main` with the modules of every command imported (building
    the parser does) inside `settled_imports`."""
    from t12k.cli import build_parser, main

    with settled_imports():
        parser = build_parser()
    return main(parser=parser)
