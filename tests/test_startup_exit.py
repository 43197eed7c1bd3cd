"""The console script ends a process as the interpreter would, less its teardown
(`t12k.startup.leave`): threads joined, thread pools stopped, exit handlers run, standard streams
flushed into pipes, the exit status kept; only the final collection of every object is skipped.
Each case is a fresh Python process. No test asserts a time (`bench/bench_startup.py --exit`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from t12k.startup import leave

out = Path(sys.argv[1])

class Torn:  # its __del__ runs only when the interpreter tears its modules down
    def __del__(self):
        (out / "teardown").write_text("ran")

keep = Torn()

def late():
    time.sleep(0.3)
    (out / "thread").write_text("done")

atexit.register(lambda: (out / "atexit").write_text("ran"))
pool = ThreadPoolExecutor(2)
pool.submit(time.sleep, 0.1)
threading.Thread(target=late).start()  # not a daemon: the exit waits for it
print("x" * 100_000, end="")  # a pipe's block buffer, never flushed by the script
print("on stderr", file=sys.stderr, end="")
leave({code})
"""


def _run(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(code=code), str(tmp_path)], capture_output=True, text=True, timeout=60
    )


def test_leave_joins_threads_runs_exit_handlers_flushes_and_keeps_the_status(tmp_path):
    res = _run(tmp_path, "3")
    assert res.returncode == 3, res.stderr
    assert res.stdout == "x" * 100_000 and res.stderr == "on stderr"
    assert (tmp_path / "thread").read_text() == "done"  # joined, as at the interpreter's exit
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "teardown").exists()  # the teardown it skips


def test_leave_takes_what_sys_exit_takes(tmp_path):
    assert _run(tmp_path, "None").returncode == 0
    res = _run(tmp_path, "'t12k: gone wrong'")
    assert res.returncode == 1 and res.stderr == "on stderrt12k: gone wrong\n"


def test_the_console_script_keeps_the_exit_status_of_a_usage_error_and_of_help():
    bad = subprocess.run(
        [sys.executable, "-m", "t12k.cli", "backbones", "--no-such-option"], capture_output=True, timeout=60
    )
    assert bad.returncode == 2 and b"unrecognized arguments" in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "t12k.cli", "backbones"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "trailers_i_resnet_fpc24.zarr" in ok.stdout
