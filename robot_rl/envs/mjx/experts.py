"""Scripted experts for the MJX tasks: float ``"state"`` ``[15]`` -> float32 action ``[3]`` in ``[-1, 1]``.

Stateless (a function of the state only, as ``robot_rl.data.behaviours`` needs); they read the named slices
of ``robot_rl.envs.mjx.STATE_SLICES``. NumPy only: no JAX import.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from robot_rl.envs.mjx import TASK_NAMES

ACTION_SCALE = 0.03
"""Metres per unit action: the gripper's position-servo target is ``hand_pos + action * ACTION_SCALE``."""

HOOK = 0.03
"""The drawer expert puts the fingertip this far behind (open) or in front of (close) the handle bar."""


def _move(hand: np.ndarray, target: np.ndarray, gain: float = 1.5) -> np.ndarray:
    return np.clip((target - hand) / ACTION_SCALE * gain, -1.0, 1.0).astype(np.float32)


def reach_expert(state: np.ndarray) -> np.ndarray:
    return _move(state[0:3], state[12:15])


def push_expert(state: np.ndarray) -> np.ndarray:
    """Go above a point behind the block (seen from the goal), descend, then push through it toward the goal."""
    hand, block, goal = state[0:3], state[6:9], state[12:15]
    to_goal = goal[:2] - block[:2]
    dist = float(np.linalg.norm(to_goal))
    if dist < 0.015:
        return _move(hand, np.array([hand[0], hand[1], 0.08]))  # done: back off upward
    direction = to_goal / dist
    rel = hand[:2] - block[:2]
    along, across = float(rel @ direction), float(rel @ np.array([-direction[1], direction[0]]))
    if along < -0.02 and abs(across) < 0.012 and hand[2] < 0.04:  # behind and aligned: push
        target_xy = block[:2] + direction * 0.06 - across * np.array([-direction[1], direction[0]])
        return _move(hand, np.array([*target_xy, 0.02]))
    pre = block[:2] - direction * 0.05
    if np.linalg.norm(hand[:2] - pre) < 0.012:  # above the pre-push point: descend
        return _move(hand, np.array([*pre, 0.02]))
    if hand[2] < 0.07 and np.linalg.norm(hand[:2] - block[:2]) < 0.08:  # near the block and low: rise first
        return _move(hand, np.array([hand[0], hand[1], 0.09]))
    return _move(hand, np.array([*pre, max(float(hand[2]), 0.09)]))


def _drawer(state: np.ndarray, pull: bool) -> np.ndarray:
    hand, handle, goal = state[0:3], state[6:9], state[12:15]
    toward = -1.0 if pull else 1.0  # the handle moves toward the robot (-y) to open
    if (goal[1] - handle[1]) * toward < 0.005:  # there (or past it): hold still
        return np.zeros(3, dtype=np.float32)
    contact = handle + np.array([0.0, -toward * HOOK, 0.0])  # behind the bar, on the side away from the goal
    if np.linalg.norm(hand[:2] - contact[:2]) > 0.015:  # not over the contact point: go there from above
        clear = handle[2] + 0.07
        if hand[2] < handle[2] + 0.035 and np.linalg.norm(hand[:2] - contact[:2]) > 0.03:
            return _move(hand, np.array([hand[0], hand[1], clear]))
        return _move(hand, np.array([contact[0], contact[1], max(float(hand[2]), clear)]))
    if hand[2] > handle[2] + 0.01:
        return _move(hand, contact)
    return _move(hand, np.array([contact[0], goal[1] - toward * HOOK + toward * 0.02, handle[2]]))


def drawer_open_expert(state: np.ndarray) -> np.ndarray:
    """Hook the fingertip between the handle bar and the drawer front, from above, then pull."""
    return _drawer(state, pull=True)


def drawer_close_expert(state: np.ndarray) -> np.ndarray:
    """Put the fingertip in front of the handle bar, from above, then push the drawer shut."""
    return _drawer(state, pull=False)


EXPERTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "reach": reach_expert, "push": push_expert, "drawer-open": drawer_open_expert,
    "drawer-close": drawer_close_expert,
}
assert set(EXPERTS) == set(TASK_NAMES)


def mjx_expert(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """The scripted expert of ``mjx/<task>`` (``task`` with or without the ``mjx/`` prefix)."""
    name = task.removeprefix("mjx/")
    if name not in EXPERTS:
        raise ValueError(f"no MJX expert for '{task}' (known: {', '.join(EXPERTS)})")
    expert = EXPERTS[name]

    def act(state: np.ndarray) -> np.ndarray:
        return expert(np.asarray(state, dtype=np.float64))

    return act
