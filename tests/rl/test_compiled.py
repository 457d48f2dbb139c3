"""Compiled updates give the same numbers as eager ones (CPU: slow, compiles for ~1 min; CUDA: gpu marker)."""

import pytest
import torch

from robot_rl.rl.compiled import compile_losses, step_begin
from robot_rl.rl.iql import IQL, IQLConfig


def _batches(device, n, b=64):
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(n):
        yield {"obs": torch.randn(b, 17, generator=g, device=device),
               "actions": torch.rand(b, 6, generator=g, device=device) * 2 - 1,
               "rewards": torch.randn(b, generator=g, device=device),
               "next_obs": torch.randn(b, 17, generator=g, device=device),
               "terminals": torch.rand(b, generator=g, device=device) < 0.01}


def _compare(device: torch.device, steps: int, hidden=(64, 64)):
    torch.manual_seed(0)
    eager = IQL(17, 6, IQLConfig(hidden=hidden)).to(device)
    compiled = IQL(17, 6, IQLConfig(hidden=hidden)).to(device)
    compiled.load_state_dict(eager.state_dict())
    compile_losses(compiled, device)
    for batch in _batches(device, steps):
        step_begin(device)
        m_c = {k: v.clone() for k, v in compiled.update(batch).items()}
        m_e = eager.update(batch)
        for k in m_e:
            assert torch.allclose(m_e[k], m_c[k], rtol=1e-4, atol=1e-5), k
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5), name


@pytest.mark.slow
def test_compiled_update_matches_eager_on_cpu():
    _compare(torch.device("cpu"), steps=5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CUDA-graph update)")
def test_compiled_update_matches_eager_on_cuda():
    _compare(torch.device("cuda"), steps=50, hidden=(256, 256))
