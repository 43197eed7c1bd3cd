"""A backbone in OpenVINO, the inference runtime made for CPUs, and the cache of its converted forms.

A network is converted once per weights and clip shape and kept in a cache folder
($T12K_CACHE, else ~/.cache/t12k): `<key>-<id>-<shape>.xml/.bin` (the network with its
weights, float32) and `<key>-<id>.json` (the weights' description and the split transforms).
`<id>` is a digest of what fixes the network without building it: the backbone, its weights
(`weights_identity`: the seed, the named set, or the file's sha256), the source of
`t12k.backbones` and the versions of PyTorch, torchvision and OpenVINO. So a later run finds
its network before building anything: it neither builds the PyTorch network nor imports
torchvision (2-3 s of start-up, and the PyTorch copy of the weights in memory), and only reads
the converted form. Files are written under temporary names and renamed, the .json last:
present means whole, and two processes converting at once each rename a whole file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import t12k.backbones as backbones_package
from t12k.backbones import BackboneSpec, Kind, weights_identity
from t12k.pipeline.extract.transforms import Geometry, Normalize
from t12k.pipeline.media.ffmpeg import tmp_name

FORMAT = 2  # of the cached files; a change here makes every cached network be converted anew


def cache_dir() -> Path:
    """Where converted networks are kept: $T12K_CACHE, else $XDG_CACHE_HOME/t12k (~/.cache/t12k)."""
    root = os.environ.get("T12K_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "t12k"
    return Path(root)


def _versions() -> str:
    names = ("torch", "torchvision", "openvino")
    return "|".join(f"{n} {metadata.version(n)}" for n in names)


def _source_digest() -> str:
    """The backbones' own code (builders, heads removed, random initialisation)."""
    h = hashlib.sha256()
    for path in sorted(Path(backbones_package.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


class OpenVINOForms:
    """The converted forms of one backbone with one weights choice, one per clip shape."""

    def __init__(self, spec: BackboneSpec, weights: str):
        self.spec = spec
        self.folder = cache_dir() / "openvino"
        ident = f"{FORMAT}|{spec.key}|{spec.model_name}|{weights_identity(spec.key, weights)}"
        ident += f"|{_versions()}|{_source_digest()}"
        self.stem = f"{spec.key}-{hashlib.sha256(ident.encode()).hexdigest()[:24]}"

    def _xml(self, shape: tuple[int, ...]) -> Path:
        return self.folder / f"{self.stem}-{'x'.join(map(str, shape))}.xml"

    def known(self) -> tuple[str, Geometry, Normalize] | None:
        """The weights' description and the split transforms, when a network was converted
        before (no PyTorch network, no torchvision needed), else None."""
        try:
            info = json.loads((self.folder / f"{self.stem}.json").read_text())
        except (OSError, ValueError):
            return None
        g, n = info["geometry"], info["normalize"]
        geometry = Geometry(
            Kind(g["kind"]), tuple(g["resize_size"]), tuple(g["crop_size"]), g["interpolation"], g["antialias"]
        )
        return info["weights_used"], geometry, Normalize(Kind(n["kind"]), tuple(n["mean"]), tuple(n["std"]))

    def net(
        self, shape: tuple[int, ...], model: Callable[[], torch.nn.Module], facts: tuple[str, Geometry, Normalize]
    ) -> OpenVINONet:
        """The network for clips of `shape`, converted from `model()` (called only when no
        converted form is kept) and kept with `facts` (weights description, transforms)."""
        xml = self._xml(shape)
        if not xml.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._convert(model(), shape, xml)
        sidecar = self.folder / f"{self.stem}.json"
        if not sidecar.is_file():
            used, geometry, normalize = facts
            text = json.dumps({"weights_used": used, "geometry": asdict(geometry), "normalize": asdict(normalize)})
            tmp = tmp_name(sidecar)
            tmp.write_text(text)
            os.replace(tmp, sidecar)
        return OpenVINONet(xml, self.folder / "compiled")

    def _convert(self, model: torch.nn.Module, shape: tuple[int, ...], xml: Path) -> None:
        ov = _openvino()
        with warnings.catch_warnings():  # the converter traces with TorchScript, which PyTorch deprecates
            warnings.simplefilter("ignore")
            net = ov.convert_model(model, example_input=torch.zeros(1, *shape))
        net.reshape([-1, *shape])
        tmp = tmp_name(xml)
        ov.save_model(net, tmp, compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))  # the .xml last: present means whole
        os.replace(tmp, xml)


def _openvino() -> ModuleType:
    """The `openvino` module, imported without its usage telemetry. On import, OpenVINO's
    converter sends an event to Google Analytics unless the user opted out, from a fork of the
    whole process (`openvino_telemetry`'s GA4 backend): a copy of a process holding gigabytes
    and threads, a network call from the user's machine, and page faults on every page the
    process writes next (about 70,000 on a 2D extraction, 0.1 s). With `openvino_telemetry`
    marked absent, OpenVINO uses its own stub, which sends nothing."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # an import of it fails
    import openvino

    return openvino


@functools.cache
def _core() -> Any:
    """The process's one OpenVINO Core, never let go. Its CPU plugin gives the main thread an
    alternate signal stack and frees it when the last Core goes; a signal that arrives later (a
    decode worker's SIGCHLD) would then crash the process (SIGSEGV from the kernel)."""
    return _openvino().Core()


class OpenVINONet:
    """A converted network compiled by OpenVINO for this CPU, float32 throughout, for inputs
    of one clip shape and any batch size."""

    def __init__(self, xml: Path, compiled: Path):
        core = _core()
        config = {
            "CACHE_DIR": str(compiled),  # OpenVINO's own cache of compiled blobs
            "INFERENCE_PRECISION_HINT": "f32",  # else bf16 on CPUs that have it
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        }
        self.request = core.compile_model(core.read_model(xml), "CPU", config).create_infer_request()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.request.infer([x.contiguous().numpy()])[0])
