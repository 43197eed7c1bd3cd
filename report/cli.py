"""The command line of `t12k report` (its options and what it runs) and `t12k predict --html`,
kept here so that cli.py holds only their stubs. Nothing here imports PyTorch until it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

SUMMARY = "write an HTML report of a work folder (collection, stores, a page per trailer) or a training run"
DESCRIPTION = (
    "Read what `t12k run` or the stage commands left in WORK (manifests, shots store, feature stores, "
    "videos) and write static HTML pages to --out: the collection (trailers per status, failures by reason, "
    "the paper's quality rules, the distributions of duration, shot length and clips per trailer), the "
    "stores (backbone, weights, clip settings, size, whether `t12k verify` finds them whole) and a page per "
    "trailer (a filmstrip of its clips' representative frames, the TransNet V2 curve with its cuts, the "
    "video's facts, and its genre probabilities with --checkpoint). Given a `t12k train` or `t12k experiment` "
    "folder, the training curves and test metrics instead. Open OUT/index.html in a browser: no server, no "
    "network. What is missing or damaged is said on the pages; the exit status is 2 only when nothing could "
    "be read."
)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("work", metavar="WORK", help="the --out folder of `t12k run` / `t12k demo`, or a run folder")
    p.add_argument("--out", help="folder for the report (default: WORK/report)")
    p.add_argument("--checkpoint", help="checkpoint.pt of a `t12k train` run: genre probabilities on each trailer page")
    p.add_argument("--no-verify", action="store_true", help="do not check every store as `t12k verify` does")
    p.add_argument("--no-thumbs", action="store_true", help="do not decode the clips' representative frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from t12k.report.build import build_report

    with tqdm(desc="report", unit="trailer", disable=a.quiet, leave=False) as bar:
        summary = build_report(
            a.work, a.out, a.checkpoint, verify=not a.no_verify, thumbs=not a.no_thumbs, progress=bar.update
        )
    print(summary.text())
    return 0


def html_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", metavar="PAGE", help="also write the trailer's page with its genre bars to PAGE (.html)")


def write_predict_page(res: dict, page: str | Path) -> Path:
    from t12k.report.predict_page import predict_page

    return predict_page(res, Path(page))
