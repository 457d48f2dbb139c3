#!/usr/bin/env bash
# Fetch, on a machine with PyPI and Debian mirrors, what a lent GPU machine (Python 3.12, torch, numpy, scipy,
# h5py, timm, opencv ... already installed; no network) lacks for `robot-rl pipeline --config
# configs/quickstart.yaml`, `pytest -m gpu tests` and the d3rlpy rows of benchmarks/iql_speed.py:
#   .whl/          robot_rl's missing imports (cp312 manylinux x86-64 or pure-Python wheels)
#   .whl-d3rlpy/   d3rlpy 2.8.1 and its own gymnasium 1.0.0 / gym 0.26.2, kept apart from the project's gymnasium
#   .gl/           EGL/OpenGL loader debs (amd64) for MuJoCo's headless rendering
# All three are git-ignored; benchmarks/gpu_env.sh installs them there. Name them in the device call's carry.
#   bash scripts/fetch_gpu_wheels.sh               # MetaWorld without its unused textures (about 30 MiB in all)
#   METAWORLD_FULL=1 bash scripts/fetch_gpu_wheels.sh   # MetaWorld's wheel as published (+23 MiB)
# The rosbags set (rosbags, apsw, lz4, backports.zstd, ruamel.yaml; 5.9 MiB) is needed only because pytest
# imports every test module when it collects `tests`; set NO_ROSBAGS=1 and name the gpu test files instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
download() {  # download DIR NAME==VERSION...: wheels only, no dependencies (each one is named)
  local dir=$1
  shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLATFORMS[@]}" -d "$dir" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

rm -rf .whl .whl-d3rlpy .gl
mkdir -p .whl .whl-d3rlpy .gl

# robot_rl: simulators and their loaders (mujoco imports OpenGL and glfw; gymnasium.envs.mujoco imports glfw).
download .whl mujoco==3.3.0 metaworld==3.1.1 gymnasium==1.4.0 farama-notifications==0.0.4 glfw==2.11.0 \
    PyOpenGL==3.1.10
# Imported when pytest collects tests/ (envs/adapters.py: stable-baselines3; rewards/clip.py: open_clip).
download .whl stable-baselines3==2.9.2 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
if [ "${NO_ROSBAGS:-0}" != 1 ]; then  # tests/ros/__init__.py and tests/data/bags.py import rosbags
  download .whl rosbags==0.11.9 apsw==3.54.1.0 backports.zstd==1.8.0 lz4==4.4.5 ruamel.yaml==0.19.1
fi
# Not carried, on purpose: openai (never imported), mcap (rosbags reads MCAP itself), pyseccomp (reward-search
# sandbox only, imported lazily), torch/numpy/scipy/h5py/timm/httpx/... (on the GPU machine already).

if [ "${METAWORLD_FULL:-0}" != 1 ]; then
  # 34 of MetaWorld's 36.6 MiB are PNG textures, 23 MiB of them referenced by no XML or Python file: drop those.
  python3 - .whl/metaworld-3.1.1-py3-none-any.whl <<'EOF'
import base64, hashlib, os, re, sys, zipfile

path = sys.argv[1]
src = zipfile.ZipFile(path)
names = src.namelist()
text = "".join(src.read(n).decode("utf-8", "replace") for n in names if n.endswith((".xml", ".py")))
drop = {n for n in names if n.endswith((".png", ".jpeg", ".jpg")) and os.path.basename(n) not in text}
tmp = path + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        if info.filename in drop:
            continue
        data = src.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(line for line in lines if line.split(",")[0] not in drop).encode()
        dst.writestr(info, data)
os.replace(tmp, path)
print(f"metaworld: dropped {len(drop)} unreferenced textures")
EOF
fi

# d3rlpy's own set; dataclasses-json 0.6.7 needs marshmallow < 4. gym 0.26.2 is published as an sdist only:
# build its (pure-Python) wheel here.
download .whl-d3rlpy d3rlpy==2.8.1 gymnasium==1.0.0 farama-notifications==0.0.4 gym-notices==0.1.0 \
    structlog==26.1.0 dataclasses-json==0.6.7 marshmallow==3.26.1 typing-inspect==0.9.0
python3 -m pip wheel -q --no-deps -w .whl-d3rlpy gym==0.26.2 \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# GL loaders, as /work/.library/device/README.md shows (amd64 whatever this machine is).
mkdir -p /tmp/amd64/partial
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${o[@]}" update -qq
(cd .gl && apt-get "${o[@]}" download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)

du -sh .whl .whl-d3rlpy .gl
total=$(du -sm -c .whl .whl-d3rlpy .gl | tail -1 | cut -f1)
echo "total ${total} MiB (the device call carries at most 64 MiB with the repository)"
if [ "$total" -gt 55 ]; then
  echo "too large: drop METAWORLD_FULL, or set NO_ROSBAGS=1" >&2
  exit 1
fi
