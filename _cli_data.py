"""The commands of the t12k command line that look after data: `splits` (the mtgc.csv splits),
`download-reps` (the published stores), `backbones` (the registry) and `verify` (stores
checked and repaired). `cli.py` lists them with the others; each has one function that adds
its options and one that runs it."""

from __future__ import annotations

import argparse

from t12k._cli_options import command as _command
from t12k._cli_options import finish as _finish
from t12k._cli_options import parse_ids as _ids
from t12k._cli_options import quiet_option as _quiet
from t12k.errors import T12kError
from t12k.settings import add_settings, settings_from


@_command(
    "splits",
    "make a three-split 70/10/20 mtgc.csv for a labelled collection (SOIS)",
    "Split a labelled collection into train/validation/test three times with second-order "
    "iterative stratification (SOIS, as the Trailers12k splits), write them as an mtgc.csv and report how "
    "far each subset's genre and genre-pair distributions are from the whole collection.",
    needs=("t12k.storage.mtgc",),
)
def _splits_parser(p: argparse.ArgumentParser) -> None:
    from t12k.storage.mtgc import SplitsConfig

    p.add_argument(
        "labels",
        help="CSV with an id column and either the ten genre columns (0/1) or a column of genre names "
        "separated by | , or ;",
    )
    p.add_argument("--out", default="mtgc.csv", help="mtgc.csv to write (labels and split0..split2)")
    p.add_argument("--id-field", default="mid", help="name of the id column")
    p.add_argument(
        "--genres-field",
        default="genres",
        help="name of the column of genre names (when the ten genre columns are absent)",
    )
    add_settings(p, SplitsConfig)
    p.add_argument("--report", help="also write the report as JSON to this path")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def cmd_splits(a: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from t12k.storage.mtgc import SplitsConfig, format_split_report, make_splits

    config = SplitsConfig(**settings_from(a, SplitsConfig))
    kw = {"id_field": a.id_field, "genres_field": a.genres_field, "overwrite": a.overwrite}
    data, report = make_splits(a.labels, a.out, config, **kw)
    print(format_split_report(report))
    if a.report:
        Path(a.report).write_text(json.dumps(report, indent=2), encoding="utf-8")
    unlabelled = int((data.labels.sum(1) == 0).sum())
    note = f" ({unlabelled} without any genre, spread by size)" if unlabelled else ""
    order = "second" if config.order == 2 else "first"
    what = f"{config.num_splits} splits ({order}-order iterative stratification)"
    print(f"{len(data.ids)} trailers{note}; {what} written to {a.out}")
    return 0


@_command(
    "download-reps",
    "download the published Trailers12k stores and mtgc.csv from Zenodo",
    "Fetch mtgc.csv and the six published feature stores (Zenodo record 5716410, about 40 GB), "
    "resuming partial downloads, checking each file's md5 and extracting the archives safely (no absolute "
    "paths, no paths out of the folder, no links). Files already in place are skipped.",
    needs=("t12k.pipeline.published",),
)
def _download_parser(p: argparse.ArgumentParser) -> None:
    from t12k.pipeline.published import DownloadConfig

    p.add_argument("--out", default="trailers12k", help="data folder (what `t12k experiment` reads by default)")
    p.add_argument(
        "--only", help="comma-separated files to fetch, e.g. mtgc.csv,trailers_i_resnet_fpc24 (default: all)"
    )
    add_settings(p, DownloadConfig)
    p.add_argument("--list", action="store_true", help="list the published files and their md5 and exit")
    _quiet(p)


def cmd_download_reps(a: argparse.Namespace) -> int:
    from t12k.pipeline.published import PUBLISHED_FILES, DownloadConfig, download_published

    if a.list:
        for f in PUBLISHED_FILES:
            print(f"{f.md5}  {f.name}")
        return 0
    summary = download_published(
        a.out,
        DownloadConfig(**settings_from(a, DownloadConfig)),
        only=_ids(a.only),
        progress=not a.quiet,
        log=(lambda m: None) if a.quiet else print,
    )
    return _finish(summary)


@_command(
    "backbones",
    "list the registered backbones",
    "List the backbones t12k can extract with: kind, pretraining, features and the store name they write.",
    needs=(),
)
def _backbones_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--details",
        action="store_true",
        help="also print each backbone's preprocessing (resize, crop, interpolation, mean/std, channel order, "
        "value range) and weight source",
    )


def cmd_backbones(a: argparse.Namespace) -> int:
    from t12k.backbones import registry_table

    print(registry_table(a.details))
    return 0


@_command(
    "verify",
    "check stores for damage",
    "Read every trailer of each feature or shots store, decode it and compare it with the checksum its "
    "commit recorded (stores written before t12k recorded checksums, and the published ones, are only "
    "decoded). Prints a summary per store and exits 1 if any trailer is damaged; `t12k extract` and "
    "`t12k shots` redo damaged trailers.",
    needs=("t12k.storage", "t12k.storage.repair"),
)
def _verify_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="STORE", help="feature (trailers_*.zarr) or shots stores")
    p.add_argument("--repair", action="store_true", help="first rebuild damaged store attributes from the arrays")
    _quiet(p)


def cmd_verify(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from t12k.storage import verify_store
    from t12k.storage.repair import repair_store

    damaged = False
    for path in a.stores:
        try:
            if a.repair:
                from t12k.pipeline.extract.command import settings_from_name

                print("\n".join(repair_store(path, settings_from_name).lines()))
            with tqdm(desc=f"verify {path}", unit="trailer", disable=a.quiet, leave=False) as bar:
                report = verify_store(path, progress=bar.update)
        except T12kError as exc:
            print(f"{path}: cannot check: {exc}")
            damaged = True
            continue
        print("\n".join(report.lines()))
        damaged = damaged or not report.ok
    return 1 if damaged else 0
