#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: `robot-rl pipeline --config configs/quickstart.yaml`
# (collect a sub-optimal MetaWorld drawer-open dataset, label pairs with the scripted teacher, train a reward
# model, relabel, offline IQL on the learned reward, online fine-tuning with it, evaluation, report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MUJOCO_GL=${MUJOCO_GL:-egl}
if [ -f runs/quickstart/.robot-rl-pipeline ]; then  # an earlier (maybe interrupted) run: continue it
  robot-rl pipeline --config configs/quickstart.yaml --out runs/quickstart --resume "$@"
else
  robot-rl pipeline --config configs/quickstart.yaml --out runs/quickstart "$@"
fi
echo "done: report runs/quickstart/report.md (plots and GIFs beside it)"
