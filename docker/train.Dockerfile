# Training image for an NVIDIA GPU machine: CUDA torch + robot_rl + headless MuJoCo (EGL on the NVIDIA driver).
#   docker build -f docker/train.Dockerfile -t robot-rl-train .
#   docker run --rm --gpus all -v "$PWD/runs:/app/runs" robot-rl-train          # the quickstart pipeline
#   docker run --rm --gpus all -v "$PWD/runs:/app/runs" robot-rl-train robot-rl train --help
# torch: the project pins torch==2.14.1 (pyproject.toml, constraints.txt); PyPI's Linux wheel of it is the
# CUDA 13.0 build and carries its CUDA libraries (cuda-toolkit, cuDNN, NCCL wheels), so the base image only
# has to match the host driver (CUDA 13: driver >= 580). For a CUDA 12 driver, take the same torch version
# from PyTorch's index and a 12.x base:
#   docker build -f docker/train.Dockerfile -t robot-rl-train \
#       --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# Another torch version needs the pins in pyproject.toml and constraints.txt changed (and TORCH_VERSION /
# TORCHVISION_VERSION passed), not this file.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX=https://pypi.org/simple
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# graphics: the NVIDIA container toolkit mounts libEGL_nvidia and its glvnd vendor file, for MUJOCO_GL=egl.
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics MUJOCO_GL=egl PYOPENGL_PLATFORM=egl \
    PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH

# Ubuntu 24.04's Python is 3.12; the glvnd loaders (libEGL, libOpenGL) are what MuJoCo's EGL backend opens.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv libegl1 libgl1 libglvnd0 libopengl0 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
# torch first, from the index whose CUDA build matches the driver; then the project with the same constraints as
# scripts/setup.sh (2.14.1+cuXXX satisfies their torch==2.14.1, so pip keeps the torch installed here).
RUN pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
COPY pyproject.toml README.md constraints.txt ./
COPY robot_rl ./robot_rl
RUN pip install -c constraints.txt . \
    && python -c "import torch, mujoco, metaworld; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
COPY configs ./configs

CMD ["robot-rl", "pipeline", "--config", "configs/quickstart.yaml"]
