"""The Bradley-Terry reward-model ensemble: the network (``network.py``), its training (``training.py``) and its
evaluation against ground truth (``evaluation.py``). The names below are the package's public face."""

from robot_rl.rewards.model.evaluation import plot_reward_vs_truth, reward_correlation  # noqa: F401
from robot_rl.rewards.model.network import MemberNet, RewardModel, RewardModelConfig, RewardModelError  # noqa: F401
from robot_rl.rewards.model.training import PreferenceData, RewardTrainer, pair_logits, train_reward_model  # noqa: F401
