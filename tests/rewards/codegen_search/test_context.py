"""The task description the LLM gets, from EnvSpec and the task card."""

from __future__ import annotations

import pytest

from robot_rl.envs import load_task_card, make_env
from robot_rl.rewards.codegen.context import class_name, strip_methods, success_definition, task_context
from tests.rewards.conftest import SPEC


@pytest.fixture(scope="module")
def drawer_spec():
    env = make_env("metaworld/drawer-open-v3")
    yield env.spec
    env.close()


def test_drawer_open_description_names_every_term_with_shape_unit_and_meaning(drawer_spec) -> None:
    text = task_context(drawer_spec, load_task_card(drawer_spec.name))
    assert text.startswith("class DrawerOpenV3:\n")
    assert "Task: open the drawer." in text and "150 steps at 80 Hz" in text
    for s in drawer_spec.state_slices:
        line = next(x for x in text.splitlines() if x.strip().startswith(s.name + " ") or
                    x.strip().startswith(s.name + ":"))
        assert f"[N, {s.size}] = state[:, {s.start}:{s.stop}]" in line and s.description in line
    assert "unit m, world frame; end-effector" in text
    assert "state                : Tensor  # [N, 39]" in text
    for i, name in enumerate(("dx", "dy", "dz", "gripper")):
        assert f"action[:, {i}] {name}: physical = action * " in text
    assert "+1 closes, -1 opens" in text
    assert text.count("handle within 3 cm of the goal") == 1
    assert "Success (judged by the simulator; your reward cannot read it): handle within 3 cm" in text
    assert "privileged" not in text and "def " not in text
    compile(text, "<context>", "exec")  # Pythonic: it parses as a class


def test_source_context_adds_the_env_class_without_its_reward(drawer_spec) -> None:
    text = task_context(drawer_spec, load_task_card(drawer_spec.name), source=True)
    assert "class SawyerDrawerOpenEnvV3" in text
    assert "def compute_reward" not in text and "def evaluate_state" not in text
    assert "_get_pos_objects" in text  # what the observation is made of stays


def test_a_spec_without_slices_or_card_still_describes_state_and_action() -> None:
    text = task_context(SPEC)
    assert text.startswith("class ReachV0:") and "Task: move the point to the origin." in text
    assert "state: Tensor  # [N, 2]" in text and "action[:, 1] a1: physical = action * 1 + 0" in text
    assert "Success" not in text and success_definition(None, SPEC) == ""
    assert class_name(SPEC) == "ReachV0"


def test_strip_methods_drops_whole_functions_with_their_decorators() -> None:
    import re

    code = "class A:\n    @property\n    def reward(self):\n        return 1\n\n    def obs(self):\n        return 2\n"
    out = strip_methods(code, re.compile("reward"))
    assert "reward" not in out and "@property" not in out and "def obs(self):" in out
