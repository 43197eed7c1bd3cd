"""`t12k report`: one self-contained HTML report of a work folder (the collection, its stores,
a page per trailer) and of a training run; static pages, no server and no network."""

from typing import TYPE_CHECKING

from t12k._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (t12k._lazy): `t12k report --help` loads none of it
    from t12k.report.build import ReportSummary, build_report

__getattr__ = lazy_exports(__name__, {"build_report": "build", "ReportSummary": "build"})

__all__ = ["build_report", "ReportSummary"]
