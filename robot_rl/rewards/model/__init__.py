"""The Bradley-Terry reward-model ensemble: the network (``network.py``), its training (``training.py``) and its
evaluation against ground truth (``evaluation.py``)."""

from robot_rl.rewards.model.evaluation import plot_reward_vs_truth, reward_correlation
from robot_rl.rewards.model.network import (
    CPU_CHUNK_BYTES,
    FORMAT,
    FORMAT_VERSION,
    MemberNet,
    RewardModel,
    RewardModelConfig,
    RewardModelError,
)
from robot_rl.rewards.model.training import PreferenceData, RewardTrainer, pair_logits, train_reward_model

__all__ = [
    "CPU_CHUNK_BYTES", "FORMAT", "FORMAT_VERSION", "MemberNet", "PreferenceData", "RewardModel", "RewardModelConfig",
    "RewardModelError", "RewardTrainer", "pair_logits", "plot_reward_vs_truth", "reward_correlation",
    "train_reward_model",
]
