"""Specs and types shared by every part of robot_rl. Imports no simulator, ROS or network client."""

from robot_rl.core.check_env import EnvCheckError, check_env
from robot_rl.core.env import Obs, RobotEnv, SimEnv, StepResult, validate_action
from robot_rl.core.reward_protocols import CheckedSuccessSignal, RewardLearner, RewardSource, SuccessSignal
from robot_rl.core.specs import ActionSpec, ArraySpec, EnvSpec, StateSlice

__all__ = [
    "ActionSpec", "ArraySpec", "EnvCheckError", "EnvSpec", "Obs", "RewardLearner", "RewardSource", "RobotEnv", "SimEnv",
    "StateSlice", "StepResult", "SuccessSignal", "CheckedSuccessSignal", "check_env", "validate_action",
]
