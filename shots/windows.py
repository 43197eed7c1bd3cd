"""The windowing of TransNet V2's reference implementation, written once.

The network looks at 48x27 RGB frames in windows of 100 frames. Windows start every 50
frames and each keeps the predictions of its middle 50 frames (25..74), so every frame of
the video is kept exactly once. The video is padded with 25 copies of its first frame in
front, and with copies of its last frame at the end up to a whole number of windows.
"""

from __future__ import annotations

INPUT_SIZE = (48, 27)  # (W, H) of the frames TransNet V2 looks at
FRAME_SHAPE = (INPUT_SIZE[1], INPUT_SIZE[0], 3)  # one frame as an (H, W, 3) array
WINDOW = 100  # frames per window
STRIDE = 50  # frames between the starts of consecutive windows
CONTEXT = 25  # frames of context before the kept ones: the start padding, too
KEPT = slice(CONTEXT, CONTEXT + STRIDE)  # the window frames whose predictions are kept


def window_starts(num_frames: int) -> tuple[int, int, list[int]]:
    """Padding at the start and at the end of a video of `num_frames` frames, and the
    start of every window in the padded video."""
    pad_start = CONTEXT
    rem = num_frames % STRIDE
    pad_end = CONTEXT + STRIDE - (rem if rem else STRIDE)
    total = num_frames + pad_start + pad_end
    return pad_start, pad_end, list(range(0, total - WINDOW + 1, STRIDE))
