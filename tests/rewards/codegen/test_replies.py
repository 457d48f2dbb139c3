"""Replies as LLMs write them (``replies/*.md``: Eureka and Text2Reward styles, fences and prose, numpy, per-sample
code) through the search's reply path: extraction, normalization, the gate, and the sandbox on a real dataset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data import Dataset
from robot_rl.rewards.codegen.generate import SYSTEM_PROMPT, prepare_reply
from robot_rl.rewards.codegen.sandbox import Sandbox, SandboxLimits
from robot_rl.rewards.codegen.train import relabel_dataset

REPLIES = Path(__file__).with_name("replies")
DATASET = str(Path(__file__).resolve().parents[3] / "datasets" / "samples" / "drawer-open-tiny.h5")

EXPECTED_REJECTIONS: dict[str, list[str]] = {
    "36_rejected_reads_a_file.md": ["line 1: import of 'os' is not allowed", "line 2: import of 'json' is not allowed",
                                    "line 5: 'with' is not allowed"],
    "37_rejected_try_fallback.md": ["line 2: 'try' is not allowed"],
    "38_rejected_match_walkaround.md": ["line 2: a 'match' statement is not allowed"],
}
"""Every reply the path rejects, and every reason it must give (each names a real problem: file access, a silent
fallback, the match walk-around)."""
PER_SAMPLE = {"03_text2reward_numpy_per_sample.md", "22_torch_per_sample.md", "30_numpy_staged_builtins.md"}
"""Replies written for one sample at a time: run row by row."""


def _replies() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(REPLIES.glob("*.md"))}


def test_at_least_90_percent_of_the_replies_are_accepted_and_each_rejection_names_its_problem() -> None:
    replies = _replies()
    assert len(replies) >= 30
    prepared = {name: prepare_reply(text) for name, text in replies.items()}
    rejected = {name for name, p in prepared.items() if p.code is None}
    assert rejected == set(EXPECTED_REJECTIONS), {n: prepared[n].reasons for n in rejected}
    assert (len(replies) - len(rejected)) / len(replies) >= 0.9
    for name, expected in EXPECTED_REJECTIONS.items():
        reasons = prepared[name].reasons
        assert len(reasons) == len(expected), (name, reasons)
        for reason, start in zip(reasons, expected, strict=True):
            assert reason.startswith(start) and "\n" not in reason, (name, reason)


@pytest.fixture(scope="module")
def spec():  # type: ignore[no-untyped-def]
    with Dataset(DATASET) as ds:
        return ds.spec


def test_every_accepted_reply_runs_on_the_dataset_in_the_sandbox(spec) -> None:  # type: ignore[no-untyped-def]
    replies = {n: prepare_reply(t) for n, t in _replies().items() if n not in EXPECTED_REJECTIONS}
    box = None
    try:
        for name, prepared in replies.items():
            assert prepared.code is not None, (name, prepared.reasons)
            if box is None:
                box = Sandbox(prepared.code, spec, SandboxLimits(deadline_s=30.0))
            else:
                box.load(prepared.code)  # one worker for all, as the search reuses one per candidate process
            t, components = relabel_dataset(DATASET, spec, box)
            assert t["rewards"].shape == (90,) and np.isfinite(t["rewards"]).all(), name
            assert t["rewards"].std() > 0, name  # every reply's reward says something about these transitions
            assert box.per_sample == (name in PER_SAMPLE), name
            for values in components.values():
                assert values.shape == (90,) and np.isfinite(values).all(), name
    finally:
        if box is not None:
            box.close()


def _transitions() -> dict[str, np.ndarray]:
    with Dataset(DATASET) as ds:
        return ds.transitions()


def test_eureka_and_text2reward_replies_compute_what_they_say(spec) -> None:  # type: ignore[no-untyped-def]
    t = _transitions()
    s, a = t["next_states"], t["actions"]
    hand, handle, goal = s[:, 0:3], s[:, 4:7], s[:, 36:39]
    reach, pull = np.linalg.norm(hand - handle, axis=1), np.linalg.norm(handle - goal, axis=1)
    eureka = np.exp(-reach / 0.1) + 2.0 * np.exp(-pull / 0.05) - 0.01 * (a ** 2).sum(1)
    staged = -reach + np.where(reach < 0.05, 1.0 - np.tanh(10.0 * pull), 0.0) - 0.01 * (a ** 2).sum(1)
    replies = _replies()
    for name, expected in (("01_eureka_full.md", eureka), ("03_text2reward_numpy_per_sample.md", staged)):
        code = prepare_reply(replies[name]).code
        assert code is not None
        with Sandbox(code, spec) as box:
            reward, components = box(s, a)
        np.testing.assert_allclose(reward, expected, rtol=1e-4, atol=1e-5, err_msg=name)
    assert set(components) == set()  # the per-sample reply returns a bare reward


def test_the_prompts_example_is_accepted_as_written() -> None:
    example = re.search(r"```python\n(.*?)```", SYSTEM_PROMPT, re.DOTALL)
    assert example is not None
    prepared = prepare_reply(example.group(0))
    assert prepared.code is not None, prepared.reasons
    assert any("@torch.jit.script" in n for n in prepared.notes) and any("annotations" in n for n in prepared.notes)
    assert "def distance(a, b):" in prepared.code and "REACH_SCALE = 10.0" in prepared.code


# ---- 35 common idioms, one at a time --------------------------------------------------------------------------------

DEF = "def compute_reward(obs, action):\n    "
BASE = 'd = torch.norm(obs["hand_pos"] - obs["obj_pos"], dim=-1)\n'
IDIOMS: dict[str, str] = {
    "import torch": "import torch\n\n" + DEF + BASE + "    return -d, {}\n",
    "import numpy as np": "import numpy as np\n\n" + DEF + "\n"
                          "    d = np.linalg.norm(obs['hand_pos'] - obs['obj_pos'], axis=-1)\n    return -d, {}\n",
    "typing annotations": "from typing import Dict, Tuple\n\ndef compute_reward(obs: Dict[str, torch.Tensor], "
                          "action: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:\n    " + BASE
                          + "    return -d, {}\n",
    "@torch.jit.script": "@torch.jit.script\ndef compute_reward(obs, action):\n    " + BASE + "    return -d, {}\n",
    "helper function": "def dist(a, b):\n    return torch.norm(a - b, dim=-1)\n\n" + DEF + "\n"
                       "    return -dist(obs['hand_pos'], obs['obj_pos']), {}\n",
    "module constant": "SCALE = 2.0\n\n" + DEF + BASE + "    return -SCALE * d, {}\n",
    "action=None": "def compute_reward(obs, action=None):\n    " + BASE + "    return -d, {}\n",
    "x.type()": DEF + BASE + "    return (d < 0.1).type(torch.float32) - d, {}\n",
    "clamp_": DEF + BASE + "    return -d.clone().clamp_(max=1.0), {}\n",
    "torch.cdist": DEF + "d = torch.cdist(obs['hand_pos'][:, None], "
                   "obs['obj_pos'][:, None])[:, 0, 0]\n    return -d, {}\n",
    "F.pairwise_distance": "import torch.nn.functional as F\n\n" + DEF + "\n"
                           "    return -F.pairwise_distance(obs['hand_pos'], obs['obj_pos']), {}\n",
    "bare reward": DEF + BASE + "    return -d\n",
    "(reward, components)": DEF + BASE + "    return -d, {'reach': -d}\n",
    "per-sample numpy": "import numpy as np\n\n" + DEF + "\n"
                        "    d = np.linalg.norm(obs['hand_pos'] - obs['obj_pos'])\n"
                        "    return 1.0 if d < 0.05 else -float(d)\n",
    "torch.norm p=2": DEF + "return -torch.norm(obs['hand_pos'], p=2, dim=-1), {}\n",
    "torch.linalg.norm": DEF + "return -torch.linalg.norm(obs['hand_pos'], dim=1), {}\n",
    "x.norm()": DEF + "return -(obs['hand_pos'] - obs['obj_pos']).norm(dim=-1), {}\n",
    "temperature exp": DEF + "temperature = 0.1\n    " + BASE
                       + "    return torch.exp(-d / temperature), {}\n",
    "torch.where": DEF + BASE + "    return torch.where(d < 0.1, 1.0, -d), {}\n",
    "bool.float()": DEF + BASE + "    return (d < 0.1).float() - d, {}\n",
    "unsqueeze/squeeze": DEF + BASE + "    return -d.unsqueeze(-1).squeeze(-1), {}\n",
    "torch.clamp": DEF + BASE + "    return torch.clamp(1.0 - d, 0.0, 1.0), {}\n",
    "ellipsis index": DEF + "return obs['hand_pos'][..., 2] - obs['obj_pos'][..., 2], {}\n",
    "sum of squares": DEF + "return -torch.sum(action ** 2, dim=-1), {}\n",
    "ones_like": DEF + BASE + "    return torch.ones_like(d) - d, {}\n",
    ".to(device)": DEF + BASE + "    return -d.to(action.device), {}\n",
    "torch.stack": DEF + BASE
                   + "    return torch.stack([-d, -2 * d], dim=-1).sum(-1), {}\n",
    "import math": "import math\n\n" + DEF + BASE + "    return torch.cos(d * math.pi), {}\n",
    ".max(dim).values": DEF + "return -obs['hand_pos'].abs().max(dim=-1).values, {}\n",
    "torch.min(a, b)": DEF + BASE + "    return torch.min(-d, -2 * d), {}\n",
    "dict comprehension": DEF + "c = {k: obs[k].sum(-1) for k in ('hand_pos', 'obj_pos')}\n"
                          "    return sum(c.values()), c\n",
    "keepdim": DEF + "return -action.pow(2).sum(dim=-1, keepdim=True).squeeze(-1), {}\n",
    "cosine_similarity": DEF + "return torch.nn.functional.cosine_similarity("
                         "obs['hand_pos'], obs['obj_pos'], dim=-1), {}\n",
    "local annotation": DEF + "d: torch.Tensor = torch.norm(obs['hand_pos'], dim=-1)\n"
                        "    return -d, {}\n",
    "from math import pi": "from math import pi\n\n" + DEF + BASE
                           + "    return torch.sin(d * pi), {}\n",
    "__main__ block": DEF + BASE + "    return -d, {}\n\nif __name__ == '__main__':\n"
                      "    print(compute_reward({}, None))\n",
}


@pytest.mark.parametrize("idiom", sorted(IDIOMS))
def test_each_common_idiom_is_accepted(idiom: str) -> None:
    prepared = prepare_reply(f"Here you go:\n```python\n{IDIOMS[idiom]}```\n")
    assert prepared.code is not None, prepared.reasons


def test_every_idiom_runs_in_the_sandbox(spec) -> None:  # type: ignore[no-untyped-def]
    assert len(IDIOMS) >= 35
    t = _transitions()
    s, a = t["next_states"], t["actions"]
    with Sandbox("def compute_reward(obs, action):\n    return action.sum(-1)\n", spec) as box:
        for idiom, code in IDIOMS.items():
            prepared = prepare_reply(f"```python\n{code}```")
            assert prepared.code is not None, (idiom, prepared.reasons)
            box.load(prepared.code)
            reward, _ = box(s, a)
            assert reward.shape == (90,) and np.isfinite(reward).all() and reward.std() > 0, idiom
