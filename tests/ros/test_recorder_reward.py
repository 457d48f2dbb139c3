import numpy as np
import pytest
import torch

from robot_rl.apps.robot_nodes import load_reward_scorer
from robot_rl.data import Dataset
from robot_rl.rewards.model import RewardModel, RewardModelConfig
from robot_rl.ros import EpisodeRecorder, RecorderError, RewardScorer
from tests.ros import SPEC


def test_recorder_writes_a_dataset(tmp_path):
    path = tmp_path / "rec.h5"
    rec = EpisodeRecorder(path, SPEC, source="ros2:test", cameras=("wrist",))
    assert not rec.record(np.zeros(2), np.zeros(2), {"wrist": np.zeros((4, 4, 3), np.uint8)})  # not recording
    with pytest.raises(RecorderError, match="not recording"):
        rec.mark_success()
    rec.start()
    for t in range(3):
        rec.record(np.full(2, t, np.float32), np.full(2, 0.1 * t), {"wrist": np.full((4, 4, 3), t, np.uint8)})
    with pytest.raises(RecorderError, match="non-finite"):
        rec.record(np.array([np.nan, 0.0]), np.zeros(2), {"wrist": np.zeros((4, 4, 3), np.uint8)})
    rec.observe(np.full(2, 9.0))
    rec.mark_success()
    assert rec.stop() == "demo_0"
    rec.start()
    assert rec.stop() is None  # empty episode: nothing written
    rec.close()
    with Dataset(path) as ds:
        assert ds.episode_names == ["demo_0"]
        ep = ds.load_episode("demo_0", images=True)
        assert ep.length == 3 and np.isnan(ep.rewards).all() and ep.success
        assert np.allclose(ep.next_states[-1], 9.0) and ep.images["wrist"].shape == (3, 4, 4, 3)


def test_reward_scorer(tmp_path):
    model = RewardModel(RewardModelConfig(members=3, hidden=(8,)), state_dim=2, action_dim=2)
    model.save(tmp_path / "rm.pt")
    scorer = load_reward_scorer(tmp_path / "rm.pt", success_threshold=-2.0)
    score = scorer.score(np.zeros(2), np.zeros(2))
    assert np.isfinite(score.reward) and score.success_probability == 1.0  # tanh output > -2 for every member
    with pytest.raises(ValueError, match="not finite"):
        scorer.score(np.array([np.nan, 0.0]), np.zeros(2))
    with pytest.raises(ValueError, match="reads actions"):
        scorer.score(np.zeros(2))


def test_reward_scorer_votes_members():
    """The scorer takes a built members function: mean reward, and the fraction of members over the threshold."""
    calls = []

    def members(s, a, f):
        calls.append((s.shape, None if a is None else a.shape, f))
        return torch.tensor([[0.0], [1.0], [2.0]])

    score = RewardScorer(members, reads_actions=False, success_threshold=0.5).score(np.zeros(3))
    assert score.reward == pytest.approx(1.0) and score.success_probability == pytest.approx(2 / 3)
    assert calls == [((1, 3), None, None)]
    with pytest.raises(ValueError, match="reads actions"):
        RewardScorer(members, reads_actions=True).score(np.zeros(3))
