"""The four stages of `t12k run` (download, normalize, shots, features), each written once
against the stage interface (`t12k.pipeline.stage.Stage`), one trailer (or one group of
trailers) per call, without global state: the local engine calls them in threads of this
process, the Ray engine in tasks and actors on any node. `build_stages` is the run's list;
the download and normalize stages are in `fetch_stages`.
They are built on the stage commands' own code (fetch's download and
normalizer, the shots detector, extract's engine and stores), so a run writes what
`fetch`, `shots` and `extract` would.

Each call returns one `Outcome` per trailer (never raises for a trailer's failure): its
status (ok, skipped, failed, rejected, cancelled), the one-line reason, the fields of its
manifest row and the seconds the stage spent on it. The model stages commit each trailer
with the stores' per-trailer commit, where the work is done; the manifests are the engine's.
Given a `stop` event, a model stage stops within a batch or so once it is set: its trailers
not yet committed come back cancelled (the next run redoes them), never half-written.

Frames: `Shots` decodes a video at TransNet V2's input size itself unless it is given the
frames; a single decode for both model stages would hand it those (see `Shots.__call__`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t12k import __version__
from t12k.errors import Cancelled, T12kError, describe
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.run.faults import Fault, inject
from t12k.pipeline.run.fetch_stages import Download, Normalize
from t12k.pipeline.stage import Outcome, Resources, Stage, Ticket

if TYPE_CHECKING:  # the download and normalize tasks of a Ray worker need no torch
    import numpy as np
    import torch

    from t12k.pipeline.extract.config import ExtractConfig
    from t12k.pipeline.extract.onepass import Shot
    from t12k.pipeline.shots_command import ShotsConfig
    from t12k.shots import ShotDetector
    from t12k.storage import ShotStore

# What the stage commands catch per trailer (see `t12k.pipeline.summary.run_items`).
TRAILER_ERRORS = (T12kError, OSError, ValueError, RuntimeError)


# ---- shots ------------------------------------------------------------------------------------


def open_shots_store(path: Path, config: ShotsConfig) -> ShotStore:
    """The shots store at `path`, created or appended to with `config`'s settings (as `t12k shots`)."""
    from t12k.storage import ShotStore

    return ShotStore.create_or_append(
        path, config.store_settings(), zarr_format=config.zarr_format, info={"t12k_version": __version__}
    )


