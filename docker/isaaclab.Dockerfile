# Isaac Lab 3.0 image for an NVIDIA GPU machine: the environment scripts/setup_isaaclab.sh makes (Python 3.12,
# isaaclab==3.0.0 with torch 2.11.0+cu130 from PyPI, newton 1.6.1, warp-lang 1.17, MuJoCo-Warp; no Isaac Sim) and
# robot_rl, simulating Isaac Lab tasks on the GPU with Newton + MuJoCo-Warp.
#   docker build -f docker/isaaclab.Dockerfile -t robot-rl-isaaclab .
#   docker run --rm --gpus all -v "$PWD/runs:/app/runs" robot-rl-isaaclab      # collect -> train -> finetune, 4096 envs
#   docker run --rm --gpus all robot-rl-isaaclab robot-rl collect --help
# torch 2.11.0's PyPI wheel is the CUDA 13.0 build and carries its CUDA libraries: the host needs a CUDA 13 driver
# (>= 580). Assets: Isaac Lab fetches its USD files from NVIDIA's servers. The image points
# ROBOT_RL_ISAACLAB_ASSETS at /app/.venv-isaaclab/assets (the cartpole from the newton wheel, enough for the
# Cartpole tasks); for other tasks pass -e ROBOT_RL_ISAACLAB_ASSETS= (empty: Isaac Lab downloads) or mount copies.
# Not built or run on the project's machines (no Docker daemon there): see README, "Isaac Lab".
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04
FROM ${CUDA_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# graphics: Warp and Newton only need compute; rendering (Isaac Sim RTX) is not part of this image.
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility PYTHONUNBUFFERED=1 \
    PATH=/app/.venv-isaaclab/bin:$PATH \
    ROBOT_RL_ISAACLAB_DEVICE=cuda:0 ROBOT_RL_ISAACLAB_ASSETS=/app/.venv-isaaclab/assets

# Ubuntu 24.04's Python is 3.12, the version Isaac Lab 3.0 needs; git for Isaac Lab's git-hosted assets.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv git libgl1 libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY scripts/setup_isaaclab.sh ./scripts/
COPY robot_rl ./robot_rl
# The same script as on a workstation: Isaac Lab first, then robot_rl (editable) under Isaac Lab's pins.
RUN PYTHON312=python3 bash scripts/setup_isaaclab.sh \
    && python -c "import torch, isaaclab_tasks; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
COPY scripts ./scripts

# Thousands of envs on the GPU: collect random rollouts, train offline, then fine-tune online in Isaac Lab.
CMD ["bash", "-c", "set -e; T=isaaclab/Isaac-Cartpole-Direct; \
robot-rl collect --task $T --preset random --num-envs 4096 --episodes 8192 --out runs/isaaclab/cartpole.h5 && \
robot-rl train --dataset runs/isaaclab/cartpole.h5 --steps 20000 --device cuda --out runs/isaaclab/iql && \
robot-rl finetune --checkpoint runs/isaaclab/iql --task $T --num-envs 4096 --steps 200000 --out runs/isaaclab/ft"]
