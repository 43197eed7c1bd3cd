"""Each clip's backbone inputs from one decode of its video: the 2D representative frame and
the 3D sub-sampled frames (black-padded), holding only the current clip's frames."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from t12k.backbones import Kind
from t12k.errors import T12kError
from t12k.pipeline.extract.transforms import Geometry, apply_geometry
from t12k.pipeline.media import iter_frames
from t12k.shots import ClipPlan
from t12k.shots.clips import color_counts, representative_from_counts


@dataclass
class ClipInput:
    index: int
    representative: int  # frame index of the 2D representative frame
    frame: np.ndarray | None  # (H, W, 3) uint8, for 2D backbones
    frames: np.ndarray | None  # (T, H, W, 3) uint8, black-padded, for 3D backbones


class _ClipFrames:
    """The frames of the clip being decoded that its inputs need."""

    def __init__(self, plan: ClipPlan, need_2d: bool, need_3d: bool):
        self.plan, self.need_2d, self.need_3d = plan, need_2d, need_3d
        self.start(0)

    def start(self, c: int) -> None:
        self.c = c
        self.kept: list[np.ndarray] = []  # real frames of the clip (2D: the representative is one of these)
        self.hists: list[np.ndarray] = []
        self.sub: dict[int, np.ndarray] = {}
        self.wanted = {int(i) for i in self.plan.frames[c] if i >= 0} if c < len(self.plan) else set()

    def add(self, i: int, frame: np.ndarray) -> None:
        if self.need_2d:
            self.kept.append(frame)
            self.hists.append(color_counts(frame))
        if self.need_3d and i in self.wanted:
            self.sub[i] = frame

    def finish(self, shape: tuple[int, ...], dest: Callable | None) -> ClipInput:
        c, plan = self.c, self.plan
        rep, frame, frames = int(plan.spans[c, 0]), None, None
        if self.need_2d:
            k = representative_from_counts(np.stack(self.hists))
            rep, frame = int(plan.spans[c, 0]) + k, self.kept[k]
        if self.need_3d:
            black = np.zeros(shape, np.uint8)
            out = dest((len(plan.frames[c]), *shape)) if dest is not None else None
            frames = np.stack([self.sub[int(j)] if j >= 0 else black for j in plan.frames[c]], out=out)
        return ClipInput(c, rep, frame, frames)


def iter_clip_inputs(
    video: str | os.PathLike,
    plan: ClipPlan,
    need_2d: bool = True,
    need_3d: bool = False,
    threads: int = 0,
    dest: Callable | None = None,
    frames: Iterable[np.ndarray] | None = None,
) -> Iterator[ClipInput]:
    """Stream `video` once and yield each clip's backbone inputs in clip order.

    Only the current clip's frames are held in memory. Clips must be sorted and
    non-overlapping (as Shot-f and Seq-f plans are). `dest(shape)`, if given, returns the
    array a clip's 3D frames are written into (a slot of a shared-memory chunk, say).
    `frames`, if given, are the video's frames, decoded elsewhere (`video` then only names it)."""
    n = len(plan)
    if n == 0:
        return
    spans = plan.spans
    clip = _ClipFrames(plan, need_2d, need_3d)
    last_frame = -1
    for i, frame in enumerate(iter_frames(video, threads=threads) if frames is None else frames):
        last_frame = i
        while clip.c < n and i > spans[clip.c, 1]:  # should not happen with decoded counts == plan
            clip.start(clip.c + 1)
        if clip.c >= n:
            break
        if i < spans[clip.c, 0]:
            continue
        clip.add(i, frame)
        if i == spans[clip.c, 1]:
            yield clip.finish(frame.shape, dest)
            clip.start(clip.c + 1)
    if clip.c < n:
        raise T12kError(
            f"video {video} has {last_frame + 1} frames but its shots reach frame "
            f"{int(spans[-1, 1])}; the shots store does not match this video: re-run `t12k shots` on it"
        )


def stack_raw(kind: Kind, clips: list[ClipInput]) -> torch.Tensor:
    """Decoded inputs of clips as one uint8 tensor: 2D (n, H, W, 3), 3D (n, T, H, W, 3)."""
    raw = [c.frame if kind == Kind.IMAGE else c.frames for c in clips]  # the kind's inputs were decoded
    return torch.from_numpy(np.stack(cast(list[np.ndarray], raw)))


def apply_geometries(
    geometries: list[Geometry], clips: list[ClipInput], frames_3d: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Every geometry applied to the clips' decoded inputs, in this process. `frames_3d`: the
    clips' 3D frames already in one (n, T, H, W, 3) tensor (they were decoded into it), which
    may be written over afterwards: `apply_geometry` always returns new memory (tested)."""
    return [
        apply_geometry(g, frames_3d if g.kind == Kind.VIDEO and frames_3d is not None else stack_raw(g.kind, clips))
        for g in geometries
    ]