class Shots(Stage):
    """The shots stage: TransNet V2 over one video into the shots store. The store is opened
    by `setup` (or the first call); the detector is loaded once, on the first trailer that
    needs it."""

    name = "shots"
    stateful = True

    def __init__(self, store_path: Path, config: ShotsConfig, faults: tuple[Fault, ...] = (), batch: int = 1):
        self.store_path, self.config, self.faults, self.batch = Path(store_path), config, faults, batch
        self._store: ShotStore | None = None
        self.detector: ShotDetector | None = None

    def resources(self) -> Resources:
        return Resources(cpus=1, gpus=0 if self.config.device == "cpu" else 1)

    def placed(self, device: str) -> Shots:
        """This stage with its model on `device` (an engine's placement)."""
        import dataclasses

        return Shots(self.store_path, dataclasses.replace(self.config, device=device), self.faults, self.batch)

    def prepare(self) -> None:
        open_shots_store(self.store_path, self.config)

    def setup(self) -> None:
        if self._store is None:
            self._store = open_shots_store(self.store_path, self.config)

    @property
    def store(self) -> ShotStore:
        self.setup()
        assert self._store is not None
        return self._store

    def process(self, tickets: list[Ticket], stop: threading.Event | None = None) -> list[Outcome]:
        """The shots of a group of trailers: each one's frames decoded while the one before
        it is detected (one ahead, a bounded buffer), and, with several windows per forward
        (a GPU), a trailer's last batch filled with the next one's first windows."""
        from t12k.pipeline.shot_frames import FrameDecoder
        from t12k.storage.locks import Claims

        if stop is not None and stop.is_set():
            return [Outcome(t.mid, "cancelled") for t in tickets]
        todo = [t.mid for t in tickets if not self.store.is_done(t.mid)]
        out = []
        paths = {t.mid: Path(str(t.data)) for t in tickets}
        # the trailer in hand is claimed in the store for `t12k status` (in flight)
        with FrameDecoder(paths, todo) as decoder, Claims(self.store_path) as claims:
            for t in tickets:
                if t.mid not in todo:
                    out.append(Outcome(t.mid, "skipped", data=t.data))
                elif stop is not None and stop.is_set():
                    out.append(Outcome(t.mid, "cancelled"))
                else:
                    claims.claim(t.mid)
                    try:
                        ahead = functools.partial(decoder.ready_after, t.mid)
                        out.append(self(t.mid, str(t.data), decoder.frames(t.mid), stop, ahead))
                    finally:
                        decoder.done(t.mid)
                        claims.release(t.mid)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None, "detector": None}  # opened and loaded on the worker

    def _detector(self) -> ShotDetector:
        """TransNet V2, built on the first trailer that needs it: PyTorch is imported here, not
        before, so that the first trailers' frames decode while it is (`t12k shots`)."""
        if self.detector is None:
            from t12k.startup import settled_imports

            with settled_imports(freeze=False):
                from t12k.device import resolve_device
                from t12k.shots import ShotDetector

            self.detector = ShotDetector(device=resolve_device(self.config.device), threshold=self.config.threshold)
        return self.detector

    def __call__(
        self,
        mid: str,
        video: str,
        frames: Iterable[np.ndarray] | None = None,
        stop: threading.Event | None = None,
        upcoming: Callable[[], list] | None = None,
    ) -> Outcome:
        """Detect and commit the shots of one video (skipped when the store has them, sound);
        cancelled, nothing committed, once `stop` is set.

        `frames`: the video's RGB frames at TransNet V2's input size (27x48), an array or an
        iterable of frames or blocks, when the caller decodes them (`process`, or a single
        decode shared with the feature stage); else they stream from ffmpeg here, so memory
        stays flat whatever the trailer's length. `upcoming`: the next trailers' first frames
        decoded so far (`ShotDetector.predict`), to fill this one's last batch of windows."""
        if self.store.is_done(mid):
            return Outcome(mid, "skipped", data=video)
        t0 = time.perf_counter()
        decoded = None
        try:
            if frames is None:
                from t12k.pipeline.media import iter_frames
                from t12k.shots import INPUT_SIZE

                frames = decoded = iter_frames(video, INPUT_SIZE)
            if stop is not None:  # no more frames read, and TransNet V2 stops within a window
                from t12k.pipeline.extract.background import until

                frames = until(stop, iter(frames))
            detector = self._detector()
            kw: dict[str, Any] = {} if stop is None else {"stop": stop}
            if upcoming is not None and detector.windows_per_batch > 1:
                kw.update(key=mid, upcoming=upcoming)
            shots, preds = detector.detect(frames, **kw)
            inject(self.faults, "shots", mid)
            self.store.write_shots(mid, shots, preds)
        except TRAILER_ERRORS as exc:
            return Outcome(mid, "failed", describe(exc), seconds=time.perf_counter() - t0)
        except Cancelled:
            return Outcome(mid, "cancelled", seconds=time.perf_counter() - t0)
        finally:
            if decoded is not None:
                decoded.close()  # ends ffmpeg when the detector stopped early
        fields = {"frames": len(preds), "shots": len(shots)}
        return Outcome(mid, "ok", fields=fields, seconds=time.perf_counter() - t0, data=video)


# ---- features ---------------------------------------------------------------------------------


def open_feature_stores(
    runners: list, config: ExtractConfig, shot_settings: dict, folder: Path, log: Callable[[str], None] | None = None
) -> dict:
    """One feature store per backbone in `folder`, new or made with the same settings (as `t12k extract`)."""
    from t12k.pipeline.extract import store_settings
    from t12k.storage import FeatureStore

    stores = {}
    for r in runners:
        path = Path(folder) / r.spec.store_name(config.fpc, config.fps, config.strategy)
        stores[r.spec.key] = FeatureStore.create_or_append(
            path,
            store_settings(r, config, shot_settings),
            attrs={"num_features": r.spec.num_features},
            zarr_format=config.zarr_format,
            info={"t12k_version": __version__, "pretraining": r.spec.pretraining},
        )
        if log is not None:
            log(f"{r.spec.key}: weights {r.weights_used} -> {path}")
    return stores


def load_runners(config: ExtractConfig, device: str | torch.device | None = None) -> list:
    """The backbones of `config` on `device` (default: the config's), weights loaded."""
    from t12k.backbones import parse_backbones
    from t12k.device import resolve_device
    from t12k.pipeline.extract import BackboneRunner

    dev = resolve_device(config.device if device is None else device)
    return [
        BackboneRunner(s, config.weights, dev, config.batch_size, config.precision, runtime=config.runtime)
        for s in parse_backbones(config.backbones)
    ]


