"""Loading for the robot nodes: the policy of a ``robot-rl train`` run folder into a ``ControlLoop``, a saved
``RewardModel`` into a ``RewardScorer``.

``robot_rl.ros`` holds the nodes' logic and knows only ``core`` and ``data``; this module knows where policies
(``robot_rl.rl``) and reward models (``robot_rl.rewards``) come from and hands the built objects down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from robot_rl.rewards.model import RewardModel
from robot_rl.rl.policy import load_policy
from robot_rl.ros.control import ControlConfig, ControlLoop
from robot_rl.ros.convert import MessageTypes
from robot_rl.ros.reward import RewardScorer


def load_control_loop(run_dir: str | os.PathLike[str], config: ControlConfig, types: MessageTypes,
                      clock: Callable[[], float] = time.time, device: str = "cpu") -> ControlLoop:
    """A loop running the newest checkpoint of a ``robot-rl train`` run folder; ``ValueError`` (one line) when the
    policy reads a camera the observation config lacks, or its spec does not match ``config``."""
    policy = load_policy(Path(run_dir), device)
    if policy.camera is not None and policy.camera not in config.observation.cameras:
        raise ValueError(f"the policy reads camera '{policy.camera}'; add it to observation.cameras")
    return ControlLoop(policy, policy.spec, config, types, clock)


def load_reward_scorer(path: str | os.PathLike[str], success_threshold: float = 0.5,
                       device: str = "cpu") -> RewardScorer:
    """A scorer of the reward model in ``path`` (a file written by ``RewardModel.save``)."""
    model = RewardModel.load(path, device).eval()
    return RewardScorer(model.member_rewards_chunked, model.config.use_actions, success_threshold)
