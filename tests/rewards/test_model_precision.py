"""Reward-model inference precision (``RewardModel.precision``): fp32 by default on the CPU (exactly ``forward``),
tf32 by default on CUDA, bf16 autocast inside with float32 out and close to fp32; training's ``forward`` is not
affected; bad names are refused."""

from __future__ import annotations

import pytest
import torch

from robot_rl.rewards.model import RewardModel, RewardModelConfig
from robot_rl.rewards.model.network import CUDA_DEFAULT_PRECISION
from robot_rl.rewards.precision import resolve_precision

STATE = RewardModelConfig(hidden=(64, 64))
IMAGE = RewardModelConfig(obs="image", image_size=32, conv_channels=(8, 16), conv_kernels=(5, 3),
                          conv_strides=(3, 2))
BF16_TOL = 3e-2
"""Max |bf16 - fp32| of a tanh reward in [-1, 1] (bf16 keeps 8 mantissa bits: ~4e-3 relative per product)."""


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    states, actions = torch.randn(40, 6, generator=g), torch.randn(40, 2, generator=g).clamp(-1, 1)
    frames = torch.randint(0, 256, (40, 32, 32, 3), generator=g, dtype=torch.uint8)
    return states, actions, frames


@pytest.mark.parametrize("config", [STATE, IMAGE], ids=["state", "image"])
def test_bf16_is_close_to_fp32_and_fp32_is_exact(config: RewardModelConfig) -> None:
    torch.manual_seed(0)
    model = RewardModel(config, 6, 2).eval()
    states, actions, frames = _inputs()
    f = frames if config.obs == "image" else None
    assert model.precision is None and model.inference_precision == "fp32"  # CPU default
    exact = model.reward(states, actions, f)
    assert torch.equal(exact, model(states, actions, f).detach().mean(0))  # fp32 is forward, unchanged
    model.precision = "tf32"  # no TF32 on the CPU: the same numbers
    assert torch.equal(model.reward(states, actions, f), exact)
    model.precision = "bf16"
    seen: list[torch.dtype] = []
    hook = model.layers[0].register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    fast = model.reward(states, actions, f)
    hook.remove()
    assert seen == [torch.bfloat16]  # the precision reached the network
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    assert 0 < (fast - exact).abs().max() < BF16_TOL
    assert model(states, actions, f).dtype == torch.float32  # forward (training) never autocasts
    probs = model.preference_probs(states.reshape(4, 5, 2, 6)[:, :, 0], actions.reshape(4, 5, 2, 2)[:, :, 0],
                                   states.reshape(4, 5, 2, 6)[:, :, 1], actions.reshape(4, 5, 2, 2)[:, :, 1],
                                   *((frames.reshape(4, 5, 2, 32, 32, 3)[:, :, i] for i in (0, 1))
                                     if config.obs == "image" else ()))
    assert probs.dtype == torch.float32 and probs.shape == (config.members, 4)


def test_defaults_and_refusals() -> None:
    model = RewardModel(STATE, 6, 2)
    assert CUDA_DEFAULT_PRECISION == "tf32" and resolve_precision(None, "cuda", CUDA_DEFAULT_PRECISION) == "tf32"
    model.precision = "auto"
    assert model.precision is None
    with pytest.raises(ValueError, match="precision must be one of"):
        model.precision = "fp16"
