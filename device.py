"""Where models run and at which precision: one resolution of `--device` for every stage.

Importing this module imports no torch (the settings and the command line use it); the
functions import it when called, and `PRECISIONS` (torch dtypes) on first access.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from t12k.errors import T12kError
from t12k.settings import setting

if TYPE_CHECKING:
    import torch

# Model precisions a run may ask for (fp32 is strict IEEE float32 on a GPU too; tf32 lets
# tensor cores run float32 convolutions and matmuls; bf16 and fp16 autocast).
PRECISION_NAMES = ("fp32", "tf32", "bf16", "fp16")


def _precisions() -> dict[str, torch.dtype | None]:
    """`PRECISIONS`: each precision's autocast dtype, or None for float32."""
    import torch

    return {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def __getattr__(name: str) -> Any:
    if name == "PRECISIONS":
        return _precisions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DEVICE_HELP = "where models run: auto (CUDA GPU when present, else CPU), cpu, cuda or cuda:N"


def device_setting() -> Any:
    """The `device` field of every stage's settings: 'auto' by default, with its option's help."""
    return setting("auto", DEVICE_HELP)


def check_device(device: str | torch.device | None) -> None:
    """`resolve_device`'s errors, before any work, without importing PyTorch where the name
    alone settles it: `auto` and `cpu` always resolve (a stage that decodes first imports
    PyTorch, 1.3 s, while its first frames decode)."""
    if device is None or str(device) in ("auto", "cpu"):
        return
    resolve_device(device)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` (or None): the CUDA GPU when one is visible, else the CPU; otherwise the device named.

    An unknown name (`banana`) or a GPU that is not there raises T12kError naming the fix.
    """
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise T12kError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise T12kError(f"--device {device} asked for but no CUDA GPU is visible; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise T12kError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) are visible; use cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type != "cpu" and not _available(dev):
        raise T12kError(f"--device {device} is not available on this machine; use auto or cpu")
    return dev


def _available(dev: torch.device) -> bool:
    import torch

    backend = getattr(torch, dev.type, None)
    is_available = getattr(backend, "is_available", None)
    return bool(is_available and is_available())


def check_precision(precision: str) -> str:
    if precision not in PRECISION_NAMES:
        raise T12kError(f"precision {precision!r} is not known; choose from {', '.join(PRECISION_NAMES)}")
    return precision


@contextlib.contextmanager
def device_math(device: str | torch.device, precision: str) -> Iterator[None]:
    """The float32 matmul/convolution mode a precision asks for on a GPU, restored afterwards,
    with cuDNN autotuning on (extraction batches have fixed shapes). Nothing to do on a CPU."""
    import torch

    if torch.device(device).type != "cuda":
        yield
        return
    mode = "tf32" if precision == "tf32" else "ieee"
    knobs: list[Any] = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]  # type: ignore[attr-defined]
    if all(hasattr(k, "fp32_precision") for k in knobs):
        old = [k.fp32_precision for k in knobs]
        for k in knobs:
            k.fp32_precision = mode

        def restore() -> None:
            for k, o in zip(knobs, old):
                k.fp32_precision = o
    else:  # older torch: the legacy switches
        old_flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"

        def restore() -> None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_flags

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        restore()
