"""Errors of reward code; ``robot_rl.rewards.code_reward`` re-exports ``RewardCodeError`` for its callers."""

from __future__ import annotations


class RewardCodeError(RuntimeError):
    """The reward code failed: did not load, raised, timed out, or returned the wrong thing (one line)."""
