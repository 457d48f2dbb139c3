"""CLIP similarity rewards (VLM-RM) from local weights: the reward (``reward.py``) and its weights (``weights.py``)."""

from robot_rl.rewards.clip.reward import DEFAULT_CACHE_SIZE, ClipReward
from robot_rl.rewards.clip.weights import ClipRewardError, file_sha256

__all__ = ["DEFAULT_CACHE_SIZE", "ClipReward", "ClipRewardError", "file_sha256"]
