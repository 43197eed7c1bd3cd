"""Per-id run records: what happened to every trailer in a stage.

Rows are appended as items finish (a killed run loses at most the line being written) and
the file is compacted to one row per id, the latest, when the run ends or is reopened.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any


class Manifest:
    def __init__(self, path: str | os.PathLike, fields: tuple[str, ...]):
        self.path = Path(path)
        self.fields = (
            ("id", "status", "reason") + tuple(f for f in fields if f not in ("id", "status", "reason")) + ("time",)
        )
        self.rows: dict[str, dict[str, str]] = {}
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row.get("id") and row.get("status") and None not in row:
                        self.rows[row["id"]] = row
        self.compact()

    def record(self, mid: str, status: str, reason: str = "", **fields: Any) -> None:
        row = {
            "id": mid,
            "status": status,
            "reason": reason.replace("\n", " "),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **{k: fields[k] for k in fields},
        }
        row = {k: ("" if row.get(k) is None else str(row.get(k))) for k in self.fields}
        self.rows[mid] = row
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields)
            if new:
                w.writeheader()
            w.writerow(row)

    def compact(self) -> None:
        if not self.rows and not self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            w.writeheader()
            for row in self.rows.values():
                w.writerow({k: row.get(k, "") for k in self.fields})
        os.replace(tmp, self.path)

    def status(self, mid: str) -> str | None:
        row = self.rows.get(mid)
        return row["status"] if row else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out
