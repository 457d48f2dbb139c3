"""Task cards load, are valid for their env, and malformed cards fail with a one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_rl.envs import make_env
from robot_rl.envs.task_cards import TASKS_DIR, TaskCard, load_task_card

REQUIRED = ("drawer-open-v3", "sweep-into-v3", "soccer-v3", "door-open-v3", "drawer-close-v3",
            "button-press-topdown-v3")


def _env_name(card_name: str) -> str:
    from robot_rl.envs.mjx import TASK_NAMES

    if card_name in TASK_NAMES:
        return f"mjx/{card_name}"
    return f"metaworld/{card_name}" if card_name.endswith("-v3") else f"gym/{card_name}"


def test_required_cards_exist() -> None:
    for name in REQUIRED:
        assert isinstance(load_task_card(name), TaskCard), name


@pytest.mark.parametrize("path", sorted(TASKS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_card_is_valid_for_its_env(path: Path) -> None:
    card = load_task_card(path.stem)
    assert card is not None and card.name == path.stem
    env = make_env(_env_name(card.name), episode_length=3)
    try:
        assert card.camera in env.spec.cameras
        known = {row[0] for row in env.spec.extras["privileged"]} | {"reward", "success", "sim_state"}
        assert set(card.ground_truth) <= known, set(card.ground_truth) - known
        assert card.task_text and card.notes
    finally:
        env.close()


def test_env_name_and_bare_name_find_the_same_card() -> None:
    assert load_task_card("metaworld/soccer-v3") == load_task_card("soccer-v3")


@pytest.mark.parametrize("text, key", [
    ("task_text: open\ncamera: corner\nepisode_length: -3\nground_truth: []\nnotes: ''\n", "episode_length"),
    ("task_text: open\ncamera: corner\nepisode_length: 10\nground_truth: []\n", "notes"),
    ("task_text: open\ncamera: corner\nepisode_length: 10\nground_truth: [1]\nnotes: ''\n", "ground_truth"),
    ("task_text: ''\ncamera: corner\nepisode_length: 10\nground_truth: []\nnotes: ''\n", "task_text"),
    ("task_text: open\ncamera: corner\nepisode_length: 10\nground_truth: []\nnotes: ''\ncolour: red\n", "colour"),
])
def test_malformed_card_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "bad-v3.yaml").write_text(text)
    with pytest.raises(ValueError) as e:
        load_task_card("metaworld/bad-v3", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "bad-v3.yaml" in msg and f"'{key}'" in msg


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("task_text: [unclosed\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        load_task_card("broken", tmp_path)
