"""The MJX tasks' pure functions (JAX): layouts, observations, dense rewards and success, one env at a time.

Every task shares the gripper (three slide joints ``hand_x/y/z``, qpos 0:3, world position = ``HAND_BASE + qpos``)
and the ``"state"`` layout ``STATE_SLICES``; reward and success are functions of ``"state"`` alone, so a stored
row, a restored row and a live row always agree. The env class vmaps and jits these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp

from robot_rl.envs.mjx import HAND_BASE, STATE_DIM

ASSETS = Path(__file__).resolve().parent / "assets"
Array = jax.Array

PRIVILEGED = (
    ("success", "1", "1 if the task's success rule holds (see the spec's 'success')"),
    ("hand_to_obj", "m", "fingertip to the object (push: block centre; drawer: handle; reach: fingertip to goal)"),
    ("obj_to_target", "m", "object to goal (reach: fingertip to goal; push: in the table plane)"),
    ("reach_reward", "1", "reward term for the fingertip near the object, in [0, 1]"),
    ("in_place_reward", "1", "reward term for the object at the goal, in [0, 1]"),
)


@dataclass(frozen=True)
class Layout:
    """One episode's start: qpos, qvel and mocap positions ``[nmocap, 3]``."""

    qpos: Array
    qvel: Array
    mocap_pos: Array


@dataclass(frozen=True)
class MjxTask:
    """What the env class needs to know about one task."""

    name: str
    """Task name without the ``mjx/`` prefix."""
    family: str
    """Tasks of one family share the scene and the functions below and differ only in ``params``, so they
    share one compiled step (drawer-open and drawer-close)."""
    xml: str
    """File name under ``assets/``."""
    params: tuple[float, ...]
    """Passed (as a traced array) to ``layout`` and ``evaluate``."""
    layout: Callable[[Array, Array], Layout]
    """(PRNG key, params) -> the episode's start."""
    observe: Callable[[Array, Array, Array], Array]
    """(qpos, qvel, mocap_pos) -> float32 ``"state"`` ``[STATE_DIM]``."""
    evaluate: Callable[[Array, Array], tuple[Array, Array, Array]]
    """(state, params) -> (reward float32, success bool, privileged float32 ``[len(PRIVILEGED)]``)."""
    reward_text: str
    success_text: str
    layout_text: str


def _hand_start(key: Array, y: tuple[Array | float, Array | float] = (0.45, 0.55)) -> Array:
    lo = jnp.stack([jnp.asarray(-0.15), jnp.asarray(y[0]), jnp.asarray(0.1)])
    hi = jnp.stack([jnp.asarray(0.15), jnp.asarray(y[1]), jnp.asarray(0.2)])
    return jax.random.uniform(key, (3,), minval=lo, maxval=hi) - jnp.asarray(HAND_BASE)


def _state(qpos: Array, qvel: Array, obj: Array, obj_vel: Array, goal: Array) -> Array:
    hand = qpos[0:3] + jnp.asarray(HAND_BASE)
    return jnp.concatenate([hand, qvel[0:3], obj, obj_vel, goal]).astype(jnp.float32)


def _split(state: Array) -> tuple[Array, Array, Array]:
    return state[0:3], state[6:9], state[12:15]


def _result(reward_parts: tuple[Array, Array], weights: tuple[float, float], success: Array, hand_to_obj: Array,
            obj_to_target: Array) -> tuple[Array, Array, Array]:
    reach, in_place = reward_parts
    reward = jnp.where(success, 10.0, weights[0] * reach + weights[1] * in_place).astype(jnp.float32)
    priv = jnp.stack([success.astype(jnp.float32), hand_to_obj, obj_to_target, reach, in_place]).astype(jnp.float32)
    return reward, success, priv


# --------------------------------------------------------------------------------------------- reach
def _reach_layout(key: Array, params: Array) -> Layout:
    k1, k2 = jax.random.split(key)
    goal = jax.random.uniform(k2, (3,), minval=jnp.array([-0.25, 0.45, 0.05]), maxval=jnp.array([0.25, 0.85, 0.3]))
    return Layout(_hand_start(k1), jnp.zeros(3), goal[None])


def _reach_observe(qpos: Array, qvel: Array, mocap: Array) -> Array:
    return _state(qpos, qvel, jnp.zeros(3), jnp.zeros(3), mocap[0])


def _reach_evaluate(state: Array, params: Array) -> tuple[Array, Array, Array]:
    hand, _, goal = _split(state)
    d = jnp.linalg.norm(hand - goal)
    near = jnp.exp(-d / 0.1)
    return _result((near, near), (5.0, 5.0), d < 0.05, d, d)


# ---------------------------------------------------------------------------------------------- push
BLOCK_HALF = 0.025


def _push_layout(key: Array, params: Array) -> Layout:
    k1, k2, k3 = jax.random.split(key, 3)
    block = jax.random.uniform(k2, (2,), minval=jnp.array([-0.15, 0.58]), maxval=jnp.array([0.15, 0.68]))
    goal = jax.random.uniform(k3, (2,), minval=jnp.array([-0.2, 0.75]), maxval=jnp.array([0.2, 0.85]))
    qpos = jnp.concatenate([_hand_start(k1, (0.42, 0.5)), block, jnp.array([BLOCK_HALF, 1.0, 0.0, 0.0, 0.0])])
    return Layout(qpos, jnp.zeros(9), jnp.concatenate([goal, jnp.array([BLOCK_HALF])])[None])


