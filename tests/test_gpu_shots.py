"""TransNet V2 on a CUDA GPU against the CPU: the same shots and probabilities within 1e-4.

Skips where no GPU is visible (`bench/gpu_check.sh` runs it on a GPU machine, beside
tests/test_gpu.py); the CPU path itself is checked against the package in test_shots.py.
"""

import numpy as np
import pytest
import torch
from conftest import shot_frames, write_h264

from t12k.pipeline.media import read_frames
from t12k.shots import INPUT_SIZE, ShotDetector

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


@needs_cuda
@pytest.mark.parametrize("windows_per_batch", [1, 8])
def test_transnet_on_cuda_gives_the_cpu_shots(tmp_path, windows_per_batch):
    video = write_h264(tmp_path / "cuts.mp4", shot_frames([70, 45, 90, 40], seed=7))
    frames = read_frames(video, INPUT_SIZE)
    on_cpu = ShotDetector(device="cpu")
    on_gpu = ShotDetector(device="cuda", windows_per_batch=windows_per_batch)
    cpu, gpu = on_cpu.predict(frames), on_gpu.predict(frames)
    assert gpu.shape == cpu.shape == (len(frames),)
    diff = float(np.abs(gpu - cpu).max())
    print(f"\nTransNet V2 cuda vs cpu, {windows_per_batch} window(s) per batch: max |d probability| {diff:.1e}")
    assert diff < 1e-4
    np.testing.assert_array_equal(on_gpu.to_shots(gpu), on_cpu.to_shots(cpu))
    assert len(on_cpu.to_shots(cpu)) == 4