class Features(Stage):
    """The feature stage: clips from the shots store, every backbone, one store per backbone.
    The backbones are loaded once (by `setup`, or given); a group of trailers shares model
    batches. Given a shots stage (`shots`), one decode per trailer finds its shots too."""

    name = "features"
    stateful = True

    def __init__(
        self,
        folder: Path,
        shots_path: Path,
        config: ExtractConfig,
        faults: tuple[Fault, ...] = (),
        log: Callable[[str], None] | None = None,
        shots: Shots | None = None,
        runners: list | None = None,
        batch: int = 1,
    ) -> None:
        self.folder, self.config, self.faults, self.shots_path = Path(folder), config, faults, Path(shots_path)
        self.log, self.batch = log, batch
        self.shots = shots  # given: one decode per trailer finds its shots too (`one_decode`)
        self.runners = runners  # given: loaded by the caller, on the config's device
        self.engine: Any = None
        self._claimed: _Claimed | None = None  # the claims of the call running (`_claims`)
        self._last = 0.0  # when the call running last finished a trailer (`_finished`)

    def resources(self) -> Resources:
        """The model's core (or a GPU) and its decode processes; TransNet V2's core too when
        it finds the shots."""
        from t12k.pipeline.extract import worker_count

        cuda = self.config.device != "cpu"
        decode = worker_count(self.config.workers, "cuda" if cuda else "cpu")
        cpus = (max(1, decode) if cuda else 1 + decode) + (1 if self.shots is not None else 0)
        return Resources(cpus=cpus, gpus=1 if cuda else 0)

    def placed(self, device: str) -> Features:
        """This stage with its models on `device` (an engine's placement)."""
        import dataclasses

        shots = None if self.shots is None else self.shots.placed(device)
        config = dataclasses.replace(self.config, device=device)
        return Features(self.folder, self.shots_path, config, self.faults, self.log, shots, None, self.batch)

    def prepare(self) -> None:
        """The stores, made or checked against these settings, before any worker starts (the
        backbones loaded on the CPU for their settings when none were given)."""
        from t12k.storage import ShotStore

        if self.shots is not None:
            self.shots.prepare()
        runners = self.runners or load_runners(self.config, device="cpu")
        if self.config.device == "cpu":
            self.runners = runners  # the ones `setup` would load
        open_feature_stores(runners, self.config, ShotStore.open(self.shots_path).settings, self.folder, self.log)

    def setup(self) -> None:
        """The backbones loaded (unless given), the stores opened and the feature engine built."""
        if self.engine is not None:
            return
        from t12k.pipeline.extract import Engine, worker_count
        from t12k.pipeline.extract.device_io import is_cuda
        from t12k.pipeline.extract.onepass import onepass_threads
        from t12k.storage import ShotStore

        config = self.config
        if self.shots is not None:
            self.shots.setup()
        self.runners = self.runners or load_runners(config)
        device = self.runners[0].device
        self.decoders = onepass_threads(config.workers, device)
        shot_settings = ShotStore.open(self.shots_path).settings
        self.stores = open_feature_stores(self.runners, config, shot_settings, self.folder)  # (`prepare` logs)
        resize_on = config.resize_on
        if resize_on == "auto":  # as `t12k extract`: on a GPU the device resizes, on a CPU the workers
            resize_on = "device" if is_cuda(device) else "workers"
        self.engine = Engine(
            self.runners,
            config.batch_size,
            workers=worker_count(config.workers, device),
            prefetch=config.prefetch,
            resize_on=resize_on,
            reps_on=config.reps_on,
        )

    def process(self, tickets: list[Ticket], stop: threading.Event | None = None) -> list[Outcome]:
        if stop is not None and stop.is_set():
            return [Outcome(t.mid, "cancelled") for t in tickets]
        return self([(t.mid, str(t.data)) for t in tickets], stop)

    def __getstate__(self) -> dict[str, Any]:
        # loaded on the worker; a progress callback stays with its caller
        return {**self.__dict__, "runners": None, "engine": None, "stores": None, "progress": None, "_claimed": None}

    def _plan(self, mid: str, shots: ShotStore) -> tuple:
        """(clip plan, frames) of one trailer from the shots store, as `t12k extract` plans it."""
        if mid not in shots:
            raise T12kError(f"{mid} is not in the shots store {shots.path}; run `t12k shots` on it first")
        trailer_shots, predictions = shots.trailer(mid)  # checked: damaged shots fail the trailer
        plan, num_frames = self._plan_of(trailer_shots, len(predictions))
        if len(plan) == 0:
            raise T12kError(f"{mid} has no clips (empty video?); re-fetch it")
        return plan, num_frames

    def __call__(self, trailers: list[tuple[str, str]], stop: threading.Event | None = None) -> list[Outcome]:
        """Extract and commit the features of (id, video) pairs; trailers in every store are
        skipped. Once `stop` is set, the trailers not yet committed come back cancelled."""
        from t12k.pipeline.extract import Job

        self.setup()
        if self.shots is not None:
            return self.one_decode(trailers, stop)
        from t12k.storage import ShotStore

        out: dict[str, Outcome] = {}
        jobs, plans = [], {}
        shots = ShotStore.open(self.shots_path)  # opened per call: it grows while the run goes on
        for mid, video in trailers:
            if all(s.is_done(mid) for s in self.stores.values()):
                out[mid] = Outcome(mid, "skipped")
                continue
            try:
                plans[mid] = self._plan(mid, shots)
            except T12kError as exc:
                out[mid] = Outcome(mid, "failed", describe(exc))
                continue
            jobs.append(Job(mid, str(video), plans[mid][0]))
        t0 = time.perf_counter()
        self._last = t0  # (`_finished`)
        with _stoppable(stop, [j.mid for j in jobs], out), self._claims() as claims:
            commit = lambda m, f, r: self._commit(m, f, r, plans, out)  # noqa: E731
            self.engine.run(jobs, commit, self._failed(out), stop, on_start=claims.claim)
        share = (time.perf_counter() - t0) / max(1, len(jobs))
        for job in jobs:
            out.setdefault(job.mid, Outcome(job.mid, "failed", "the feature engine returned nothing for it"))
            out[job.mid].seconds = share
        return [out[mid] for mid, _ in trailers]

    def one_decode(self, trailers: list[tuple[str, str]], stop: threading.Event | None = None) -> list[Outcome]:
        """Shots and features of (id, video) pairs from one decode each (`OnePass`). Each
        outcome is the feature stage's, with the shot stage's outcome as its `data` (a trailer
        cancelled by `stop` may have its shots committed: then they are its `data`)."""
        from t12k.pipeline.extract.onepass import OnePass, planning_of

        self.setup()
        assert self.shots is not None
        shots, store = self.shots, self.shots.store
        out: dict[str, Outcome] = {}
        todo = []
        for mid, video in trailers:
            if store.is_done(mid) and all(s.is_done(mid) for s in self.stores.values()):
                out[mid] = Outcome(mid, "skipped", data=Outcome(mid, "skipped"))
            else:
                todo.append((mid, str(video)))

        def commit(shot: Shot) -> None:
            inject(self.faults, "shots", shot.mid)
            store.write_shots(shot.mid, shot.shots, shot.preds)
            if self._claimed is not None:
                self._claimed.release(shot.mid, store.path)

        def known(mid: str) -> tuple[np.ndarray, np.ndarray] | None:
            return store.trailer(mid) if store.is_done(mid) else None

        one = OnePass(
            shots._detector(),
            commit,
            known,
            self.engine.geometries,
            planning_of(self.config, shots.config.threshold),
            chunk=self.engine.chunk,
            threads=self.decoders,
        )
        plans: dict = {}
        t0 = time.perf_counter()
        self._last = t0  # (`_finished`)

        def done(mid: str, feats: dict, reps: np.ndarray) -> None:
            shot = one.shots[mid]
            plans[mid] = self._plan_of(shot.shots, len(shot.preds))
            self._commit(mid, feats, reps, plans, out)

        with _stoppable(stop, [mid for mid, _ in todo], out), self._claims(store.path) as claims:
            items = one.items(todo, None if stop is None else _Within(stop))
            self.engine.consume(items, done, self._failed(out), ready=True, stop=stop, on_start=claims.claim)
        share = (time.perf_counter() - t0) / max(1, len(todo))
        for mid, _ in todo:
            o = out.setdefault(mid, Outcome(mid, "failed", "the feature engine returned nothing for it"))
            o.seconds, shot = share, one.shots.get(mid)
            if shot is None:  # failed (or cancelled) before its shots were found: so did the shot stage
                o.data = Outcome(mid, o.status, o.reason, seconds=share)
            else:  # found: in the store already (the ledger records it when no run did)
                fields = {"frames": len(shot.preds), "shots": len(shot.shots)}
                o.data = Outcome(mid, "skipped" if shot.found else "ok", fields=fields, seconds=shot.seconds)
        return [out[mid] for mid, _ in trailers]

    def _plan_of(self, shots: np.ndarray, num_frames: int) -> tuple:
        """(clip plan, frames) of a trailer with these shots, as `t12k extract` plans it."""
        from t12k.shots import plan_clips

        c = self.config
        return plan_clips(shots, num_frames, c.strategy, c.fpc, c.fps), num_frames

    def _commit(self, mid: str, feats: dict, reps: np.ndarray, plans: dict, out: dict) -> None:
        """Write one finished trailer to every store it is missing from."""
        from t12k.pipeline.extract import clip_table

        plan, num_frames = plans[mid]
        runners = self.runners or []  # (set up: the backbones are loaded)
        for r in runners:  # features holding NaN or Inf go to no store: the trailer fails
            self.stores[r.spec.key].check_features(mid, feats[r.spec.key])
        for i, r in enumerate(runners):
            if i == 1:
                inject(self.faults, "features-between", mid)  # one store written, the others not yet
            store = self.stores[r.spec.key]
            if i == 0:
                inject(self.faults, "features", mid)
            if not store.is_done(mid):  # present and sound: an earlier attempt wrote it
                store.write_features(mid, feats[r.spec.key], clip_table(plan, reps, r.spec.kind))
        out[mid] = Outcome(mid, "ok", fields={"clips": len(plan), "frames": num_frames})
        self._finished(out[mid])

    @contextmanager
    def _claims(self, *more: Path) -> Iterator[_Claimed]:
        """While a call runs, the trailers whose chunks reached the models and that are not
        committed or failed yet are claimed in the first feature store (and in `more` stores:
        the shots store, when one decode finds the shots), for `t12k status`'s in flight."""
        from t12k.storage.locks import Claims

        first = next(iter(self.stores.values())).path
        self._claimed = _Claimed([Claims(first), *(Claims(p) for p in more)])
        try:
            yield self._claimed
        finally:
            self._claimed.close()
            self._claimed = None

    def _finished(self, out: Outcome) -> None:
        """A trailer is committed or failed: its claims go, and the caller hears of it (its
        seconds: since the one before it finished, as the engine works on several at once)."""
        if self._claimed is not None:
            self._claimed.release(out.mid)
        now = time.perf_counter()
        out.seconds, self._last = now - self._last, now
        if self.progress is not None:
            self.progress(out)

    def _failed(self, out: dict) -> Callable[[str, str], None]:
        def failed(mid: str, reason: str) -> None:
            out[mid] = Outcome(mid, "failed", reason)
            self._finished(out[mid])

        return failed


