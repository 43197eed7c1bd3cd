"""The Ray engine: any list of stages as Ray tasks and actors, placed by what they declare.

A stage that keeps no state runs as tasks asking for its `resources` (a download asks for
no CPU: it waits on the network; the polite pacing between download starts is one small
actor's clock, for the whole cluster, handed to any stage with a `pacer`). A stage that
keeps state (shot detection, the backbones) lives in actors that run its `setup` once (the
weights loaded once), with an even share of the cluster's GPUs when it has any (a shots
actor and a features actor share one), else on the CPUs it declares. The stores are created
by the driver (`Stage.prepare`), then every actor commits its trailers into them with the
stores' per-trailer commit, on a path every node sees; only the driver writes the manifests.

Lost work: an actor that dies is restarted (`max_restarts`), on another node when its node
is gone; the scheduler tries a lost call again (Ray itself retries nothing, so that the
attempts of a trailer are counted in one place), `attempts` tries in all, then records the
trailer failed with its stage and reason. Ray is an optional extra (`pip install 't12k[ray]'`), imported only
here and only when this engine runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from t12k.errors import T12kError, describe, first_line
from t12k.pipeline.run.config import RunConfig
from t12k.pipeline.stage import Outcome, Stage, Ticket

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
    # address "local": a new instance, never a cluster `ray start` left on this machine
    ray.init(address="local", num_cpus=config.ray_cpus or cpus, include_dashboard=False, **quiet)
    return True


@dataclass(frozen=True)
class Placement:
    """Where a pipeline's stages go and what each of their workers asks of the cluster, from
    the resources the stages declare (`Stage.resources`): a stage that keeps state (a model)
    becomes `actors` actors, one that keeps none becomes tasks."""

    device: str  # what the model stages run on: cuda or cpu
    actors: int  # actors per stateful stage
    stages: tuple[Stage, ...]  # the stages, placed on `device`
    options: dict[str, dict]  # each stage's Ray resources (`Resources.ray_options`), GPUs shared
    slots: dict[str, int]  # calls of each stage at once

    @classmethod
    def plan(cls, resources: dict, run: RunConfig, stages: Sequence[Stage], where: str) -> Placement:
        """The placement on a cluster with `resources`; T12kError naming what is missing."""
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        models = [s for s in stages if s.resources().gpus > 0]  # stages that would take a GPU
        for s in models:
            asked = str(getattr(getattr(s, "config", None), "device", "auto"))
            if asked.startswith("cuda") and gpus < 1:
                raise T12kError(
                    f"--device {asked} asks for a GPU but the Ray cluster ({where}) has none; use --device cpu or "
                    "auto, or add GPU nodes"
                )
        gpu = gpus >= 1 and bool(models)
        placed = tuple(s.placed("cuda" if gpu else "cpu") if s.stateful else s for s in stages)
        n = run.actors or (int(gpus) if gpu else 1)
        sharing = max(1, n * sum(1 for s in placed if s.stateful and s.resources().gpus > 0))
        options, slots, held = {}, {}, 0.0
        for s in placed:
            res = s.resources()
            if res.gpus:  # the stateful stages' actors share the GPUs evenly
                res = dataclasses.replace(res, gpus=min(res.gpus, gpus / sharing))
            options[s.name] = res.ray_options()
            if s.stateful:
                held += n * res.cpus
                slots[s.name] = 2 * n  # one running and one waiting per actor: an actor never idles
        spare = cpus - held
        for s in placed:
            if not s.stateful:  # tasks: a stage that asks no CPU gets its own slots, others the spare CPUs
                need = s.resources().cpus
                slots[s.name] = max(1, s.slots if not need else int(spare // need))
        least = held + max((s.resources().cpus for s in placed if not s.stateful), default=0)
        if cpus < least:
            sizes = ", ".join(
                f"{n} {s.name} actor(s) of {options[s.name]['num_cpus']:g} CPU(s)" for s in placed if s.stateful
            )
            raise T12kError(
                f"the Ray cluster ({where}) has {cpus:g} CPUs and this run needs at least {least:g}: {sizes} and one "
                "task of each other stage; add nodes, or lower --actors or --decode-workers"
            )
        return cls("cuda" if gpu else "cpu", n, placed, options, slots)

    @property
    def cpus_needed(self) -> int:
        """The least CPUs the run can go on with: its actors and one task of each other stage."""
        cpus = {s.name: self.options[s.name]["num_cpus"] for s in self.stages}
        held = sum(self.actors * cpus[s.name] for s in self.stages if s.stateful)
        return math.ceil(held + max((cpus[s.name] for s in self.stages if not s.stateful), default=0))


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


def _task(stage: Stage, tickets: list[Ticket]) -> list[Outcome]:
    """One call of a stage that keeps no state, as a Ray task: set up, process, torn down."""
    stage.setup()
    try:
        return stage.process(tickets)
    finally:
        stage.teardown()


def _started(desk: str, key: str) -> None:
    """Tell the run's desk (a named actor: an actor handle among an actor's constructor
    arguments would live in the object store, which Ray warns of for restartable actors)
    that the call `key` started."""
    import ray

    ray.get(ray.get_actor(desk).started.remote(key))


class _StageActor:
    """A stage that keeps state (a model, open stores): set up once, then its calls."""

    def __init__(self, desk: str, stage: Stage) -> None:
        self.desk, self.stage = desk, stage
        stage.setup()

    def run(self, key: str, tickets: list[Ticket]) -> list[Outcome]:
        _started(self.desk, key)
        return self.stage.process(tickets)


# ---- the driver's side ---------------------------------------------------------------------------


class RayBackend:
    """Ray tasks and actors for the calls of any list of stages (see `scheduler.Backend`)."""

    def __init__(self, stages: Sequence[Stage], run: RunConfig) -> None:
        self.ray = import_ray()
        self.run = run
        self.actors: dict[str, list] = {}
        self.load: dict[str, list[int]] = {}
        self.owner: dict[Any, tuple[str, int]] = {}
        self.keys: dict[Any, str] = {}  # a model call's key at the desk
        self.desk: Any = None  # the Ray actor that paces downloads and counts model calls
        cpus = os.cpu_count() or 1
        if not run.address and not self.ray.is_initialized():
            import torch

            # a Ray instance started here gets at least the logical CPUs the run needs (Ray's
            # CPUs are scheduling tokens: a 2-core machine still runs both actors and ffmpeg)
            here = {"CPU": 1 << 10, "GPU": torch.cuda.device_count()}
            cpus = max(cpus, Placement.plan(here, run, stages, "this machine").cpus_needed)
        self.started = connect(self.ray, run, cpus)
        try:
            self._start(stages)
        except BaseException:
            self.close()
            raise

    def _start(self, stages: Sequence[Stage]) -> None:
        ray, run = self.ray, self.run
        place = Placement.plan(ray.cluster_resources(), run, stages, run.address or "started here")
        # The stores are made here, once: no two actors create one at once, and a store made
        # with other settings stops the run before any work.
        for stage in place.stages:
            stage.prepare()
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
        self.tasks: dict[str, tuple[Any, Any]] = {}
        for stage in place.stages:
            options = place.options[stage.name]
            if stage.stateful:
                actor = ray.remote(_StageActor).options(**options, **keep)
                self.actors[stage.name] = [actor.remote(desk, stage) for _ in range(place.actors)]
                self.load[stage.name] = [0] * place.actors
            else:
                if hasattr(stage, "pacer"):  # one polite clock for the whole cluster
                    stage.pacer = _RemotePacer(self.desk)
                self.tasks[stage.name] = (ray.remote(_task).options(**options, max_retries=0), ray.put(stage))
        self.slots = place.slots
        self.attempts = run.attempts

    def submit(self, stage: str, tickets: list[Ticket]) -> Any:
        if stage in self.tasks:
            task, shipped = self.tasks[stage]
            ref = task.remote(shipped, tickets)
            self.owner[ref] = (stage, -1)
            return ref
        load = self.load[stage]
        i = min(range(len(load)), key=load.__getitem__)  # the least busy actor
        key = uuid.uuid4().hex
        ref = self.actors[stage][i].run.remote(key, tickets)
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
