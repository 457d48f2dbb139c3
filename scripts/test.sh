#!/usr/bin/env bash
# Set up, then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The human labeler's page is tested in headless Chromium (Debian's chromium + chromium-driver); without them
# that test skips with a reason.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[test] installing chromium and chromium-driver for the labeling-page test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "[test] warning: could not install chromium; the browser test will skip" >&2
  else
    echo "[test] note: chromium/chromedriver not found; the browser test will skip" >&2
  fi
fi
. .venv/bin/activate
export MUJOCO_GL=${MUJOCO_GL:-egl}
echo "[test] ruff"; ruff check .
echo "[test] mypy"; mypy robot_rl
echo "[test] pytest"; pytest -q "$@"
# The Isaac Lab adapter against the real Isaac Lab 3.0 (CPU), in its own environment (Isaac Lab pins torch 2.11
# and Python 3.12): only on a full run. A set-up that cannot download is a warning (those tests then did not run);
# a failing test fails the run. ROBOT_RL_ISAACLAB=0 leaves it out.
if [ "$#" -eq 0 ] && [ "${ROBOT_RL_ISAACLAB:-1}" = 1 ]; then
  if bash scripts/setup_isaaclab.sh; then
    echo "[test] pytest tests/envs/test_isaaclab.py in .venv-isaaclab (the real Isaac Lab)"
    .venv-isaaclab/bin/python -m pytest -q tests/envs/test_isaaclab.py
  else
    echo "[test] warning: could not set up .venv-isaaclab (above); the tests against the real Isaac Lab did not run" >&2
  fi
fi
