"""The registry: names, errors, and what make_env takes from task cards."""

from __future__ import annotations

import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from robot_rl.envs import list_tasks, load_task_card, make_env


def test_lists_every_metaworld_v3_task_the_gym_tasks_and_the_mjx_tasks() -> None:
    names = list_tasks()
    assert {f"metaworld/{t}" for t in ALL_V3_ENVIRONMENTS} <= set(names)
    assert {"gym/HalfCheetah-v5", "gym/Hopper-v5", "gym/Walker2d-v5"} <= set(names)
    mjx = {"mjx/reach", "mjx/push", "mjx/drawer-open", "mjx/drawer-close"}
    assert mjx <= set(names)
    assert len(names) == len(ALL_V3_ENVIRONMENTS) + 3 + len(mjx)


def test_unknown_name_lists_valid_names_and_suggests_one() -> None:
    with pytest.raises(ValueError) as e:
        make_env("metaworld/drawer-opn-v3")
    msg = str(e.value)
    assert "\n" not in msg
    assert "did you mean 'metaworld/drawer-open-v3'" in msg
    for name in ("metaworld/drawer-open-v3", "metaworld/soccer-v3", "gym/Hopper-v5"):
        assert name in msg


def test_episode_length_and_task_text_come_from_the_card() -> None:
    card = load_task_card("metaworld/drawer-open-v3")
    assert card is not None
    env = make_env("metaworld/drawer-open-v3")
    try:
        assert env.spec.max_episode_steps == card.episode_length
        assert env.spec.task_text == card.task_text == "open the drawer"
    finally:
        env.close()
    env = make_env("metaworld/drawer-open-v3", episode_length=7)
    try:
        assert env.spec.max_episode_steps == 7
    finally:
        env.close()


def test_task_without_a_card_gets_the_backend_default() -> None:
    assert load_task_card("metaworld/reach-v3") is None
    env = make_env("metaworld/reach-v3")
    try:
        assert env.spec.max_episode_steps == 500
        assert env.spec.task_text == ""
    finally:
        env.close()


@pytest.mark.parametrize("name, camera", [("metaworld/soccer-v3", "corner"), ("gym/Walker2d-v5", "track")])
def test_spec_survives_the_json_round_trip_datasets_use(name: str, camera: str) -> None:
    from robot_rl.core import EnvSpec

    env = make_env(name, cameras=(camera,), image_size=(8, 8))
    try:
        assert f"image/{camera}" in env.spec.observations
        assert EnvSpec.from_json(env.spec.to_json()) == env.spec
    finally:
        env.close()