def _push_observe(qpos: Array, qvel: Array, mocap: Array) -> Array:
    return _state(qpos, qvel, qpos[3:6], qvel[3:6], mocap[0])


def _push_evaluate(state: Array, params: Array) -> tuple[Array, Array, Array]:
    hand, obj, goal = _split(state)
    hand_to_obj = jnp.linalg.norm(hand - obj)
    obj_to_target = jnp.linalg.norm(obj[:2] - goal[:2])
    reach = jnp.exp(-hand_to_obj / 0.1)
    in_place = jnp.exp(-obj_to_target / 0.1)
    return _result((reach, in_place), (2.0, 8.0), obj_to_target < 0.05, hand_to_obj, obj_to_target)


# -------------------------------------------------------------------------------------------- drawer
HANDLE_CLOSED = (0.0, 0.68, 0.08)
"""World position of the handle bar's centre with the drawer closed (cabinet at y = 0.85, handle 0.17 m out).

The cabinet does not move between episodes: MJX 3.3 places the children of a mocap body at their model
positions (it ignores ``mocap_pos`` for them), so a cabinet layout would need one model per env."""
DRAWER_TRAVEL = 0.15
"""Opening (m) at which the drawer-open goal sits; the joint's range is 0..0.16."""


def _drawer_layout(key: Array, params: Array) -> Layout:
    """params: (start opening, hand start y low, high, goal opening, success tolerance)."""
    goal = jnp.asarray(HANDLE_CLOSED) - jnp.array([0.0, 1.0, 0.0]) * params[3]
    qpos = jnp.concatenate([_hand_start(key, (params[1], params[2])), params[0:1]])
    return Layout(qpos, jnp.zeros(4), goal[None])


def _drawer_observe(qpos: Array, qvel: Array, mocap: Array) -> Array:
    handle = jnp.asarray(HANDLE_CLOSED) - jnp.array([0.0, 1.0, 0.0]) * qpos[3]
    return _state(qpos, qvel, handle, jnp.array([0.0, -1.0, 0.0]) * qvel[3], mocap[0])


def _drawer_evaluate(state: Array, params: Array) -> tuple[Array, Array, Array]:
    hand, handle, goal = _split(state)
    hand_to_obj = jnp.linalg.norm(hand - handle)
    obj_to_target = jnp.linalg.norm(handle - goal)
    reach = jnp.exp(-hand_to_obj / 0.1)
    in_place = jnp.clip(1.0 - obj_to_target / DRAWER_TRAVEL, 0.0, 1.0)
    return _result((reach, in_place), (2.0, 8.0), obj_to_target < params[4], hand_to_obj, obj_to_target)


_HAND_TEXT = "fingertip start uniform in x -0.15..0.15, z 0.1..0.2 m"
TASKS: dict[str, MjxTask] = {
    "reach": MjxTask(
        "reach", "reach", "reach.xml", (), _reach_layout, _reach_observe, _reach_evaluate,
        reward_text="10 * exp(-d / 0.1 m), d = fingertip to goal; 10 on success",
        success_text="fingertip within 5 cm of the goal",
        layout_text=f"{_HAND_TEXT}, y 0.45..0.55; goal uniform in x -0.25..0.25, y 0.45..0.85, z 0.05..0.3 m"),
    "push": MjxTask(
        "push", "push", "push.xml", (), _push_layout, _push_observe, _push_evaluate,
        reward_text="2 * exp(-|fingertip - block| / 0.1) + 8 * exp(-|block - goal|_xy / 0.1); 10 on success",
        success_text="block centre within 5 cm of the goal in the table plane",
        layout_text=f"{_HAND_TEXT}, y 0.42..0.5; block x -0.15..0.15, y 0.58..0.68; goal x -0.2..0.2, y 0.75..0.85"),
    "drawer-open": MjxTask(
        "drawer-open", "drawer", "drawer.xml", (0.0, 0.45, 0.55, DRAWER_TRAVEL, 0.03), _drawer_layout,
        _drawer_observe, _drawer_evaluate,
        reward_text="2 * exp(-|fingertip - handle| / 0.1) + 8 * clip(1 - |handle - goal| / 0.15, 0, 1); "
                    "10 on success",
        success_text="handle within 3 cm of the goal (drawer open at least 12 of its 15 cm)",
        layout_text=f"{_HAND_TEXT}, y 0.45..0.55; drawer closed (cabinet fixed); goal: the handle 15 cm out"),
    "drawer-close": MjxTask(
        "drawer-close", "drawer", "drawer.xml", (DRAWER_TRAVEL, 0.38, 0.45, 0.0, 0.02), _drawer_layout,
        _drawer_observe, _drawer_evaluate,
        reward_text="2 * exp(-|fingertip - handle| / 0.1) + 8 * clip(1 - |handle - goal| / 0.15, 0, 1); "
                    "10 on success",
        success_text="handle within 2 cm of the goal (drawer open less than 2 cm)",
        layout_text=f"{_HAND_TEXT}, y 0.38..0.45; drawer 15 cm open (cabinet fixed); goal: the closed handle"),
}
assert all(t.name == k for k, t in TASKS.items()) and STATE_DIM == 15
