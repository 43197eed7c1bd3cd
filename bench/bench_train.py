"""Benchmark: one epoch of DIViTA training and validation on a store of Trailers12k's size.

Generates a feature store in the published layout (zarr format 2, Blosc-compressed float32,
one (clips, features) array per trailer) with Trailers12k's training-set size by default
(8,400 training trailers, 1,200 validation trailers, about 130 clips each, 768 features as
Swin), then times what `t12k train` does:

* load: reading the store once into memory (`load_trailers`);
* train epoch: one random 30-clip snippet per training trailer, batches of 32, forward,
  BCE, backward, AdamW step (the trainer's own functions);
* validation: every non-overlapping snippet of every validation trailer in batched passes,
  the reference's validation loss and per-trailer probabilities (`evaluate`);
* for comparison, one epoch of the reference trainer's data access pattern: one zarr read
  of a random 30-clip slice per training trailer (what its DataLoader does per snippet),
  without any model work.

It prints the figures and an estimate of a full experiment for one backbone (three splits
of 100 epochs: the issue's goal is under 5 minutes on an H100). Nothing here is asserted.

    python bench/bench_train.py --scale 0.1            # 840 + 120 trailers
    python bench/bench_train.py --device cuda          # full size on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np
import torch
import torch.nn.functional as F
import zarr

from t12k import GENRES
from t12k.device import resolve_device
from t12k.divita.data import FEATURE_DTYPES, load_trailers
from t12k.divita.model import AGGREGATIONS, DIViTA
from t12k.divita.train import evaluate

TRAIN_TRAILERS, VAL_TRAILERS = 8400, 1200  # Trailers12k: 12,000 trailers, 70 / 10 / 20


def make_store(path: Path, n: int, clips: int, features: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """A published-layout store of `n` trailers with about `clips` clips each; returns ids and lengths."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.normal(clips, clips * 0.35, n).round(), 5, None).astype(int)
    ids = [f"tt{i:07d}" for i in range(n)]
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs["num_features"] = features
    comp = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    for mid, m in zip(ids, lengths):
        x = rng.standard_normal((int(m), features), dtype=np.float32)
        g.create_array(mid, shape=x.shape, dtype="float32", chunks=(64, features), compressors=comp)[...] = x
    return ids, lengths


def reference_style_epoch(path: Path, ids: list[str], lengths: np.ndarray, snippet: int, seed: int = 0) -> float:
    """Seconds to read one random `snippet`-clip slice per trailer straight from zarr."""
    rng = np.random.default_rng(seed)
    z = zarr.open(str(path), mode="r")
    t0 = time.perf_counter()
    for mid, n in zip(ids, lengths):
        start = int(rng.integers(0, max(n - snippet, 0) + 1))
        _ = z[mid][start : start + snippet]
    return time.perf_counter() - t0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of Trailers12k's 8,400 + 1,200 trailers")
    p.add_argument("--clips", type=int, default=130, help="mean clips per trailer")
    p.add_argument("--features", type=int, default=768, help="features per clip (768: Swin)")
    p.add_argument("--aggregation", choices=tuple(AGGREGATIONS), default="tsfm", help="clip aggregation")
    p.add_argument("--fusion", action="store_true", help="late fusion of two stores of that size (twice the data)")
    p.add_argument("--epochs", type=int, default=2, help="epochs to time (the first one includes warm-up)")
    p.add_argument("--batch-size", type=int, default=32, help="trailers per training batch")
    p.add_argument("--snippet", type=int, default=30, help="clips per snippet")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--feature-dtype", default="float32", choices=tuple(FEATURE_DTYPES))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--store-dir", help="where to generate the stores (default: a temporary folder, deleted)")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    return p


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _generate_and_load(a, root: Path, n_train: int, n_val: int, device: torch.device, fig: dict):
    """The stores generated in `root` and loaded into memory: (data, ids, lengths, store paths)."""
    t0 = time.perf_counter()
    stores = [root / f"trailers_i_bench{k}_fpc24.zarr" for k in range(2 if a.fusion else 1)]
    for k, s in enumerate(stores):
        ids, lengths = make_store(s, n_train + n_val, a.clips, a.features, seed=k)
    fig["generate_s"] = time.perf_counter() - t0
    fig["clips_total"] = int(lengths.sum())
    fig["store_mb"] = sum(f.stat().st_size for s in stores for f in s.rglob("*") if f.is_file()) / 1e6
    t0 = time.perf_counter()
    data = load_trailers(ids, stores[0], stores[1] if a.fusion else None, a.feature_dtype, device)
    _sync(device)
    fig["load_s"] = time.perf_counter() - t0
    fig["memory_mb"] = (
        sum(t.feats.numel() * t.feats.element_size() for t in (data.image, data.video) if t is not None) / 1e6
    )
    return data, ids, lengths, stores


