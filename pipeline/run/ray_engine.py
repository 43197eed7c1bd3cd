"""The Ray engine of `t12k run`: the same stage functions as Ray tasks and actors.

Downloads and normalizations are CPU tasks (a download asks for no CPU: it waits on the
network; the polite pacing between download starts is one small actor's clock, for the
whole cluster). Shot detection and the backbones live in actors that load their weights
once, with a share of a GPU when the cluster has GPUs (a shots actor and a features actor
share one), else a CPU each. The stores are created by the driver, then every actor commits
its trailers into them with the stores' per-trailer commit, on a path every node sees; only
the driver writes the manifests.

Lost work: an actor that dies is restarted (`max_restarts`), on another node when its node
is gone; the scheduler tries a lost call again (Ray itself retries nothing, so that the
attempts of a trailer are counted in one place), `attempts` tries in all, then records the
trailer failed with its stage and reason. Ray is an optional extra (`pip install 't12k[ray]'`), imported only
here and only when this engine runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t12k.errors import T12kError, describe, first_line
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.run import stages
from t12k.pipeline.run.config import Layout, RunConfig
from t12k.pipeline.run.stages import Outcome

if TYPE_CHECKING:  # kept out of the download and normalize tasks, which need no torch
    from t12k.pipeline.extract.config import ExtractConfig
    from t12k.pipeline.fetch.download import Downloaded
    from t12k.pipeline.fetch.ids import FetchItem
    from t12k.pipeline.run.faults import Fault
    from t12k.pipeline.run.scheduler import Ticket
    from t12k.pipeline.shots_command import ShotsConfig

_CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's head before saying it cannot be reached


def import_ray() -> Any:
    """The ray module, or a T12kError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise T12kError("--engine ray needs Ray; install it with pip install 't12k[ray]'") from None
    return ray


