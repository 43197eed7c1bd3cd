"""Shot detection (TransNet V2) and clip planning (Shot-f, Seq-f, frame rates)."""

from t12k.shots.clips import ClipPlan, plan_clips, representative_frame
from t12k.shots.transnet import INPUT_SIZE, ShotDetector

__all__ = ["ShotDetector", "INPUT_SIZE", "ClipPlan", "plan_clips", "representative_frame"]
