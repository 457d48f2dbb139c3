# Sourced (`. benchmarks/gpu_env.sh`) by benchmarks/gpu_check.sh on a lent GPU machine that has torch, numpy,
# h5py ... but no network: installs what scripts/fetch_gpu_wheels.sh put in .whl/, .whl-d3rlpy/ and .gl/ (name
# those three in the device call's carry) and sets the environment for headless MuJoCo on the GPU.
#   PYTHONPATH=/tmp/site:<repo>          robot_rl from the working tree, its missing packages from .whl/
#   D3RLPY_PYTHONPATH=/tmp/site-d3rlpy   benchmarks/iql_speed.py runs d3rlpy with this PYTHONPATH (gymnasium 1.0),
#                                        never the project's (gymnasium 1.4)
#   robot-rl                             /tmp/site-bin/robot-rl on PATH: python3 -m robot_rl.cli.main (robot_rl
#                                        itself is not installed there)
# A folder that is absent is skipped, so the script also works where packages are installed normally.

_gpu_env_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_gpu_env_pip=(python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade)

if compgen -G "$_gpu_env_root/.whl/*.whl" >/dev/null; then
  "${_gpu_env_pip[@]}" --target /tmp/site "$_gpu_env_root"/.whl/*.whl || return 1
  export PYTHONPATH=/tmp/site:$_gpu_env_root
else
  export PYTHONPATH=$_gpu_env_root${PYTHONPATH:+:$PYTHONPATH}
fi

if compgen -G "$_gpu_env_root/.whl-d3rlpy/*.whl" >/dev/null; then
  "${_gpu_env_pip[@]}" --target /tmp/site-d3rlpy "$_gpu_env_root"/.whl-d3rlpy/*.whl || return 1
  export D3RLPY_PYTHONPATH=/tmp/site-d3rlpy
fi

if compgen -G "$_gpu_env_root/.gl/*.deb" >/dev/null; then  # EGL/OpenGL loaders; the NVIDIA driver brings the rest
  for _gpu_env_deb in "$_gpu_env_root"/.gl/*.deb; do dpkg -x "$_gpu_env_deb" / || return 1; done
  ldconfig
fi
export MUJOCO_GL=egl PYOPENGL_PLATFORM=egl XLA_PYTHON_CLIENT_PREALLOCATE=false
_gpu_env_egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -e "$_gpu_env_egl" ]; then
  export __EGL_VENDOR_LIBRARY_FILENAMES=$_gpu_env_egl
fi

if ! command -v robot-rl >/dev/null; then
  mkdir -p /tmp/site-bin
  printf '#!/bin/sh\nexec %s -m robot_rl.cli.main "$@"\n' "$(command -v python3)" >/tmp/site-bin/robot-rl
  chmod +x /tmp/site-bin/robot-rl
  export PATH=/tmp/site-bin:$PATH
fi
unset _gpu_env_root _gpu_env_pip _gpu_env_deb _gpu_env_egl
