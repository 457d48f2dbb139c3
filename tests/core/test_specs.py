import pytest
import torch

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec, StateSlice, validate_action


def make_spec() -> EnvSpec:
    return EnvSpec(
        name="toy/point-v0",
        observations={"state": ArraySpec((6,), description="pos and goal"),
                      "image/top": ArraySpec((8, 8, 3), "uint8", 0, 255)},
        action=ActionSpec(2, "ee_delta", scale=(0.01, 0.02), offset=(0.0, 0.5), names=("x", "y"), units=("m", "m")),
        state_slices=(StateSlice("hand_pos", 0, 3, "m", "world"), StateSlice("goal_pos", 3, 6, "m", "world")),
        max_episode_steps=50, control_hz=10.0, task_text="reach the goal", sim_state_dim=4, cameras=("top",),
        extras={"success": "distance < 0.05 m"},
    )


def test_env_spec_json_round_trip():
    spec = make_spec()
    back = EnvSpec.from_json(spec.to_json())
    assert back == spec
    assert back.state_slice("goal_pos") == slice(3, 6)
    assert back.compatible_with(spec) == []


def test_state_slices_split_and_validate():
    spec = make_spec()
    state = torch.arange(12.0).reshape(2, 6)
    parts = spec.split_state(state)
    assert parts["hand_pos"].tolist() == [[0, 1, 2], [6, 7, 8]]
    assert parts["goal_pos"].shape == (2, 3)
    with pytest.raises(KeyError, match="known: hand_pos, goal_pos"):
        spec.state_slice("obj_pos")
    with pytest.raises(ValueError, match="outside the state of size 6"):
        EnvSpec(name="bad", observations={"state": ArraySpec((6,))}, action=spec.action,
                state_slices=(StateSlice("x", 4, 8),))
    with pytest.raises(ValueError, match="'state' term"):
        EnvSpec(name="bad", observations={"image/top": ArraySpec((8, 8, 3), "uint8")}, action=spec.action)


def test_action_spec_maps_to_physical_units_and_back():
    spec = make_spec().action
    a = torch.tensor([[1.0, -1.0], [0.0, 0.5]])
    phys = spec.to_physical(a)
    assert torch.allclose(phys, torch.tensor([[0.01, 0.48], [0.0, 0.51]]))
    assert torch.allclose(spec.from_physical(phys), a)
    with pytest.raises(ValueError, match="scale has 1 entries"):
        ActionSpec(2, "twist", scale=(1.0,), offset=(0.0, 0.0))


def test_array_spec_check_names_the_term():
    spec = ArraySpec((3,))
    spec.check("state", torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match=r"'state': expected shape \[2, 3\], got \[2, 4\]"):
        spec.check("state", torch.zeros(2, 4), 2)
    with pytest.raises(ValueError, match="expected dtype float32"):
        spec.check("state", torch.zeros(2, 3, dtype=torch.float64), 2)


def test_validate_action_names_env_and_counts_clipping():
    clipped, count = validate_action(torch.tensor([[0.5, 2.0], [-3.0, -4.0], [0.0, 0.0]]), 3, 2)
    assert clipped.tolist() == [[0.5, 1.0], [-1.0, -1.0], [0.0, 0.0]]
    assert count.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="env 2 is not finite"):
        validate_action(torch.tensor([[0.0, 0.0], [0.0, 0.0], [float("inf"), 0.0]]), 3, 2)
    with pytest.raises(ValueError, match="expected shape"):
        validate_action(torch.zeros(3, 3), 3, 2)
