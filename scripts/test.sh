#!/usr/bin/env bash
# Set up, then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MUJOCO_GL=${MUJOCO_GL:-egl}
echo "[test] ruff"; ruff check .
echo "[test] mypy"; mypy robot_rl
echo "[test] pytest"; pytest -q "$@"
