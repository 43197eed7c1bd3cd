"""Shots and clips planned while a video streams, so that one decode can feed both TransNet V2
and the backbones.

`ClipPlanner` takes the per-frame transition probabilities in order, as `ShotDetector.stream`
yields them, and gives each clip as soon as it is final: the clips are those `plan_clips`
makes of the shots `predictions_to_scenes` finds in the whole video (tested on random and
real predictions), yet a clip is known a few frames after its last frame's probability.

The reference's rule, followed frame by frame: with t = probability > threshold, a shot
starts where t falls from 1 to 0 (or at frame 0) and ends at the frame where t rises from 0
to 1 (that frame included) or at the last frame; frames inside a transition belong to no
shot. A video whose every frame is a transition is one shot: that is only known at its end,
so until a first shot has ended or started the planner cannot say whether the frames read so
far are in a clip (`undecided`); the caller holds them (or decodes again) until it can.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from t12k.errors import T12kError
from t12k.shots.clips import STRATEGIES, ClipPlan


@dataclass
class Clip:
    """One planned clip: its first and last real frame (inclusive) and its frame indices
    after frame-rate subsampling (-1 = black padding), as a row of `ClipPlan`."""

    first: int
    last: int
    frames: np.ndarray  # int32 (frames per clip after subsampling,)


@dataclass
class ClipPlanner:
    """Clips of a streaming video, final as soon as its probabilities say so (see module)."""

    threshold: float = 0.5
    strategy: str = "shot"
    fpc: int = 24
    fps: int = 24
    video_fps: int = 24
    n: int = 0  # frames whose probability has been fed
    shots: list[tuple[int, int]] = field(default_factory=list)  # shots ended so far
    _prev: bool = False  # the previous frame is a transition
    _start: int = 0  # first frame of the shot in progress (the reference's `start`)
    _next: int = 0  # first frame of the next clip of the shot in progress
    _calm: bool = False  # a frame that is no transition has been seen

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise T12kError(f"unknown clip strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.fpc < 1 or self.fps < 1 or self.video_fps % self.fps:
            raise T12kError(f"cannot plan clips of {self.fpc} frames at {self.fps} fps from {self.video_fps} fps")
        self._offsets = np.arange(0, self.fpc, self.video_fps // self.fps)

    @property
    def undecided(self) -> bool:
        """True while every frame fed so far is a transition: such frames are in a clip only
        if the whole video turns out to be one transition (the reference then makes it one shot)."""
        return self.n > 0 and not self._calm

    def feed(self, probs: np.ndarray) -> list[Clip]:
        """The clips made final by the next frames' probabilities."""
        out: list[Clip] = []
        shot = self.strategy == "shot"
        for p in np.asarray(probs):
            i, t = self.n, shot and bool(p > self.threshold)
            self.n += 1
            if self._prev and not t:  # a shot starts
                self._start = self._next = i
            if not self._prev and t and i != 0:  # the shot in progress ends at this frame
                out += self._close(i)
            elif not t:
                self._calm = True
                if i - self._next + 1 == self.fpc:
                    out.append(self._clip(self._next, i))
                    self._next = i + 1
            self._prev = t
        return out

    def finish(self) -> list[Clip]:
        """The last clips, once every probability has been fed."""
        if self.n == 0:
            raise T12kError("a video with zero frames has no shots; re-fetch it or remove it")
        if not self._prev:
            return self._close(self.n - 1)
        if not self.shots:  # every frame a transition: the reference makes the video one shot
            self._start = self._next = 0
            return self._close(self.n - 1)
        return []

    def _close(self, end: int) -> list[Clip]:
        self.shots.append((self._start, end))
        out = [self._clip(a, min(a + self.fpc - 1, end)) for a in range(self._next, end + 1, self.fpc)]
        self._next = end + 1
        return out

    def _clip(self, first: int, last: int) -> Clip:
        idx = first + self._offsets
        return Clip(first, last, np.where(idx <= last, idx, -1).astype(np.int32))

    def shot_array(self) -> np.ndarray:
        """The shots ended so far, int32 (num_shots, 2): the reference's, once finished."""
        return np.asarray(self.shots, np.int32).reshape(-1, 2)


def as_plan(clips: list[Clip], fpc: int, fps: int, strategy: str) -> ClipPlan:
    """The clips as one `ClipPlan`, as `plan_clips` gives them."""
    frames = np.stack([c.frames for c in clips]) if clips else np.zeros((0, len(range(0, fpc, 24 // fps))), np.int32)
    spans = np.asarray([(c.first, c.last) for c in clips], np.int32).reshape(-1, 2)
    return ClipPlan(frames=frames.astype(np.int32), spans=spans, fpc=fpc, fps=fps, strategy=strategy)
