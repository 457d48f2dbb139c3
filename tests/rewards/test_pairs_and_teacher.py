from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.data import Dataset
from robot_rl.rewards import EQUAL, FIRST, SECOND, Query, Segment, SegmentRef
from robot_rl.rewards.labelers.scripted import ScriptedTeacher, TeacherConfig
from robot_rl.rewards.pairs import make_queries, sample_pairs


def test_uniform_pairs_lie_inside_episodes_and_repeat_with_the_seed(reach_dataset: Path) -> None:
    with Dataset(reach_dataset) as ds:
        pairs = sample_pairs(ds, 40, 10, seed=3)
        assert len(pairs) == 40
        for a, b in pairs:
            for ref in (a, b):
                assert ref.episode in ds.episode_names and ref.length == 10
                assert 0 <= ref.start <= ds.episode_length(ref.episode) - 10
            assert a != b
        assert pairs == sample_pairs(ds, 40, 10, seed=3)
        assert pairs != sample_pairs(ds, 40, 10, seed=4)
        queries = make_queries(ds, pairs[:3])
        ep = ds.load_episode(pairs[0][0].episode)
        s = pairs[0][0].start
        np.testing.assert_array_equal(queries[0].first.states, ep.states[s:s + 10])
        np.testing.assert_array_equal(queries[0].first.true_rewards, ep.reward_labels["ground_truth"][0][s:s + 10])
        assert queries[0].task_text == "move the point to the origin"


class _SpreadModel:
    """P(second better) per member spreads more the larger the first segment's first x coordinate."""

    def preference_probs(self, s0: torch.Tensor, a0: torch.Tensor, s1: torch.Tensor, a1: torch.Tensor
                         ) -> torch.Tensor:
        spread = (s0[:, 0, 0] + 1) / 4  # in [0, 0.5]
        return torch.stack([0.5 - spread, 0.5 + spread, torch.full_like(spread, 0.5)])


def test_disagreement_selection_keeps_the_pairs_the_ensemble_disagrees_on(reach_dataset: Path) -> None:
    with Dataset(reach_dataset) as ds:
        with pytest.raises(ValueError, match="needs a trained reward model"):
            sample_pairs(ds, 5, 4, selection="disagreement")
        chosen = make_queries(ds, sample_pairs(ds, 10, 4, selection="disagreement", model=_SpreadModel(), seed=1))
        uniform = make_queries(ds, sample_pairs(ds, 100, 4, seed=1))
        picked_x = np.array([q.first.states[0, 0] for q in chosen])
        pool_x = np.array([q.first.states[0, 0] for q in uniform])
        assert picked_x.min() > np.quantile(pool_x, 0.7)  # top 10 of a pool of 100 by spread
        entropy = make_queries(ds, sample_pairs(ds, 10, 4, selection="entropy", model=_SpreadModel(), seed=1))
        assert len(entropy) == 10


def _query(r0: list[float], r1: list[float]) -> Query:
    def seg(name: str, r: list[float]) -> Segment:
        n = len(r)
        states = np.stack([np.asarray(r, np.float32), np.full(n, int(name[-1]), np.float32)], axis=1)
        return Segment(SegmentRef(name, 0, n), states,
                       np.zeros((n, 2), np.float32), np.asarray(r, np.float32))
    return Query(seg("demo_0", r0), seg("demo_1", r1), "task")


def test_perfect_teacher_prefers_the_higher_return_and_ties_are_equal() -> None:
    teacher = ScriptedTeacher()
    assert teacher.answer(_query([0, 1], [1, 1])).value == SECOND
    assert teacher.answer(_query([2, 1], [1, 1])).value == FIRST
    assert teacher.answer(_query([1, 1], [1, 1])).value == EQUAL


def test_b_pref_noise_models() -> None:
    assert ScriptedTeacher(TeacherConfig(equal_threshold=0.5)).answer(_query([1.0], [1.4])).value == EQUAL
    skip = ScriptedTeacher(TeacherConfig(skip_threshold=0.0)).answer(_query([-1.0], [-0.5]))
    assert skip.value is None and "skip" in skip.provenance["reason"]
    assert ScriptedTeacher(TeacherConfig(mistake=1.0)).answer(_query([0.0], [1.0])).value == FIRST
    # myopia: with gamma = 0.1 the last step dominates
    assert ScriptedTeacher(TeacherConfig(myopia=0.1)).answer(_query([5.0, 0.0], [0.0, 1.0])).value == SECOND
    assert ScriptedTeacher().answer(_query([5.0, 0.0], [0.0, 1.0])).value == FIRST


def test_rationality_samples_bradley_terry_probabilities() -> None:
    teacher = ScriptedTeacher(TeacherConfig(rationality=1.0))
    # returns differ by 1: P(second) = sigmoid(1) = 0.731; distinct queries draw independently
    answers = [teacher.answer(_query([0.0, float(k)], [1.0, float(k)])).value for k in range(2000)]
    share = np.mean([a == SECOND for a in answers])
    assert abs(share - 1 / (1 + math.exp(-1))) < 0.04
    again = [teacher.answer(_query([0.0, float(k)], [1.0, float(k)])).value for k in range(50)]
    assert again == answers[:50]  # the same query gets the same answer


def test_teacher_refuses_data_without_ground_truth() -> None:
    with pytest.raises(ValueError, match="no ground-truth reward"):
        ScriptedTeacher().answer(_query([float("nan")], [1.0]))
    with pytest.raises(ValueError, match="mistake rate"):
        TeacherConfig(mistake=2.0)