def _time_epochs(a, data, n_train: int, n_val: int, device: torch.device, fig: dict) -> tuple[list, list]:
    """Seconds of each timed training epoch and validation pass (the trainer's own functions)."""
    rng = np.random.default_rng(0)
    y = torch.as_tensor((rng.random((n_train + n_val, len(GENRES))) < 0.25).astype(np.float32), device=device)
    rows_train = torch.arange(n_train, device=device)
    rows_val = torch.arange(n_train, n_train + n_val, device=device)
    y_val = y[n_train:].cpu().numpy()
    torch.manual_seed(0)
    model = DIViTA(a.features, a.features if a.fusion else None, "late", a.aggregation).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, amsgrad=True)
    gen = torch.Generator().manual_seed(0)
    fig["head_params"] = sum(p.numel() for p in model.parameters())
    train_s, val_s = [], []
    for _ in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n_train, generator=gen)
        for s in range(0, n_train, a.batch_size):
            batch = order[s : s + a.batch_size].to(device)
            image, video = data.train_batch(rows_train[batch], a.snippet, gen, device)
            loss = F.binary_cross_entropy_with_logits(model(image, video), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()
        _sync(device)
        train_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        evaluate(model, data, rows_val, y_val, a.snippet, device, a.batch_size)
        val_s.append(time.perf_counter() - t0)
    return train_s, val_s


def _print_figures(fig: dict, a, n_train: int, n_val: int) -> None:
    print(
        f"t12k train benchmark on {fig['device']} ({fig['torch_threads']} torch threads), "
        f"{fig['modalities']}, {fig['aggregation']}, {fig['feature_dtype']} features"
    )
    print(
        f"  data        {n_train} train + {n_val} val trailers, {fig['clips_total']} clips x {a.features} "
        f"features; store {fig['store_mb']:.0f} MB on disk, {fig['memory_mb']:.0f} MB in memory"
    )
    print(f"  generate    {fig['generate_s']:.1f} s")
    print(f"  load        {fig['load_s']:.2f} s (whole store into memory, once)")
    print(
        f"  train epoch {', '.join(f'{s:.2f}' for s in fig['train_epoch_s'])} s "
        f"({fig['train_trailers_per_s']:.0f} trailers/s; head {fig['head_params']:,} parameters)"
    )
    print(f"  validation  {', '.join(f'{s:.2f}' for s in fig['val_s'])} s ({fig['val_snippets']} snippets)")
    print(f"  reference-style zarr reads of one training epoch (no model): {fig['reference_style_read_epoch_s']:.2f} s")
    print(
        f"  estimate    {fig['estimate_3x100_epochs_full_size_min']:.1f} min for 3 splits x 100 epochs at "
        "Trailers12k's size on this device"
    )
    if a.json:
        print(json.dumps(fig))


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    n_train, n_val = max(1, round(TRAIN_TRAILERS * a.scale)), max(1, round(VAL_TRAILERS * a.scale))
    root = Path(a.store_dir) if a.store_dir else Path(tempfile.mkdtemp(prefix="t12k-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    fig: dict[str, float | int | str] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "train_trailers": n_train,
        "val_trailers": n_val,
        "features": a.features,
        "aggregation": a.aggregation,
        "modalities": "late fusion" if a.fusion else "one store",
        "feature_dtype": a.feature_dtype,
    }
    try:
        data, ids, lengths, stores = _generate_and_load(a, root, n_train, n_val, device, fig)
        train_s, val_s = _time_epochs(a, data, n_train, n_val, device, fig)
        fig["train_epoch_s"] = train_s
        fig["val_s"] = val_s
        # the fastest epoch: on a GPU the first one pays the warm-up, on a shared CPU the
        # slower ones pay other processes' load
        steady_train = min(train_s[1:] or train_s) if device.type == "cuda" else min(train_s)
        steady_val = min(val_s[1:] or val_s) if device.type == "cuda" else min(val_s)
        fig["train_trailers_per_s"] = n_train / steady_train
        fig["val_snippets"] = int(sum(max(1, math.ceil(n / a.snippet)) for n in lengths[n_train:]))
        fig["reference_style_read_epoch_s"] = reference_style_epoch(
            stores[0], ids[:n_train], lengths[:n_train], a.snippet
        )
        # a full run: load once per split, up to 100 epochs of train + validation, 3 splits,
        # at Trailers12k's size (the per-epoch times scale with the number of trailers)
        full = 1 / a.scale
        fig["estimate_3x100_epochs_full_size_min"] = (
            3 * (fig["load_s"] * full + 100 * (steady_train + steady_val) * full) / 60
        )
    finally:
        if not a.store_dir:
            shutil.rmtree(root, ignore_errors=True)
    _print_figures(fig, a, n_train, n_val)
    return 0


if __name__ == "__main__":
    sys.exit(main())
