#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: collect a sub-optimal MetaWorld drawer-open
# dataset and show it (table + PNG). Later stages of the pipeline extend this script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MUJOCO_GL=${MUJOCO_GL:-egl}
out=runs/quickstart
mkdir -p "$out"
rm -f "$out/drawer-open.h5"
robot-rl collect --task metaworld/drawer-open-v3 --preset suboptimal --episodes 40 --num-envs 4 \
  --seed 0 --out "$out/drawer-open.h5"
robot-rl inspect "$out/drawer-open.h5" --png "$out/drawer-open.png"
