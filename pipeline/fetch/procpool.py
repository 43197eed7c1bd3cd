"""A pool of worker processes for ffmpeg-bound jobs that can be stopped mid-job, cleanly.

Each worker is a fresh Python process in its own session, started on demand and reused; it
takes one JSON job a line on stdin, calls the job function, and writes one JSON answer a line
on stdout. Its stdin is its lifeline: when it closes (the run is stopping, or the parent died,
even by SIGKILL) the job at hand is cancelled through its `cancel` callback (ffmpeg is stopped
and its temporary file removed) and the worker exits.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop a job that is running (only
killing its process would, which leaves that process's ffmpeg running and its half-written
file behind), its workers share the terminal's process group (a Ctrl-C reaches them and their
ffmpeg mid-write), and when one worker dies (the OOM killer, a crash in a decoder) it breaks
the whole pool: every pending job fails with `BrokenProcessPool`, and nothing says whose job
killed it. Here only the job of the dead worker fails, with `WorkerDied`, and the others go on.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from t12k.errors import Cancelled

Job = Callable[[dict, Callable[[], bool]], dict]  # (job, cancel) -> answer, all JSON-able


class WorkerDied(Exception):
    """The worker process ended before answering (killed, out of memory, a crash)."""


def serve(target: str) -> None:
    """The loop of a worker process: answer the jobs on stdin with `target` ('module:function')
    until stdin ends. The end of stdin cancels the job at hand."""
    module, name = target.split(":")
    handle: Job = getattr(importlib.import_module(module), name)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us by closing stdin
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints must not corrupt the answers
    sys.stdout = sys.stderr
    jobs: queue.Queue = queue.Queue()
    ended = threading.Event()

    def read() -> None:
        try:
            for line in sys.stdin:
                if line.strip():
                    jobs.put(json.loads(line))
        finally:
            ended.set()
            jobs.put(None)

    threading.Thread(target=read, name="t12k-jobs", daemon=True).start()
    while True:
        job = jobs.get()
        if job is None or ended.is_set():
            return
        answer = handle(job, ended.is_set)
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class Worker:
    """One worker process and its pipes. Its own session keeps a Ctrl-C in the terminal away
    from it and its ffmpeg: the pool stops it by closing its stdin."""

    def __init__(self, target: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from t12k.pipeline.fetch.procpool import serve; serve({target!r})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            start_new_session=True,
        )
        self.lock = threading.Lock()

    def run(self, job: dict) -> dict:
        """The answer to `job`; WorkerDied when the process ends first."""
        assert self.proc.stdin is not None and self.proc.stdout is not None  # opened as pipes
        try:
            with self.lock:
                self.proc.stdin.write(json.dumps(job) + "\n")
                self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (OSError, ValueError):  # stdin closed by stop(), or the process is gone
            line = ""
        if not line:
            raise WorkerDied(f"exit code {self.proc.poll()}")
        return json.loads(line)

    def stop(self) -> None:
        """Close stdin: the job at hand is cancelled and the process exits."""
        assert self.proc.stdin is not None  # opened as a pipe
        with self.lock:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self, timeout: float = 10.0) -> None:
        self.stop()
        try:
            self.proc.wait(timeout=timeout)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None  # opened as a pipe
        self.proc.stdout.close()


class WorkerPool:
    """Worker processes answering jobs with `target` ('module:function'), started on demand,
    reused, and stopped together. `run` is called from threads, one job per thread."""

    def __init__(self, target: str):
        self.target = target
        self.lock = threading.Lock()
        self.idle: list[Worker] = []
        self.all: list[Worker] = []
        self.stopping = False

    def run(self, job: dict) -> dict:
        """The answer to `job` from an idle (or new) worker. Raises `Cancelled` once the pool
        is stopping, and `WorkerDied` when the worker ended before answering."""
        with self.lock:
            if self.stopping:
                raise Cancelled("the pool is stopping")
            worker = self.idle.pop() if self.idle else None
            if worker is None:
                worker = Worker(self.target)
                self.all.append(worker)
        try:
            answer = worker.run(job)
        except WorkerDied:
            with self.lock:
                self.all.remove(worker)
                stopping = self.stopping
            worker.close(timeout=1.0)
            if stopping:
                raise Cancelled("the pool is stopping") from None
            raise
        with self.lock:
            self.idle.append(worker)
        return answer

    def stop(self) -> None:
        """Cancel the jobs at hand (their workers exit) and refuse new ones."""
        with self.lock:
            self.stopping = True
            workers = list(self.all)
        for w in workers:
            w.stop()

    def close(self) -> None:
        """Stop every worker and wait for it to exit."""
        with self.lock:
            workers, self.all, self.idle = list(self.all), [], []
        for w in workers:
            w.close()
