#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Headless rendering: MuJoCo uses EGL (Mesa); osmesa is the fallback. Install them where missing.
if ! ldconfig -p | grep -q 'libEGL.so.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Mesa EGL for headless rendering"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1 libgl1-mesa-dri >/dev/null
  else
    echo "[setup] warning: libEGL not found; rendering needs 'apt-get install libegl1 libgl1-mesa-dri'" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.robot_rl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "[setup] installing robot_rl and its dependencies (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, mujoco, metaworld; print(f"torch {torch.__version__}, mujoco {mujoco.__version__}")')"
