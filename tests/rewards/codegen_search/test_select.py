"""Selection without ground truth: agreement of candidate rewards with stored preference labels."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.rewards.codegen.gate import extract_code
from robot_rl.rewards.codegen.select import Preferences, agreement, label_agreement, load_preferences
from robot_rl.rewards.codegen.train import open_reward
from tests.rewards.codegen_search import replies
from tests.rewards.conftest import SPEC


def test_a_true_reward_like_candidate_agrees_and_its_negation_does_not(labeled_reach) -> None:
    dataset, store = labeled_reach
    prefs = load_preferences(str(dataset), str(store))
    assert prefs.decided == len(prefs.labels) > 30 and prefs.stats["used"] == len(prefs.labels)
    scores = {}
    for name, reply in (("true", replies.REACH_TRUE), ("negated", replies.REACH_NEGATED)):
        reward = open_reward(extract_code(reply), SPEC)
        try:
            scores[name] = label_agreement(prefs, reward)
        finally:
            reward.close()
    assert scores["true"] == 1.0  # the teacher is perfectly rational about -||s'||, exactly this reward
    assert scores["negated"] == 0.0


def test_agreement_counts_ties_as_half_and_ignores_equal_labels() -> None:
    rewards = [np.array([1.0, 1.0, 0.0, 0.0]), np.array([2.0, 2.0, 1.0, 1.0])]
    table = np.array([[0, 0, 2], [1, 0, 2], [0, 0, 2], [0, 1, 2]])
    other = np.array([[1, 0, 2], [0, 0, 2], [0, 2, 2], [0, 1, 2]])
    # sums: pair0 2 vs 4, pair1 4 vs 2, pair2 2 vs 0, pair3 1 vs 1 (tie)
    prefs = Preferences("d.h5", ("a", "b"), table, other, np.array([1.0, 0.0, 1.0, 0.0]), {})
    assert agreement(prefs, rewards) == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    equal = Preferences("d.h5", ("a", "b"), table, other, np.array([1.0, 0.5, 0.5, 0.5]), {})
    assert agreement(equal, rewards) == 1.0 and equal.decided == 1


def test_a_dataset_without_labels_says_so(labeled_reach, tmp_path) -> None:
    dataset, _ = labeled_reach
    with pytest.raises(FileNotFoundError, match="no label store"):
        load_preferences(str(dataset), str(tmp_path / "none.sqlite"))


def test_distance_to_a_reference_label_ignores_shaping_and_scale_and_has_none_for_a_constant(labeled_reach) -> None:
    from robot_rl.rewards.codegen.search import score
    from robot_rl.rewards.codegen.select import reference_distance

    dataset, _ = labeled_reach

    def distance(fn) -> float | None:
        return reference_distance(str(dataset), "ground_truth", lambda s, a: (fn(np.asarray(s)), {}))

    true = lambda s: -np.linalg.norm(s, axis=1)  # noqa: E731
    assert distance(lambda s: 3.0 * true(s) + 1.0) == pytest.approx(0.0, abs=1e-3)  # scale and constant
    assert distance(lambda s: -true(s)) == pytest.approx(1.0, abs=1e-3)
    assert 0.05 < distance(lambda s: -np.abs(s[:, 0])) < 0.95  # related, not the same
    assert distance(lambda s: np.zeros(len(s))) is None
    # nearest first in the distance ranking; a candidate without a distance has no score there
    near, far = ({"status": "ok", "distance": d} for d in (0.1, 0.4))
    assert score(near, "distance") > score(far, "distance")
    assert score({"status": "ok", "distance": None}, "distance") is None