def check_reachable(address: str) -> None:
    """T12kError unless something listens at `address` (host:port, or ray://host:port); Ray
    itself would wait minutes for an address where nothing answers."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise T12kError(
            f"--address {address} is not host:port; pass the address `ray start --head` printed, or auto on one of "
            "the cluster's machines"
        )
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=_CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise T12kError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start it with `ray start --head` "
            "on that machine, or fix --address"
        ) from None


def connect(ray: Any, config: RunConfig, cpus: int) -> bool:
    """Join the cluster at `config.address`, or start a Ray instance here with `cpus` logical
    CPUs (`config.ray_cpus` when given); whether this run started it (and must stop it). A
    session already connected is used as it is."""
    if config.address:
        check_reachable(config.address)
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if config.address:
        try:
            ray.init(address=config.address, **quiet)
        except ConnectionError as exc:
            raise T12kError(
                f"cannot connect to a Ray cluster at {config.address} ({first_line(exc)}); start one with "
                "`ray start --head`, or fix --address"
            ) from None
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance: no token to hand around
    ray.init(num_cpus=config.ray_cpus or cpus, include_dashboard=False, **quiet)
    return True


@dataclass(frozen=True)
class Placement:
    """Where the model actors go and what each asks of the cluster."""

    device: str  # what the actors run their models on: cuda or cpu
    actors: int  # actors per model stage
    shots: dict  # Ray resources of a shots actor
    features: dict  # ... of a features actor
    normalize: int  # normalizing tasks at once

    @classmethod
    def plan(cls, resources: dict, run: RunConfig, extract: ExtractConfig, where: str) -> Placement:
        """The placement on a cluster with `resources`; T12kError naming what is missing."""
        from t12k.pipeline.extract.config import worker_count

        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        asked = str(extract.device)
        if asked.startswith("cuda") and gpus < 1:
            raise T12kError(
                f"--device {asked} asks for a GPU but the Ray cluster ({where}) has none; use --device cpu or "
                "auto, or add GPU nodes"
            )
        gpu = gpus >= 1 and asked != "cpu"
        n = run.actors or (int(gpus) if gpu else 1)
        decode = worker_count(extract.workers, "cuda" if gpu else "cpu")
        one = run.decode == "once"  # no shots actors: the feature actors find the shots
        if gpu:
            share = min(1.0, gpus / (n if one else 2 * n))  # a shots actor and a features actor per GPU
            shots, features = {"num_cpus": 1, "num_gpus": share}, {"num_cpus": max(1, decode), "num_gpus": share}
        else:  # the model's own core, plus its decode processes
            shots, features = {"num_cpus": 1}, {"num_cpus": 1 + decode}
        if one:  # the feature actor runs TransNet V2 too: it takes the shots actor's CPU (Ray sizes its threads)
            features["num_cpus"] += shots["num_cpus"]
            shots = {"num_cpus": 0}
        spare = int(cpus - n * (shots["num_cpus"] + features["num_cpus"]))
        place = cls("cuda" if gpu else "cpu", n, shots, features, max(1, spare))
        if cpus < place.cpus_needed:
            actors = "" if one else f"{n} shots actor(s) of {shots['num_cpus']} CPU, "
            raise T12kError(
                f"the Ray cluster ({where}) has {cpus:g} CPUs and this run needs at least {place.cpus_needed}: "
                f"{actors}{n} feature actor(s) of {features['num_cpus']} CPU(s) and one normalizing task; add nodes, "
                "or lower --actors or --decode-workers"
            )
        return place

    @property
    def cpus_needed(self) -> int:
        """The least CPUs the run can go on with: its actors and one normalizing task."""
        return int(self.actors * (self.shots["num_cpus"] + self.features["num_cpus"]) + 1)


# ---- what runs on the workers --------------------------------------------------------------------


class _Desk:
    """The run's small actor beside the driver: the cluster's one pacing clock (the earliest
    start of the next download, wall time) and the model calls that started, so that a call
    lost with its actor counts as an attempt only when it ran."""

    def __init__(self) -> None:
        self.next = 0.0
        self.calls: set[str] = set()

    def reserve(self, interval: float) -> float:
        now = time.time()
        start = max(now, self.next)
        self.next = start + max(0.0, interval)
        return start

    def started(self, key: str) -> None:
        self.calls.add(key)

    def ran(self, key: str) -> bool:
        return key in self.calls


class _RemotePacer:
    """fetch's `Pacer.wait` on the cluster's clock."""

    def __init__(self, desk: Any) -> None:
        self.desk = desk

    def wait(self, interval: float, stop: threading.Event | None) -> bool:
        import ray

        delay = ray.get(self.desk.reserve.remote(interval)) - time.time()
        if delay > 0:
            time.sleep(delay)
        return True


def _download(item: FetchItem, videos: Path, config: FetchConfig, desk: Any) -> list[Outcome]:
    return [stages.download(item, videos, config, _RemotePacer(desk))]


def _normalize(d: Downloaded, videos: Path, config: FetchConfig, faults: tuple[Fault, ...]) -> list[Outcome]:
    return [stages.normalize(d, videos, config, None, faults)]


def _started(desk: str, key: str) -> None:
    """Tell the run's desk (a named actor: an actor handle among an actor's constructor
    arguments would live in the object store, which Ray warns of for restartable actors)
    that the call `key` started."""
    import ray

    ray.get(ray.get_actor(desk).started.remote(key))


class _ShotsActor:
    def __init__(self, desk: str, store: Path, config: ShotsConfig, faults: tuple[Fault, ...]) -> None:
        self.desk, self.stage = desk, stages.Shots(store, config, faults)

    def run(self, key: str, pairs: list[tuple[str, str]]) -> list[Outcome]:
        _started(self.desk, key)
        return [self.stage(mid, video) for mid, video in pairs]


class _FeaturesActor:
    def __init__(
        self,
        desk: str,
        folder: Path,
        shots: Path,
        config: ExtractConfig,
        faults: tuple[Fault, ...],
        one: ShotsConfig | None = None,
    ) -> None:
        # one: a single decode per trailer finds its shots here too, with these settings
        finder = stages.Shots(shots, one, faults) if one is not None else None
        self.desk, self.stage = desk, stages.Features(folder, shots, config, faults, shots=finder)

    def run(self, key: str, pairs: list[tuple[str, str]]) -> list[Outcome]:
        _started(self.desk, key)
        return self.stage(pairs)


# ---- the driver's side ---------------------------------------------------------------------------


class RayBackend:
    """Ray tasks and actors for the calls of each stage (see `scheduler.Backend`)."""

    def __init__(
        self,
        layout: Layout,
        run: RunConfig,
        fetch: FetchConfig,
        shots: ShotsConfig,
        extract: ExtractConfig,
        log: Callable[[str], None] = print,
        runners: list | None = None,  # the backbones on the CPU, for the stores' settings (loaded when None)
    ) -> None:
        self.ray = import_ray()
        self.layout, self.run, self.fetch = layout, run, fetch
        self.actors: dict[str, list] = {"shots": [], "features": []}
        self.load: dict[str, list[int]] = {"shots": [], "features": []}
        self.owner: dict[Any, tuple[str, int]] = {}
        self.keys: dict[Any, str] = {}  # a model call's key at the desk
        self.desk: Any = None  # the Ray actor that paces downloads and counts model calls
        cpus = os.cpu_count() or 1
        if not run.address and not self.ray.is_initialized():
            import torch

            # a Ray instance started here gets at least the logical CPUs the run needs (Ray's
            # CPUs are scheduling tokens: a 2-core machine still runs both actors and ffmpeg)
            here = {"CPU": 1 << 10, "GPU": torch.cuda.device_count()}
            cpus = max(cpus, Placement.plan(here, run, extract, "this machine").cpus_needed)
        self.started = connect(self.ray, run, cpus)
        try:
            self._start(shots, extract, log, runners)
        except BaseException:
            self.close()
            raise

    def _start(
        self, shots: ShotsConfig, extract: ExtractConfig, log: Callable[[str], None], runners: list | None = None
    ) -> None:
        ray, run, lay = self.ray, self.run, self.layout
        where = run.address or "started here"
        place = Placement.plan(ray.cluster_resources(), run, extract, where)
        # The stores are made here, once: no two actors create one at once, and a store made
        # with other settings stops the run before any work.
        from t12k.storage import ShotStore

        stages.open_shots_store(lay.shots, shots)
        runners = runners or stages.load_runners(extract, device="cpu")
        stages.open_feature_stores(runners, extract, ShotStore.open(lay.shots).settings, lay.features, log)
        del runners
        keep = {"max_restarts": -1, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        # the desk lives beside the driver (soft: anywhere if that node cannot take it)
        # and comes back if its node goes
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        desk = f"t12k-run-desk-{uuid.uuid4().hex}"
        self.desk = (
            ray.remote(_Desk)
            .options(name=desk, num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy=here)
            .remote()
        )
        shots_cfg = dataclasses.replace(shots, device=place.device)
        extract_cfg = dataclasses.replace(extract, device=place.device)
        one = shots_cfg if run.decode == "once" else None
        for _ in range(place.actors):
            if one is None:
                self.actors["shots"].append(
                    ray.remote(_ShotsActor)
                    .options(**place.shots, **keep)
                    .remote(desk, lay.shots, shots_cfg, run.faults)
                )
            self.actors["features"].append(
                ray.remote(_FeaturesActor)
                .options(**place.features, **keep)
                .remote(desk, lay.features, lay.shots, extract_cfg, run.faults, one)
            )
        self.load = {s: [0] * place.actors for s in self.actors}
        self.download_task = ray.remote(_download).options(num_cpus=0, max_retries=0)
        self.normalize_task = ray.remote(_normalize).options(num_cpus=1, max_retries=0)
        self.slots = {
            "download": self.fetch.workers,
            "normalize": place.normalize,
            "shots": 2 * place.actors,  # one running and one waiting per actor: an actor never idles
            "features": 2 * place.actors,
        }
        self.group = {"features": run.group}
        self.attempts = run.attempts

    def submit(self, stage: str, tickets: list[Ticket]) -> Any:
        videos, t = self.layout.videos, tickets[0]
        if stage in ("download", "normalize"):
            if stage == "download":
                ref = self.download_task.remote(t.item, videos, self.fetch, self.desk)
            else:
                ref = self.normalize_task.remote(t.download, videos, self.fetch, self.run.faults)
            self.owner[ref] = (stage, -1)
            return ref
        load = self.load[stage]
        i = min(range(len(load)), key=load.__getitem__)  # the least busy actor
        key = uuid.uuid4().hex
        ref = self.actors[stage][i].run.remote(key, [(x.mid, str(x.video)) for x in tickets])
        load[i] += 1
        self.owner[ref] = (stage, i)
        self.keys[ref] = key
        return ref

    def wait(self, handles: list, timeout: float) -> list:
        ready, rest = self.ray.wait(handles, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return ready

    def result(self, handle: Any) -> list[Outcome]:
        stage, i = self.owner.pop(handle)
        if i >= 0 and self.load[stage]:
            self.load[stage][i] -= 1
        outcomes = self.ray.get(handle)
        self.keys.pop(handle, None)  # (a failed call's key is for `lost`)
        return outcomes

    def lost(self, handle: Any, exc: BaseException) -> str | None:
        errors = self.ray.exceptions
        if isinstance(exc, (errors.RayTaskError, errors.TaskCancelledError)) or not isinstance(exc, errors.RayError):
            return None
        key = self.keys.pop(handle, None)
        if key is not None and not self.ray.get(self.desk.ran.remote(key)):
            return "again"  # its actor was gone before the call started (restarting elsewhere)
        return "attempt"

    def failure(self, exc: BaseException) -> str:
        errors = self.ray.exceptions
        if isinstance(exc, errors.RayTaskError):  # the stage itself raised: a bug
            return f"unexpected {describe(getattr(exc, 'cause', None) or exc)}"
        if isinstance(exc, errors.RayError):
            return (
                f"its worker died in each of {self.run.attempts} attempts (killed, out of memory, or a crash in a "
                f"decoder or model; {type(exc).__name__}); check this trailer's video"
            )
        return describe(exc)

    def stop(self) -> None:
        """Cancel the tasks and kill the actors: what they held is redone by the next run."""
        for ref, (_, i) in list(self.owner.items()):
            if i < 0:
                self.ray.cancel(ref, force=True)
        self._kill_actors()

    def _kill_actors(self) -> None:
        if self.ray.is_initialized():
            for actor in (a for actors in self.actors.values() for a in actors):
                self.ray.kill(actor, no_restart=True)
            if self.desk is not None:
                self.ray.kill(self.desk, no_restart=True)
                self.desk = None
        self.actors = {s: [] for s in self.actors}
        self.load = {s: [] for s in self.actors}

    def close(self) -> None:
        self._kill_actors()
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
            self.started = False
