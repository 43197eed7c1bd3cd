"""The command line of `t12k report` (its options and what it runs) and `t12k predict --html`,
kept here so that cli.py holds only their stubs. Nothing here imports PyTorch until it runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "work",
        metavar="WORK",
        help="the --out folder of `t12k run` or `t12k demo`, or a `t12k train` run folder or `t12k experiment` folder",
    )
    p.add_argument("--out", help="folder for the report; WORK/report when not given")
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
