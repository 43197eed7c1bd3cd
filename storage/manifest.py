"""Per-id run records: what happened to every trailer in a stage.

Rows are appended as items finish (a killed run loses at most the line being written) and
the file is compacted to one row per id, the latest, when the run ends or is reopened.

Any number of processes may share one manifest (on one machine, or on several sharing a
POSIX file system): each append and each compaction holds the lock file beside it
(`.{name}.lock`), and a compaction re-reads the file, so the rows other processes appended
are kept (the last row of an id wins). A compaction writes a temporary file of its own,
syncs it and renames it over the manifest; if that fails (a full disk), the temporary file
is removed, the manifest is left as it was and one T12kError line says so.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import time
from pathlib import Path
from typing import Any

from t12k.errors import T12kError
from t12k.storage.locks import locked

TMP_SUFFIX = ".tmp"


class Manifest:
    def __init__(self, path: str | os.PathLike, fields: tuple[str, ...]):
        self.path = Path(path)
        self.fields = (
            ("id", "status", "reason") + tuple(f for f in fields if f not in ("id", "status", "reason")) + ("time",)
        )
        self.rows: dict[str, dict[str, str]] = {}
        self.compact()

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def record(self, mid: str, status: str, reason: str = "", **fields: Any) -> None:
        """Append one row (in one write, under the lock) and keep it in `rows`."""
        row = {
            "id": mid,
            "status": status,
            "reason": reason.replace("\n", " "),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **{k: fields[k] for k in fields},
        }
        row = {k: ("" if row.get(k) is None else str(row.get(k))) for k in self.fields}
        self.rows[mid] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.lock_path):
            try:
                self._append(row)
            except OSError as exc:
                raise T12kError(
                    f"cannot append to the manifest {self.path} ({exc.strerror}); free space on its disk and "
                    "re-run (finished trailers are skipped)"
                ) from None

    def _append(self, row: dict[str, str]) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=self.fields)
            if size == 0:
                w.writeheader()
            elif os.pread(fd, 1, size - 1) != b"\n":
                buf.write("\r\n")  # a killed writer's partial line stays a line of its own
            w.writerow(row)
            os.write(fd, buf.getvalue().encode("utf-8"))
        finally:
            os.close(fd)

    def compact(self) -> None:
        """Rewrite the file with one row per id, the latest, keeping the rows every process
        appended: ids in `rows` first, in their order, then the others in the file's order."""
        if not self.rows and not self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.lock_path):
            on_disk = self._read()
            merged = {mid: on_disk.get(mid, row) for mid, row in self.rows.items()}
            merged.update((mid, row) for mid, row in on_disk.items() if mid not in merged)
            self._remove_leftovers()
            self._rewrite(merged)
            self.rows = merged

    def _read(self) -> dict[str, dict[str, str]]:
        return read_rows(self.path)

    def _remove_leftovers(self) -> None:
        """Temporary files of killed compactions (we hold the lock: none is in use)."""
        for p in self.path.parent.glob(f".{self.path.name}.*{TMP_SUFFIX}"):
            p.unlink(missing_ok=True)
        self.path.with_name(self.path.name + TMP_SUFFIX).unlink(missing_ok=True)  # older t12k's name

    def _rewrite(self, rows: dict[str, dict[str, str]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
                w.writeheader()
                for row in rows.values():
                    w.writerow({k: row.get(k, "") for k in self.fields})
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise T12kError(
                f"cannot rewrite the manifest {self.path} ({exc.strerror}); free space on its disk and re-run "
                "(its rows are kept as they were)"
            ) from None

    def status(self, mid: str) -> str | None:
        row = self.rows.get(mid)
        return row["status"] if row else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out


def read_rows(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The rows of the manifest at `path`, the last one of each id (in the order ids first
    appear); {} when there is none. Reads without the lock: a reader never holds up a writer."""
    rows: dict[str, dict[str, str]] = {}
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            for row in csv.DictReader(fh):
                # a row with too many or too few fields is a killed writer's partial line
                if row.get("id") and row.get("status") and None not in row and None not in row.values():
                    rows[row["id"]] = {k: v or "" for k, v in row.items()}
    except FileNotFoundError:
        pass
    return rows
