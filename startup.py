"""How a t12k program starts: its modules imported with Python's cyclic garbage collector paused,
then frozen.

Importing PyTorch, zarr and the pipeline makes about half a million Python objects that live as
long as the process. While they are made, the collector runs its full passes over all of them
again and again (0.2 s on a 2-core CPU), and at exit it walks them once more before the
process ends (0.2-0.4 s). `gc.freeze()` moves them to the collector's permanent generation:
they are still freed by reference counting, never scanned again. Later collections (a training
loop's, an extraction's) see only the objects made after start-up. Measured on `t12k extract`'s
start and exit: 1.8 s down to 1.4 s (`bench/bench_extract_cpu.py` runs its t12k side so).
`program` is the `t12k` console script; its help, usage errors and `t12k backbones` import
neither PyTorch nor the stages (`bench/bench_startup.py`).
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
    """The `t12k` program: `cli.main`, its parser built for the command named alone (help and
    usage errors answer without importing PyTorch), and, once the arguments parse, the modules
    that command runs on imported inside `settled_imports`."""
    import importlib
    import sys

    from t12k.cli import ABOUT, build_parser, main

    argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)  # --help, --version and usage errors exit here
    with settled_imports():
        for module in ABOUT[args.command][2]:
            importlib.import_module(module)
    return main(argv, parser=parser)
