#!/usr/bin/env bash
# d3rlpy (the peer for benchmarks/iql_speed.py) in its own virtual environment, never a project dependency:
# d3rlpy 2.8.1 pins gymnasium 1.0.0, which MetaWorld 3.1.1 cannot import with. Same torch as the project.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv-d3rlpy/bin/python ]; then
  python3 -m venv .venv-d3rlpy
  .venv-d3rlpy/bin/python -m pip install -q --upgrade pip
  .venv-d3rlpy/bin/python -m pip install -q torch==2.14.1 'd3rlpy==2.8.1'
fi
.venv-d3rlpy/bin/python -c 'import d3rlpy, torch; print("d3rlpy", d3rlpy.__version__, "torch", torch.__version__)'
