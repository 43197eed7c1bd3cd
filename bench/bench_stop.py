"""How fast `t12k run` stops, and what it leaves: a real run on a generated corpus, stopped
while its model stages are busy, the way orchestrators and terminals stop it.

    .venv/bin/python bench/bench_stop.py [--trailers 6] [--seconds 20] [--backbone resnet] [--rounds 1]

For each way of stopping (SIGTERM to the process, as Kubernetes and Slurm do, then SIGKILL
30 s later; SIGINT to the process group, as a terminal's Ctrl-C; SIGKILL to the process
group, as a lost node or an out-of-memory kill), a fresh `t12k run` (its own
process group, random weights, CPU) takes the corpus from a local HTTP server. Once the first
trailer is in the feature store the signal is sent, and the bench prints the seconds to the
exit, the exit status, the manifest rows marked failed (there should be none: every video is
sound), the trailers in the stores without an `ok` manifest row after the next run started
(none), and whether the same command then finishes the corpus. Orchestrators allow 30 s.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from t12k.pipeline.demo import LocalServer, build_corpus
from t12k.storage import FeatureStore, ShotStore

GRACE = 30.0  # seconds orchestrators wait after SIGTERM before SIGKILL
START_DEADLINE = 900.0  # seconds for the first trailer to reach the feature store


def _stored(out: Path) -> dict[str, set[str]]:
    """Trailer ids in the shots store and in the feature store(s)."""
    found = {"shots": set(), "extract": set()}
    if (out / "shots.zarr").is_dir():
        found["shots"] = set(ShotStore.open(out / "shots.zarr").ids())
    for path in (out / "features").glob("*.zarr"):
        found["extract"] |= set(FeatureStore.open(path).ids())
    return found


def _rows(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {r["id"]: r["status"] for r in csv.DictReader(fh)}


def _manifests(out: Path) -> dict[str, dict[str, str]]:
    return {
        "shots": _rows(out / "shots.manifest.csv"),
        "extract": _rows(out / "features" / "extract.manifest.csv"),
    }


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as fh:
        return subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen, how: str) -> float:
    """Send the signal, wait for the exit (SIGKILL after the grace); seconds to the exit."""
    t0 = time.perf_counter()
    if how == "sigint-group":
        os.killpg(proc.pid, signal.SIGINT)
    elif how == "sigkill":
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - t0


def _round(how: str, command: list[str], out: Path) -> dict[str, object]:
    proc = _start(command, out.parent / f"{out.name}.log")
    deadline = time.monotonic() + START_DEADLINE
    while not _stored(out)["extract"]:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the run ended or never reached its features (see {out}.log)")
        time.sleep(0.2)
    seconds = _stop(proc, how)
    kept = _stored(out)
    failed = sum(s == "failed" for rows in _manifests(out).values() for s in rows.values())
    t0 = time.perf_counter()
    again = subprocess.run(command, capture_output=True, text=True)
    rows = _manifests(out)
    lost = sum(len(kept[k] - {m for m, s in rows[k].items() if s == "ok"}) for k in kept)
    return {
        "how": how,
        "seconds": seconds,
        "status": proc.returncode,
        "kept": len(kept["extract"]),
        "failed": failed,
        "lost": lost,
        "resumed": again.returncode == 0,
        "resume s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trailers", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--backbone", default="resnet")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--work", help="work folder (default: a temporary one, removed)")
    a = ap.parse_args(argv)

    root = Path(a.work or tempfile.mkdtemp(prefix="t12k-bench-stop-"))
    ids = [m for m in build_corpus(root / "corpus", a.trailers, a.seconds, seed=0) if m != "real000"]
    print(f"corpus: {len(ids)} generated trailers of {a.seconds:g} s; {os.cpu_count()} cores; {a.backbone}")
    results = []
    try:
        with LocalServer(root / "corpus") as server:
            listing = root / "list.csv"
            listing.write_text("id,url\n" + "".join(f"{m},{server.url}/{m}.mp4\n" for m in ids))
            for r in range(a.rounds):
                for how in ("sigterm", "sigint-group", "sigkill"):
                    out = root / f"{how}-{r}"
                    command = [sys.executable, "-m", "t12k.cli", "run", str(listing), "--out", str(out)]
                    command += ["--backbone", a.backbone, "--weights", "none", "--device", "cpu"]
                    command += ["--sleep", "0", "--quiet"]
                    results.append(_round(how, command, out))
    finally:
        if not a.work:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'stop':<14} {'s to exit':>9} {'status':>6} {'kept':>5} {'failed rows':>11} {'lost rows':>9}  resumed")
    for x in results:
        print(
            f"{x['how']:<14} {x['seconds']:>9.1f} {x['status']:>6} {x['kept']:>5} {x['failed']:>11} "
            f"{x['lost']:>9}  {'yes' if x['resumed'] else 'NO'} ({x['resume s']:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
