"""The extract stage: videos + shots -> one feature store per frozen backbone.

Modules, in the order the data goes through them:

- `config`: `ExtractConfig`, the settings of a run (command line -> stores -> predict).
- `stage`: `extract_features`, the stage itself (stores, manifest, summary), and
  `clip_features` (one video in this process, for predict).
- `decode`, `stream`, `ring`: the worker side; each trailer decoded once into chunks of clip
  inputs (2D: the histogram-representative frame; 3D: the clip's sub-sampled frames), raw 3D
  frames through reused shared-memory slots.
- `transforms`: a weight set's transforms split into a uint8 geometry (workers or device)
  and a normalization (device).
- `engine`, `inputs`, `batches`, `device_io`, `reps`, `stats`: the main side; chunks to the
  device, model batches across trailers, features read back one batch late, each trailer
  handed over when its last clip is done.
- `runner`: `BackboneRunner`, one frozen backbone at its precision on its device.
"""

from typing import TYPE_CHECKING

from t12k._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (t12k._lazy): the package's light modules load alone
    from t12k.pipeline.extract.backbone import BackboneRunner
    from t12k.pipeline.extract.clip_inputs import ClipInput, apply_geometries, iter_clip_inputs, stack_raw
    from t12k.pipeline.extract.command import clip_features, clip_table, extract_features, store_settings
    from t12k.pipeline.extract.config import ExtractConfig, worker_count
    from t12k.pipeline.extract.device_io import DeviceIO
    from t12k.pipeline.extract.engine import Engine
    from t12k.pipeline.extract.reps import covers_every_frame, device_representatives
    from t12k.pipeline.extract.ring import FrameRing, SlotRef
    from t12k.pipeline.extract.stats import EngineStats
    from t12k.pipeline.extract.stream import Chunk, ClipStream, Failed, Job
    from t12k.pipeline.extract.transforms import Geometry, Normalize, apply_geometry, split_transforms

__getattr__ = lazy_exports(
    __name__,
    {
        "ExtractConfig": "config",
        "worker_count": "config",
        "ClipInput": "clip_inputs",
        "apply_geometries": "clip_inputs",
        "iter_clip_inputs": "clip_inputs",
        "stack_raw": "clip_inputs",
        "DeviceIO": "device_io",
        "Engine": "engine",
        "covers_every_frame": "reps",
        "device_representatives": "reps",
        "FrameRing": "ring",
        "SlotRef": "ring",
        "BackboneRunner": "backbone",
        "clip_features": "command",
        "clip_table": "command",
        "extract_features": "command",
        "store_settings": "command",
        "EngineStats": "stats",
        "Chunk": "stream",
        "ClipStream": "stream",
        "Failed": "stream",
        "Job": "stream",
        "Geometry": "transforms",
        "Normalize": "transforms",
        "apply_geometry": "transforms",
        "split_transforms": "transforms",
    },
)

__all__ = [
    "ExtractConfig",
    "extract_features",
    "clip_features",
    "clip_table",
    "store_settings",
    "worker_count",
    "BackboneRunner",
    "Engine",
    "EngineStats",
    "Job",
    "Chunk",
    "Failed",
    "ClipStream",
    "ClipInput",
    "iter_clip_inputs",
    "apply_geometries",
    "stack_raw",
    "FrameRing",
    "SlotRef",
    "DeviceIO",
    "Geometry",
    "Normalize",
    "split_transforms",
    "apply_geometry",
    "covers_every_frame",
    "device_representatives",
]
