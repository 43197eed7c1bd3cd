"""The settings of an extract run, from the command line into the store attributes and back."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from t12k.backbones import REGISTRY, Kind, parse_backbones
from t12k.device import PRECISION_NAMES as PRECISIONS
from t12k.device import device_setting
from t12k.errors import T12kError
from t12k.settings import check_fields
from t12k.shots.clips import STRATEGIES
from t12k.storage.zarrstore import ZARR_FORMATS

if TYPE_CHECKING:
    import torch

RUNTIMES = ("auto", "torch", "openvino")  # what runs the models (`runner.BackboneRunner`)
RESIZE_ON = ("auto", "workers", "device")  # where the resize and centre crop run
REPS_ON = ("auto", "workers", "device")  # where the 2D representative frames are picked
VIDEO_FPS = 24  # the frame rate `t12k fetch` normalizes every video to


@dataclass(frozen=True)
class ExtractConfig:
    """How clip features are made: backbones, weights, clips, batching, workers, precision."""

    backbones: str = field(
        default="shufflenet2d",
        metadata={
            "flag": "--backbone",
            "metavar": "BACKBONE",
            "help": f"backbone key, a comma-separated list, or 'all' ({', '.join(REGISTRY)})",
        },
    )
    weights: str = field(
        default="default",
        metadata={
            "help": "'default': torchvision's pretrained weights (downloaded by torchvision); a path: a "
            "local .pth state dict; 'none': random init with a fixed seed (tests, offline demos)"
        },
    )
    strategy: str = field(
        default="shot",
        metadata={
            "choices": tuple(STRATEGIES),
            "help": "shot: clips inside shots (Shot-f); seq: contiguous clips over the trailer (Seq-f)",
        },
    )
    fpc: int = field(default=24, metadata={"help": "frames per clip f (of the 24 fps video)", "min": 1})
    fps: int = field(default=24, metadata={"help": "frame rate of 3D clips: keep every (24/fps)-th frame", "min": 1})
    batch_size: int = field(
        default=32,
        metadata={"help": "clips per backbone forward pass (batches run across trailer boundaries)", "min": 1},
    )
    workers: int | str = field(
        default="auto",
        metadata={
            "help": "decode worker processes (decode, representative frames, resize and crop); 0 decodes "
            "in a thread of this process; auto: 0 on a CPU, one per core but one (at most 16) on a GPU"
        },
    )
    prefetch: int = field(
        default=2, metadata={"help": "chunks of clips each worker prepares ahead (bounds memory)", "min": 1}
    )
    resize_on: str = field(
        default="auto",
        metadata={
            "choices": RESIZE_ON,
            "help": "where the resize and centre crop run: in the decode workers, or on the model's "
            "device after the copy (auto: device on a GPU, workers on a CPU)",
        },
    )
    # Not on the command line: with 2D and 3D backbones, the resize on the device and 3D clips
    # holding every frame, `auto` picks the 2D frames on a GPU (the workers skip the histograms).
    reps_on: str = field(default="auto", metadata={"cli": False, "choices": REPS_ON})
    precision: str = field(
        default="fp32",
        metadata={
            "choices": tuple(PRECISIONS),
            "help": "model precision: fp32 (strict IEEE, TF32 off on a GPU too) reproduces the reference; "
            "tf32 lets a GPU's tensor cores run float32 convolutions and matmuls; bf16/fp16 "
            "autocast is faster still (recorded in the store; README has the measured differences)",
        },
    )
    runtime: str = field(
        default="auto",
        metadata={
            "choices": RUNTIMES,
            "help": "what runs the models on a CPU: openvino (fp32; an optional package, pip install openvino), "
            "torch, or auto: openvino for fp32 on a CPU when it is installed, else torch; features agree "
            "within 1e-4",
        },
    )
    zarr_format: int = field(default=2, metadata={"choices": ZARR_FORMATS, "help": "zarr format of new stores"})
    device: str = device_setting()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise T12kError naming the option and the fix for a setting no run could use: the
        choices and ranges the fields carry (`check_fields`), then the rules they cannot."""
        check_fields(self)
        if VIDEO_FPS % int(self.fps):
            raise T12kError(f"--fps {self.fps} must divide {VIDEO_FPS} (e.g. 24, 12, 8, 6, 4)")
        worker_count(self.workers, "cpu")
        parse_backbones(self.backbones)

    @classmethod
    def from_store(cls, attrs: dict[str, Any], name: str = "", weights: str | None = None) -> ExtractConfig:
        """The settings that remake the features of a store, from its attrs (see `store_settings`).

        Published stores carry no t12k attrs: they are recognised by `name` and get the paper's
        settings (Shot-24, pretrained weights). `weights` overrides the weights argument; a store
        made from a local file needs it, since the file itself is not in the store.
        """
        t = attrs.get("t12k") or {}
        if not t.get("backbone"):
            return cls._published(name, weights)
        defaults = cls()
        return cls(
            backbones=t["backbone"],
            weights=weights or _weights_argument(str(t.get("weights", defaults.weights))),
            strategy=t.get("strategy", defaults.strategy),
            fpc=int(t.get("fpc", defaults.fpc)),
            fps=int(t.get("fps", defaults.fps)),
            precision=t.get("precision", defaults.precision),
        )

    @classmethod
    def _published(cls, name: str, weights: str | None) -> ExtractConfig:
        for spec in REGISTRY.values():
            m = re.fullmatch(rf"trailers_{spec.store_prefix}_{spec.store_stem}(?:_fps(\d+))?_fpc(\d+)\.zarr", name)
            if m and (m.group(1) is not None) == (spec.kind == Kind.VIDEO):
                return cls(
                    backbones=spec.key, weights=weights or "default", fpc=int(m.group(2)), fps=int(m.group(1) or 24)
                )
        raise T12kError(
            f"cannot tell how the store {name} the checkpoint was trained on was made "
            "(no t12k attrs and not a published store name); retrain on a t12k store"
        )


def _weights_argument(recorded: str) -> str:
    """The `weights` argument that loads the weights a store records (see `load_backbone`)."""
    if recorded.startswith("none"):
        return "none"
    if recorded.startswith("torchvision:"):
        return "default"
    raise T12kError(f"the checkpoint's features were made with weights {recorded}; pass that file with --weights PATH")


def worker_count(workers: int | str | None, device: str | torch.device) -> int:
    """Decode workers of a run. `auto`: none on a CPU run (a thread of this process decodes while
    the model takes the cores: `background.py`), otherwise one per core but one, at most 16."""
    if workers == "auto" or workers is None:
        import torch

        cores = os.cpu_count() or 1
        return 0 if torch.device(device).type == "cpu" else max(1, min(cores - 1, 16))
    try:
        n = int(workers)
    except ValueError:
        n = -1
    if n < 0:
        raise T12kError(f"--workers must be 0 (decode in this process), a positive number or auto; got {workers}")
    return n
