#!/usr/bin/env bash
# One short script for a GPU machine (a lent H100/H200): the gpu-marked tests and the CUDA rows of the IQL
# speed benchmark, printed as a table. Record the output (card named) in benchmarks/iql_speed.md.
#   bash benchmarks/gpu_check.sh            # needs the project venv (bash scripts/setup.sh) and CUDA
# d3rlpy rows need benchmarks/.venv-d3rlpy (bash benchmarks/setup_d3rlpy.sh); without it they print n/a.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c 'import torch; assert torch.cuda.is_available(), "no CUDA"; print("torch", torch.__version__)'
pytest -q -m gpu tests
python benchmarks/iql_speed.py --device cuda --threads 1 --steps 3000 --warmup 300