@contextmanager
def _stoppable(stop: threading.Event | None, mids: list[str], out: dict[str, Outcome]) -> Iterator[None]:
    """Around a feature engine's run: when `stop` ends it (Cancelled), or is set by the time
    it ends, the trailers of `mids` without a committed outcome are cancelled, not failed (a
    decoder the stop ended reads like a broken video)."""
    try:
        yield
    except Cancelled:
        if stop is None:
            raise
    if stop is not None and stop.is_set():
        for mid in mids:
            if mid not in out or out[mid].status != "ok":
                out[mid] = Outcome(mid, "cancelled")


class _Claimed:
    """Claims of one call in several stores (`storage.locks.Claims`): a trailer is claimed in
    all of them and released from one (`store`) or all."""

    def __init__(self, claims: list[Any]) -> None:
        self.claims = claims

    def claim(self, mid: str) -> None:
        for c in self.claims:
            c.claim(mid)

    def release(self, mid: str, store: Path | None = None) -> None:
        for c in self.claims:
            if store is None or c.staging.root == store.parent / f".{store.name}.staging":
                c.release(mid)

    def close(self) -> None:
        for c in self.claims:
            c.close()


class _Within(threading.Event):
    """An event also set while `outer` is: `OnePass.items` stops its decoders on it, and sets
    it when it ends, which must not stop the run (`outer`)."""

    def __init__(self, outer: threading.Event):
        super().__init__()
        self.outer = outer

    def is_set(self) -> bool:
        return super().is_set() or self.outer.is_set()


def build_stages(
    layout: Any,
    run: Any,
    fetch: FetchConfig,
    shots: ShotsConfig,
    extract: ExtractConfig,
    log: Callable[[str], None] | None = None,
    runners: list | None = None,
) -> list[Stage]:
    """The stages of `t12k run` over the folder `layout` (a `Layout`), in their order, for the
    engine `run.engine`: with `run.decode == "once"` the feature stage finds the shots too and
    there is no shot stage of its own. `runners`: the backbones, loaded already (local runs)."""
    local = run.engine == "local"
    finder = Shots(layout.shots, shots, run.faults)
    one = run.decode == "once"
    features = Features(
        layout.features,
        layout.shots,
        extract,
        run.faults,
        log,
        shots=finder if one else None,
        runners=runners if local else None,
        batch=run.group,
    )
    first: list[Stage] = [Download(layout.videos, fetch), Normalize(layout.videos, fetch, run.faults, processes=local)]
    return [*first, *([] if one else [finder]), features]
