"""Shot detection (TransNet V2) and clip planning (Shot-f, Seq-f, frame rates).

- `windows`: TransNet V2's input size and the windowing of its reference implementation;
- `transnet`: `ShotDetector`, the package's network and weights over those windows;
- `fast`: the faster forward pass of that network the detector runs;
- `clips`: Shot-f and Seq-f clips, frame-rate subsampling, representative frames;
- `report`: shot-duration statistics and their histogram.
"""

from typing import TYPE_CHECKING

from t12k._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (t12k._lazy): the package's light modules load alone
    from t12k.shots.clips import ClipPlan, plan_clips, representative_frame
    from t12k.shots.transnet import ShotDetector
    from t12k.shots.windows import INPUT_SIZE

__getattr__ = lazy_exports(
    __name__,
    {
        "ClipPlan": "clips",
        "plan_clips": "clips",
        "representative_frame": "clips",
        "ShotDetector": "transnet",
        "INPUT_SIZE": "windows",
    },
)

__all__ = ["ShotDetector", "INPUT_SIZE", "ClipPlan", "plan_clips", "representative_frame"]
