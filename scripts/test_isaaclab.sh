#!/usr/bin/env bash
# The Isaac Lab adapter's tests against the real Isaac Lab 3.0 on the CPU, in .venv-isaaclab (made here if missing).
# First run: the set-up (~7.8 GB) and Warp's CPU kernel compile (~30 s, cached in ~/.cache/warp afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_isaaclab.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
echo "[test-isaaclab] pytest tests/envs/test_isaaclab.py"
.venv-isaaclab/bin/python -m pytest -q tests/envs/test_isaaclab.py "$@"
