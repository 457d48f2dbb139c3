"""The reward-source registry: one class per kind serves relabel and online fine-tuning, through one parser."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robot_rl.data import Dataset, Episode
from robot_rl.rewards import sources
from robot_rl.rewards.relabel import active_label, relabel
from robot_rl.rewards.sources import (
    SOURCES,
    GroundTruthReward,
    SourceContext,
    make_rewarder,
    parse_source,
    resolve_reward_source,
    source_help,
    source_names,
)


class StepCost:
    """A tiny new kind: a constant reward per step (``step-cost:C``), offline and online."""

    kind = "step-cost"
    argument = "C"
    help = "a constant reward C per step"
    relabels = True
    online = True
    name = default_id = "step_cost"

    def __init__(self, cost: float) -> None:
        self.cost = cost

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> StepCost:
        return cls(float(arg))

    def identity(self) -> dict[str, Any]:
        return {"labeler": "step_cost", "source": f"step-cost:{self.cost}"}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        return np.full(episode.length, self.cost, np.float32)

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        return torch.full((action.shape[0],), self.cost)

    def close(self) -> None:
        pass


@pytest.fixture
def step_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SOURCES, StepCost.kind, StepCost)  # adding a kind: one class, one registry line


def test_a_registered_kind_relabels_and_labels_online(step_cost: None, reach_dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.h5"
    shutil.copy(reach_dataset, data)
    assert "step-cost:C" in source_names(relabels=True) and "step-cost:C" in source_names(online=True)
    assert "step-cost:C: a constant reward C per step" in source_help(online=True)
    with Dataset(data) as ds:
        rewarder = make_rewarder("step-cost:-0.5", ds)
    result = relabel(str(data), rewarder, activate=True)
    assert result.label_id == "step_cost" and result.mean == -0.5 and active_label(str(data)) == "step_cost"
    with Dataset(data) as ds:
        ep = ds.load_episode(ds.episode_names[0])
    assert np.all(ep.rewards == -0.5) and ep.reward_labels["step_cost"][1]["source"] == "step-cost:-0.5"
    online = resolve_reward_source("dataset", str(data))  # read back from the active label's provenance
    assert isinstance(online, StepCost) and online.cost == -0.5
    r = online({}, torch.zeros(3, 2), {}, torch.full((3,), float("nan")))
    assert torch.equal(r, torch.full((3,), -0.5))


def test_one_parser_for_every_kind(step_cost: None) -> None:
    assert parse_source("step-cost:2") == (StepCost, "2")
    assert parse_source("ground_truth") == (GroundTruthReward, "")
    assert parse_source("reward-model:runs/r:1") == (sources.LearnedReward, "runs/r:1")
    for bad in ("step-cost", "step-cost:", "ground_truth:x", "magic:x", ""):
        with pytest.raises(ValueError, match="unknown reward source .*step-cost:C"):
            parse_source(bad)
    with pytest.raises(ValueError, match=r"unknown reward source 'magic:x'; choose dataset, ground_truth, "
                                         r"reward-model:RUN_DIR, clip:CHECKPOINT, code:FILE.py, success:RUN_DIR or "
                                         r"step-cost:C"):
        resolve_reward_source("magic:x", "unused.h5")


def test_online_only_kinds_do_not_relabel(reach_dataset: Path) -> None:
    with Dataset(reach_dataset) as ds, pytest.raises(
            ValueError, match=r"reward source 'ground_truth': expected reward-model:RUN_DIR, clip:CHECKPOINT, "
                              r"code:FILE.py or success:RUN_DIR"):
        make_rewarder("ground_truth", ds)
