"""MJX tasks: MuJoCo's JAX port, batched on the accelerator, behind the ``SimEnv`` tensor interface.

    env = make_env("mjx/drawer-open", num_envs=1024, device="cuda")    # JAX steps, torch reads (DLPack)

Tasks (project-owned MJCF under ``assets/``, primitive collision geometry only, because MetaWorld's mesh scenes
do not fit MJX): ``mjx/reach``, ``mjx/push``, ``mjx/drawer-open``, ``mjx/drawer-close``. One gripper (three slide
joints, position servos) and one ``"state"`` layout for all of them (``STATE_SLICES``); scripted experts in
``experts``. This module and ``experts`` import no JAX: ``env`` (the class) and ``tasks`` do, on the first
``make_env("mjx/...")``. On a CPU, MJX serves tests (a few thousand env-steps/s); it is built for the GPU.
"""

from __future__ import annotations

from robot_rl.core.specs import StateSlice

TASK_NAMES = ("reach", "push", "drawer-open", "drawer-close")
HAND_BASE = (0.0, 0.6, 0.15)
"""World position of the gripper body at zero joint positions (``gripper`` body ``pos`` in every scene)."""
STATE_DIM = 15
STATE_SLICES = (
    StateSlice("hand_pos", 0, 3, "m", "world", "fingertip centre (a 12 mm sphere at the gripper's tip)"),
    StateSlice("hand_vel", 3, 6, "m/s", "world", "fingertip velocity"),
    StateSlice("obj_pos", 6, 9, "m", "world", "object: push: block centre; drawer: handle bar centre; "
                                              "reach: zeros (no object)"),
    StateSlice("obj_vel", 9, 12, "m/s", "world", "object velocity (zeros in reach)"),
    StateSlice("goal_pos", 12, 15, "m", "world", "goal: reach: fingertip target; push: block target (z = block "
                                                 "centre height); drawer: where the handle must go"),
)

__all__ = ["HAND_BASE", "STATE_DIM", "STATE_SLICES", "TASK_NAMES"]
