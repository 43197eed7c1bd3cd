"""What a fetch records: one manifest row per id (MANIFEST_FIELDS), and the run's summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from t12k.errors import MAX_REASON
from t12k.pipeline.fetch.download import Downloaded
from t12k.pipeline.fetch.quality import rules_text
from t12k.pipeline.summary import RunSummary

if TYPE_CHECKING:
    from tqdm import tqdm

    from t12k.pipeline.stage import Outcome, Ticket
    from t12k.storage import Manifest

MANIFEST_FIELDS = (
    "url",
    "error",
    "src_width",
    "src_height",
    "src_fps",
    "src_codec",
    "src_duration",
    "quality",
    "duration",
    "frames",
    "bytes",
    "sha256",
    "attempts",
    "seconds",
)


@dataclass
class FetchSummary(RunSummary):
    """How a fetch ended: RunSummary's counts, plus the trailers kept out by the quality rules
    (`rejected`), those fetched though they break them (`quality`) and the bytes written."""

    stage: str = "fetch"
    words: tuple[str, str] = ("downloaded and normalized", "already there")
    out_dir: Path | None = None
    rejected: dict[str, str] = field(default_factory=dict)  # kept out by enforce_quality
    quality: dict[str, str] = field(default_factory=dict)  # fetched, but breaking the quality rules
    bytes: int = 0

    @property
    def total(self) -> int:
        return super().total + len(self.rejected)

    @property
    def counts(self) -> dict[str, int]:
        c = {"ok": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed)}
        if self.rejected:
            c["rejected"] = len(self.rejected)
        return c

    def finish(self, seconds: float, quality_seconds: tuple[float, float], quality_min_lines: int) -> None:
        """Put the run's time, the MB written and what was kept out or breaks the rules into
        the summary's totals and notes."""
        self.seconds = seconds
        self.totals = {"MB written": round(self.bytes / 1e6, 1)}
        if self.rejected:
            self.notes.append(f"{len(self.rejected)} kept out by the quality rules")
        if self.out_dir is not None:
            self.notes.append(f"Videos in {self.out_dir}, one row per id in {self.out_dir / 'manifest.csv'}")
        if self.quality:
            self.notes.append(
                f"{len(self.quality)} do not meet the paper's quality rules "
                f"({rules_text(quality_seconds, quality_min_lines)}; see the quality column, "
                f"--enforce-quality keeps such trailers out)"
            )

    def text(self) -> str:
        """RunSummary's sentence, with the number of trailers in the list first."""
        head = f"{self.stage}: "
        return head + f"{self.total} trailers, " + super().text()[len(head) :]


class Recorder:
    """Writes each trailer's manifest row and counts it in the summary and the progress bar."""

    def __init__(self, manifest: Manifest, summary: FetchSummary, bar: tqdm) -> None:
        self.manifest, self.summary, self.bar = manifest, summary, bar

    def no_url(self, mid: str) -> None:
        self.manifest.record(mid, "failed", "no URL for this id in the list; add one or drop the id", error="no-url")
        self.summary.failed[mid] = "no URL for this id in the list"
        self.bar.update(1)

    def skipped(self, mid: str, fields: dict) -> None:
        """An id whose video is already there (`fields`: its manifest fields)."""
        self.manifest.record(mid, "skipped", "already fetched", **fields)
        self.summary.skipped.append(mid)
        if fields.get("quality") not in ("", "ok"):
            self.summary.quality[mid] = fields["quality"]
        self.bar.update(1)

    def rejected(self, mid: str, reason: str, fields: dict) -> None:
        """An id kept out by the quality rules without a download."""
        self.manifest.record(mid, "rejected", reason, **fields)
        self.summary.rejected[mid] = reason
        self.bar.update(1)

    def finished(self, d: Downloaded, status: str, reason: str = "", fields: dict | None = None) -> None:
        """The outcome of a download and its normalization: 'ok', 'rejected' or 'failed'."""
        mid = d.item.id
        fields = {
            "url": d.item.url,
            "attempts": d.attempts,
            "seconds": f"{time.perf_counter() - d.t0:.2f}",
            **(fields or {}),
        }
        if status != "ok":
            fields.setdefault("error", d.kind or "error")
        reason = " ".join(str(reason).split())[:MAX_REASON]
        self.manifest.record(mid, status, reason, **fields)
        if status == "ok":
            self.summary.done.append(mid)
            self.summary.bytes += int(fields["bytes"])
            if fields.get("quality") not in (None, "", "ok"):
                self.summary.quality[mid] = fields["quality"]
        elif status == "rejected":
            self.summary.rejected[mid] = reason
        else:
            self.summary.failed[mid] = reason
            self.bar.set_postfix(failed=len(self.summary.failed))
        self.bar.update(1)


class FetchRecords:
    """The scheduler's `Records` of the download and normalize stages (`t12k fetch`, and the
    fetch part of `t12k run`'s ledger): each trailer's manifest row through `recorder`, and
    the site's blocking answers in a row (`SiteBlock`), which stop new downloads."""

    def __init__(self, recorder: Recorder) -> None:
        from t12k.pipeline.fetch.blocking import SiteBlock

        self.recorder, self.site = recorder, SiteBlock()

    def entered(self, stage: str, n: int = 1) -> None:
        pass

    @property
    def halted(self) -> bool:
        return bool(self.recorder.summary.stopped)

    def record(self, stage: str, ticket: Ticket, out: Outcome, stopping: bool = False) -> bool:
        """Record a download (its row when it failed) or a normalization (the trailer's row);
        whether the trailer goes on."""
        if stage == "download":
            d = out.data if isinstance(out.data, Downloaded) else _lost_download(ticket, out)
            d.t0 = ticket.t0  # the driver's clock: the worker's may be another machine's
            if out.status == "ok":
                self.site.downloaded()
                return True
            if out.status == "cancelled":
                return False
            self.recorder.finished(d, out.status, out.reason, out.fields)
            stop = self.site.failed(d.kind)
            if stop:
                self.recorder.summary.stopped = stop
            return False
        if out.status == "cancelled":
            return False
        assert isinstance(ticket.data, Downloaded)  # what the download stage handed on
        self.recorder.finished(ticket.data, out.status, out.reason, out.fields)
        return out.status == "ok"


def _lost_download(t: Ticket, out: Outcome) -> Downloaded:
    """The record of a download whose worker died (no `Downloaded` came back)."""
    return Downloaded(t.item, Path(), t.t0, kind="error" if out.status == "failed" else out.status, reason=out.reason)
