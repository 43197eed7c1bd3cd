"""The C heap that t12k's threads and processes allocate from: glibc's `mallopt` and
`malloc_trim` through ctypes, for the stages whose large buffers would otherwise stay resident;
elsewhere (another C library, another system) each call does nothing. One place for these
process-wide settings: the shots stage (`share_heap`, `trim_heap`) and the extract engine
(`fixed_mmap_threshold`) call them."""

from __future__ import annotations

import ctypes
from typing import Any

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
_M_ARENA_MAX = -8


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # glibc
    except OSError:
        return None


_LIBC = _libc()


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`).

    glibc keeps the freed activations of a window (tens of MB) resident for reuse, and their
    fragments add up: without this, peak memory creeps up with the length of the video. Once
    per segment it costs little."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def share_heap() -> None:
    """Let threads allocate from one C heap (glibc's `mallopt(M_ARENA_MAX, 1)`, for the rest of
    the process).

    glibc gives each thread that allocates its own heap (arena), and a heap keeps the pages of
    its own peak: two streams then hold two windows' peak activations (300 MB each on CPU) even
    when their peaks do not coincide. In one heap, what one stream frees the other reuses:
    180 MB less at the peak of a 2-stream run, at the same speed (the allocations are large
    and few, a few hundred per window, so the heap's lock is not contended). Called before the
    shots stage starts its first thread (`t12k.pipeline.shot_frames`), as a thread keeps the
    heap it was given."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, 1)


def fixed_mmap_threshold(size: int) -> None:
    """Blocks of `size` bytes and more are mapped on their own and given back when freed, and
    glibc no longer raises that threshold (for the rest of the process)."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, int(size))
