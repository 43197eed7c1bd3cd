"""The settings of `t12k run` and where it writes.

`RunConfig` holds only what the run itself adds (engine, cluster, queues, actors, attempts);
each stage keeps its own settings dataclass (`FetchConfig`, `ShotsConfig`, `ExtractConfig`),
whose options the command line reuses. `Layout` names the run's folder: the same files the
three stage commands write when given these paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from t12k.errors import T12kError
from t12k.settings import check_fields, setting

ENGINES = ("local", "ray")
DECODES = ("once", "per-stage")
STAGES = ("download", "normalize", "shots", "features")  # the order a trailer goes through them


@dataclass(frozen=True)
class RunConfig:
    """How `run_collection` schedules the stages: on this machine or a Ray cluster."""

    engine: str = setting(
        "local",
        "where the stages run: local (download threads, normalizing processes and the model device of this "
        "machine) or ray (tasks and model actors on a Ray cluster)",
        choices=ENGINES,
    )
    address: str | None = setting(
        None,
        "Ray cluster to run on: host:port of its head, or auto for the one `ray start` runs on this machine; "
        "without it: a Ray instance started on this machine for the run",
        metavar="ADDR",
    )
    queue: int = setting(
        4,
        "trailers that may wait between two stages; a stage that falls behind holds back the ones before it, "
        "so memory and scratch disk stay flat",
        metavar="N",
        min=1,
    )
    group: int = setting(8, "most trailers per call of the feature stage (their clips share model batches)", min=1)
    decode: str = setting(
        "once",
        "once: one decode per trailer feeds both TransNet V2 (48x27) and the backbones, the feature stage "
        "finding the shots as it goes; per-stage: the shot and feature stages each decode, as `t12k shots` "
        "and `t12k extract` do",
        choices=DECODES,
    )
    decode_workers: int | str | None = setting(
        None,
        "decode processes of the feature stage (`t12k extract --workers`; here --workers counts downloads): 0 "
        "decodes in the model's process; auto: 1 on CPU, one per core but one (at most 16) on a GPU; without it: auto",
        metavar="N",
    )
    actors: int | None = setting(
        None,
        "ray: model actors per model stage (shots, features), each loading its weights once; without it: one "
        "per GPU of the cluster, else 1",
        metavar="N",
        min=1,
    )
    attempts: int = setting(
        3,
        "ray: tries of a trailer's stage when its worker, actor or node dies; a trailer that kills its worker "
        "every time is recorded failed after these",
        min=1,
    )
    ray_cpus: int | None = setting(
        None,
        "ray: CPUs of the Ray instance the run starts when no --address is given; without it: all",
        metavar="N",
        min=1,
    )
    # Not on the command line: faults to inject (`faults.Fault`), for the tests of lost workers.
    faults: tuple = field(default=(), metadata={"cli": False})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise T12kError naming the option and the fix for a setting no run could use: the
        choices and ranges the fields carry (`check_fields`), then the rule between two."""
        check_fields(self)
        if self.address and self.engine != "ray":
            raise T12kError(f"--address {self.address} names a Ray cluster; add --engine ray (or drop --address)")


@dataclass(frozen=True)
class Layout:
    """The folder of a run: what `fetch --out DIR/videos`, `shots --store DIR/shots.zarr` and
    `extract --out DIR/features` would leave there."""

    root: Path

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def shots(self) -> Path:
        return self.root / "shots.zarr"

    @property
    def shots_manifest(self) -> Path:
        return self.shots.with_suffix(".manifest.csv")  # where `t12k shots` keeps it

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def features_manifest(self) -> Path:
        return self.features / "extract.manifest.csv"  # where `t12k extract` keeps it

    def video(self, mid: str) -> Path:
        return self.videos / f"{mid}.mp4"  # where fetch normalizes a trailer to

    def make(self) -> None:
        """The run's folders, made if need be; T12kError naming the one that cannot be written
        in (a read-only file system, no permission) before any work starts."""
        from t12k.storage.folders import writable_folder

        for folder in (self.root, self.videos, self.features):
            writable_folder(folder)
