"""Normalization of reward code as LLMs write it (``codegen/normalize.py``): what is removed or rewritten, what is
left for the gate, and that the gate's line numbers still point into the code as written."""

from __future__ import annotations

from robot_rl.rewards.codegen.gate import gate_reasons
from robot_rl.rewards.codegen.normalize import normalize

EUREKA = '''import torch
import numpy
from typing import Dict, Tuple
import torch.nn.functional as F
from math import pi
from numpy.linalg import norm as np_norm

SCALE: float = 2.0
relu = F.relu


@torch.jit.script
def helper(x: torch.Tensor) -> torch.Tensor:
    return relu(x) * pi


@torch.no_grad()
def compute_reward(hand_pos: torch.Tensor, obj_pos: torch.Tensor, action: torch.Tensor, temp: float = 0.1
                   ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    d: torch.Tensor = torch.norm(hand_pos - obj_pos, dim=-1)
    n = numpy.float32(np_norm([1.0]))
    return helper(SCALE - d / temp) * n, {}


if __name__ == "__main__":
    print(compute_reward(1, 2, 3))
'''


def test_eureka_style_code_becomes_the_gates_form() -> None:
    result = normalize(EUREKA)
    assert result.code == '''SCALE = 2.0

def helper(x):
    return torch.nn.functional.relu(x) * math.pi

def compute_reward(obs, action):
    hand_pos = obs['hand_pos']
    obj_pos = obs['obj_pos']
    temp = 0.1
    d = torch.norm(hand_pos - obj_pos, dim=-1)
    n = np.float32(np.linalg.norm([1.0]))
    return (helper(SCALE - d / temp) * n, {})
'''
    assert result.notes == [
        "line 1: removed 'import torch'", "line 2: removed 'import numpy'",
        "line 3: removed 'from typing import Dict, Tuple'", "line 4: removed 'import torch.nn.functional as F'",
        "line 5: removed 'from math import pi'", "line 6: removed 'from numpy.linalg import norm as np_norm'",
        "line 8: removed annotations (lines 8, 13, 18, 20)", "line 9: 'relu' replaced by torch.nn.functional.relu",
        "line 12: removed decorator '@torch.jit.script'", "line 17: removed decorator '@torch.no_grad()'",
        "line 18: removed the defaults of compute_reward's arguments",
        "line 18: compute_reward(hand_pos, obj_pos, action, temp) -> compute_reward(obs, action), the terms read "
        "from obs",
        "line 25: removed the 'if __name__ == \"__main__\"' block",
    ]
    assert result.tree is not None and gate_reasons(result.tree) == []


def test_code_already_in_the_gates_form_is_returned_as_written_comments_included() -> None:
    code = "def compute_reward(obs, action):\n    # reach\n    return -obs['hand_pos'].norm(dim=-1)\n"
    result = normalize(code)
    assert result.code == code and result.notes == []


def test_other_imports_and_decorators_stay_for_the_gate_with_the_replys_line_numbers() -> None:
    code = ("import torch\nimport os, math\n\n@functools.cache\n@torch.jit.script\n"
            "def compute_reward(obs, action):\n    return os.getpid(), {}\n")
    result = normalize(code)
    assert "import os" in result.code and "import math" not in result.code and "@functools.cache" in result.code
    assert result.tree is not None
    assert gate_reasons(result.tree) == [
        "line 2: import of 'os' is not allowed",
        "line 4: decorator 'functools.cache' is not allowed",
        "line 7: name 'os' is not allowed (only obs, action, torch, math, np, allowed builtins, the module's constants "
        "and functions, and locals)",
        "line 7: attribute 'getpid' is not allowed",
    ]


def test_names_the_code_assigns_itself_are_not_rewritten() -> None:
    result = normalize("from math import e\n\ndef compute_reward(obs, action):\n"
                       "    e = 2\n    return action.sum(-1) * e\n")
    assert "e = 2" in result.code and "math.e" not in result.code


def test_renamed_obs_and_action_and_a_syntax_error() -> None:
    result = normalize("def compute_reward(observation, actions):\n"
                       "    return observation['state'].sum(-1) + actions[:, 0]\n")
    assert result.code.startswith("def compute_reward(obs, action):\n    observation = obs\n    actions = action\n")
    bad = normalize("def compute_reward(obs, action:\n    return 1\n")
    assert bad.tree is None and bad.error == "syntax error at line 1: '(' was never closed"
