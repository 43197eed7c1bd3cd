"""Checksums: of files (manifests, weight files, downloads), read in 1 MiB blocks, and of the
arrays committed to a store (recorded in each array's attributes, checked when it is read)."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google_crc32c


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of the file at `path` with a hashlib algorithm (sha256, md5, ...)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- the checksum of an array committed to a store ------------------------------------------

CHECKSUM_ATTR = "t12k_checksum"  # in each per-trailer array's own attributes


@dataclass(frozen=True)
class ArrayChecksum:
    """What a commit records of an array: the CRC-32C of its chunk files' bytes, one after
    another in the order of the chunk grid (C order), their number and, for a per-trailer
    array, the companion arrays committed with it.

    The chunk files are what a disk or a copy damages, and checking their bytes as they are
    read costs little (CRC-32C runs at several GB/s with the CPU's instruction for it, on
    fewer bytes than the decoded array's), so loading a whole store stays close to disk speed.
    """

    crc32c: int
    chunks: int
    companions: tuple[str, ...] = ()

    def attrs(self) -> dict[str, Any]:
        value: dict[str, Any] = {"crc32c": self.crc32c, "chunks": self.chunks}
        if self.companions:
            value["companions"] = list(self.companions)
        return {CHECKSUM_ATTR: value}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> ArrayChecksum | None:
        """The checksum recorded in an array's attributes, None when there is none (arrays
        written before checksums, published stores); ValueError when it is unreadable."""
        value = attrs.get(CHECKSUM_ATTR)
        if value is None:
            return None
        try:
            crc, chunks = value["crc32c"], value["chunks"]
            companions = tuple(str(c) for c in value.get("companions", ()))
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"unreadable {CHECKSUM_ATTR} attribute {value!r}") from exc
        if not (isinstance(crc, int) and isinstance(chunks, int)):
            raise ValueError(f"unreadable {CHECKSUM_ATTR} attribute {value!r}")
        return cls(crc, chunks, companions)


def crc32c(data: bytes, value: int = 0) -> int:
    """The CRC-32C of `data`, continuing from `value` (google-crc32c, which zarr uses too)."""
    return google_crc32c.extend(value, data)


def chunk_count(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """Chunk files of a regular grid (every one written, even those of the fill value)."""
    return math.prod(-(-s // c) for s, c in zip(shape, chunks)) if shape else 1
