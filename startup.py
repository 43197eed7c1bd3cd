"""How a t12k program starts: its modules imported with Python's cyclic garbage collector paused,
then frozen.

Importing PyTorch, zarr and the pipeline makes about half a million Python objects that live as
long as the process. While they are made, the collector runs its full passes over all of them
again and again (0.2 s on a 2-core CPU), and at exit it walks them once more before the
process ends (0.2-0.4 s). `gc.freeze()` moves them to the collector's permanent generation:
they are still freed by reference counting, never scanned again. Later collections (a training
loop's, an extraction's) see only the objects made after start-up. Measured on `t12k extract`'s
start and exit: 1.8 s down to 1.4 s (`bench/bench_extract_cpu.py` runs its t12k side so).
`program` is the `t12k` program; its help, usage errors and `t12k backbones` import neither
PyTorch nor the stages (`bench/bench_startup.py`).

`console` (the console script and `python -m t12k.cli`) runs it and then ends the process the
way the interpreter would, but without tearing the interpreter down: the threads are joined
and the exit handlers run (every store, file and child process is closed as usual), standard
output and error are flushed, and the process exits with `os._exit`. The teardown it skips is
the last garbage collection over every object the command made and the freeing of its modules:
0.25 s at the end of `t12k extract` with OpenVINO, nothing measurable after `t12k shots`, whose
objects are mostly frozen (`bench/bench_startup.py --exit`); 0.6 s where PyTorch and OpenVINO
were imported without `settled_imports`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn


@contextmanager
def settled_imports(freeze: bool = True) -> Iterator[None]:
    """Pause the collector for the imports in the block, then freeze what they made. For a
    process's start only: objects alive at the end of the block are never scanned again.
    `freeze=False`, for an import a library call makes late (PyTorch, 0.15-0.3 s less): only
    the pause, the collector as it was afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        if freeze:
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


def console() -> NoReturn:
    """The `t12k` console script: `program`, then `leave` with its exit status."""
    try:
        code: object = program()
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
    leave(code)


def leave(code: object) -> NoReturn:
    """End the process with `code` (as `sys.exit` takes it) as the interpreter ends it, less its
    teardown: the non-daemon threads are joined (and thread pools told to stop) as at the
    interpreter's exit, the exit handlers run, standard streams are flushed, then `os._exit`.
    Where this Python lacks the interpreter's thread-shutdown step, a plain `sys.exit`."""
    import atexit
    import os
    import sys
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # a message, as sys.exit prints it
        print(code, file=sys.stderr)
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None or threading.current_thread() is not threading.main_thread():
        sys.exit(status)
    shutdown()  # what the interpreter does first at exit: join the non-daemon threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(status & 0xFF)
