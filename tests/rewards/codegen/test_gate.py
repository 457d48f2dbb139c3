from __future__ import annotations

import re

import pytest

from robot_rl.rewards.code_reward import RewardCodeError
from robot_rl.rewards.codegen.gate import GateError, check_source, extract_code
from tests.rewards.codegen.candidates import GATE_REJECTS, GOOD, fn


@pytest.mark.parametrize("name", sorted(GATE_REJECTS))
def test_the_gate_rejects_each_bad_candidate_with_a_one_line_reason(name: str) -> None:
    source, reason = GATE_REJECTS[name]
    with pytest.raises(GateError, match=re.escape(reason)) as e:
        check_source(source)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, RewardCodeError)


def test_the_gate_accepts_ordinary_reward_code() -> None:
    check_source(GOOD)
    check_source(fn('''
hand, handle = obs["hand_pos"], obs["obj_pos"]
dists = [torch.linalg.norm(hand - handle, dim=-1), (obs["goal_pos"] - handle).norm(dim=-1)]
total = sum(d for d in dists)
scale = max(1.0, math.sqrt(2.0))
for i, d in enumerate(dists):
    total = total + i * torch.clamp(d, min=0.0, max=1.0)
if not isinstance(total, torch.Tensor):
    raise ValueError(f"bad total {scale:.2f}")
components = {"reach": torch.exp(-dists[0]), "open": torch.where(dists[1] < 0.1, 1.0, 0.0)}
components.update({"effort": action.square().sum(dim=-1)})
for _ in range(2):
    total = total * 0.5
return -total / scale, components
'''))


def test_extract_code_takes_the_fenced_block_that_defines_compute_reward() -> None:
    reply = f"Here is the reward.\n```python\n{GOOD}```\nand a test:\n```python\nprint(1)\n```\n"
    assert extract_code(reply) == GOOD
    assert extract_code(GOOD) == GOOD  # a bare reply that is code
    with pytest.raises(GateError, match=r"no code: the reply has no function compute_reward\(obs, action\)"):
        extract_code("I cannot write this reward, sorry.")
    with pytest.raises(GateError, match="the reply has 2 code blocks that define compute_reward, expected one"):
        extract_code(f"```python\n{GOOD}```\nor\n```py\n{GOOD}```")
