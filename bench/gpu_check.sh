#!/usr/bin/env bash
# The GPU check: tests/test_gpu*.py and the GPU benches (shots frames/s, each backbone's clips/s at
# fp32/bf16/tf32, the six-backbone sample run, features against the CPU's) on a machine with one
# NVIDIA GPU, in under 9 minutes; every figure goes to OUT/gpu_check.json and OUT/gpu_check.md.
#
#   bench/gpu_check.sh [--device cuda] [--budget 510] [--out /tmp/t12k-gpu-check] [--only tests,shots] [--dry-run]
#
# --budget: seconds for all the steps; each step has its own timeout, cut to what is left, and a
# step that no longer fits is skipped. `--device cpu --dry-run` parses every step's options (the
# test suite runs it). Python: $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
# a hard stop above the budget in case the driver itself hangs (its steps are killed by their timeouts)
exec timeout --kill-after=10 570 "$py" bench/gpu_check.py "$@"
