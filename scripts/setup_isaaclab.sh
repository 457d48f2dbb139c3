#!/usr/bin/env bash
# Create (or update) .venv-isaaclab: Python 3.12, Isaac Lab 3.0.0 (torch 2.11, newton, warp-lang, MuJoCo-Warp; no
# Isaac Sim) and robot_rl installed editable into it, plus local USD assets for the cartpole tasks. Idempotent.
#
# Conflicts with the project's pins, where Isaac Lab's side wins (robot_rl goes in with --no-deps, its other
# dependencies under the versions `pip freeze` shows right after Isaac Lab is installed):
#   torch==2.11.0 / torchvision==0.26.0 (project: 2.14.1 / 0.29.1);
#   mujoco==3.12.0 for newton/mujoco-warp, while metaworld==3.1.1 pins mujoco==3.3.0: MetaWorld is left out here,
#   so metaworld/* tasks are not listed in this environment (gym/* and isaaclab/* are).
# First run: ~7.8 GB (CUDA torch wheels); 2 min on a quiet machine with a fast link.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ISAACLAB_VENV:-.venv-isaaclab}
PY=${PYTHON312:-}
if [ -z "$PY" ]; then
  # A pyenv shim answers `command -v python3.12` even where 3.12 is not the active version, and then fails when
  # run: try each candidate by running it, pyenv's installed 3.12 interpreters included.
  pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for cand in python3.12 "$pyenv_root"/versions/3.12*/bin/python3.12; do
    if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
if [ -z "$PY" ]; then
  echo "[setup-isaaclab] error: Isaac Lab 3.0 needs Python 3.12; set PYTHON312=/path/to/python3.12" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup-isaaclab] creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip)
if [ ! -f "$VENV/.isaaclab-installed" ]; then
  echo "[setup-isaaclab] installing isaaclab==3.0.0 (first time: ~7.8 GB)"
  "${pip[@]}" install -q --upgrade pip
  "${pip[@]}" install -q "isaaclab==3.0.0"
  "${pip[@]}" freeze --exclude-editable > "$VENV/isaaclab-freeze.txt"
  touch "$VENV/.isaaclab-installed"
fi
stamp=$VENV/.robot_rl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "[setup-isaaclab] installing robot_rl (editable) and its dependencies beside Isaac Lab's pins"
  # robot_rl's dependencies without torch, mujoco, metaworld (see above), plus pytest for scripts/test_isaaclab.sh.
  "$VENV/bin/python" -c '
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if re.split(r"[\[=<>!~ ]", d)[0].lower() not in ("torch", "metaworld", "mujoco")))
print("pytest>=8")' > "$VENV/robot_rl-requirements.txt"
  # The project's pins, less those Isaac Lab overrides, then Isaac Lab's installed versions.
  grep -v -E '^(torch|torchvision|mujoco|metaworld)==' constraints.txt > "$VENV/robot_rl-constraints.txt"
  "${pip[@]}" install -q -c "$VENV/isaaclab-freeze.txt" -c "$VENV/robot_rl-constraints.txt" \
    -r "$VENV/robot_rl-requirements.txt"
  "${pip[@]}" install -q --no-deps -e .
  touch "$stamp"
fi
"$VENV/bin/python" -m robot_rl.envs.isaaclab.assets "$VENV/assets"
echo "[setup-isaaclab] ready: $("$VENV/bin/python" -c 'import importlib.metadata as m, torch
print("isaaclab", m.version("isaaclab"), "torch", torch.__version__, "newton", m.version("newton"))')"
echo "[setup-isaaclab] e.g. ROBOT_RL_ISAACLAB_ASSETS=$VENV/assets $VENV/bin/robot-rl collect" \
     "--task isaaclab/Isaac-Cartpole-Direct --preset random --num-envs 4 --episodes 8 --out runs/cartpole.h5"
