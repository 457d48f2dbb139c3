#!/usr/bin/env bash
# The one GPU check (a lent H100/H200 with no network, its own Python 3.12 + torch): the gpu-marked tests, the
# IQL speed rows (robot_rl eager / CUDA-graphed / graphed+compiled at batch 256 and 1024, d3rlpy eager and
# compile_graph), fine-tuning speed, and the quickstart pipeline on CUDA with its time per stage. Each part has
# its own time limit (75 + 130 + 150 s; FINETUNE_SPEED=1 adds 80 s). Record the output (card named) in benchmarks/.
#
#   bash scripts/fetch_gpu_wheels.sh        # here, with PyPI: .whl/, .whl-d3rlpy/, .gl/ (ignored by git)
#   (device) bash benchmarks/gpu_check.sh   # carry .whl .whl-d3rlpy .gl; logs and summary.json go to $OUT
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh
PY=${PYTHON:-python3}
t0=$(date +%s)
section() { echo; echo "== $1 ($(( $(date +%s) - t0 )) s)"; }

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c 'import torch; assert torch.cuda.is_available(), "no CUDA"; print("torch", torch.__version__, torch.cuda.get_device_name())'

section "gpu tests"
timeout 75 $PY -m pytest -q -m gpu -p no:cacheprovider tests/rl/test_graphed.py tests/nn/test_cuda_graph.py \
  tests/data/test_sampling.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -12

section "IQL updates/s (synthetic 1M transitions, obs 17, act 6, 2x256)"
timeout 130 $PY benchmarks/iql_speed.py --device cuda --threads 1 --steps 1000 --warmup 100 --d3rlpy-steps 500 \
  --d3rlpy-modes graph --batches 256 --modes graphed,graphed+compiled,graphed+compiled+combo 2>&1 \
  | tee "$OUT/iql_speed.log" | grep -v -i warn | tail -14

section "quickstart pipeline on CUDA"
rm -rf /tmp/gpu_pipeline
timeout 150 $PY -m robot_rl.cli.main pipeline --config configs/quickstart.yaml --out /tmp/gpu_pipeline --overwrite \
  > "$OUT/pipeline.log" 2>&1
echo "exit $?"
grep -E "update path|training path|trained|fine-tuned|success|finetune:" "$OUT/pipeline.log" | tail -12
if [ -f /tmp/gpu_pipeline/summary.json ]; then
  cp /tmp/gpu_pipeline/summary.json "$OUT/pipeline_summary.json"
  $PY - <<'PYEOF'
import json
facts = json.load(open("/tmp/gpu_pipeline/summary.json"))
for k, v in facts.items():
    if k.startswith("time") or "success" in k:
        print(f"{k:<40} {v}")
PYEOF
fi
if [ "${FINETUNE_SPEED:-0}" = 1 ] && [ -f benchmarks/finetune_speed.py ]; then
  section "fine-tuning env steps/s"
  timeout 80 $PY benchmarks/finetune_speed.py --device cuda --num-envs 1 8 --workers 2 2>&1 | tee "$OUT/finetune_speed.log" | tail -12
fi
section "done"
