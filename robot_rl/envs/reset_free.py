"""Backends for reset-free training: one world, two tasks (forward / backward), no resets between attempts.

The reset-free loop (``robot_rl.rl.reset_free``) drives a backend through ``start``, ``observe(direction)``,
``step(direction, action)``, ``ground_truth_success(direction)``, ``stuck_reason()`` and
``intervene(direction, reason)``. Two backends live here:

- :class:`MetaWorldPairBackend`: a MetaWorld task pair whose two tasks load the same MuJoCo model and draw the
  same layout (``drawer``: drawer-open-v3 / drawer-close-v3, both ``sawyer_drawer.xml``; ``door``:
  door-open-v3 / door-close-v3, both ``sawyer_door_pull.xml``). It keeps one ``MetaWorldEnv`` per task, so
  each policy sees observations in its own task's layout (the goal in ``state[36:39]`` and the object
  conventions differ: drawer-open's handle is 5 cm lower than drawer-close's). At a hand-off the physical
  state (MuJoCo ``mj_getState``: qpos, qvel, mocap target, warmstart) and the layout move to the other env,
  and the previous frame (``state[18:36]``) is recomputed in the new task's convention from the physics of one
  step earlier, so the new observation is exactly what that task's env would report there. Interventions
  (the harness standing in for a person) restore a fresh start state of the given direction's task.
- :class:`MjxPairBackend`: ``mjx-drawer`` (``mjx/drawer-open`` / ``mjx/drawer-close``, one scene and one sim-state
  layout): at a hand-off the sim row moves to the other task's env with that task's goal marker.
- :class:`RobotEnvBackend`: any ``RobotEnv`` with ``num_envs == 1`` that cannot save state (``RosEnv``): both
  policies act in the same env, there is no ground truth, and an intervention calls a callback that blocks
  until a person has fixed the scene, then ``reset()``s the env (on a ``RosEnv``: the transport's start pose).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from robot_rl.core import EnvSpec, RobotEnv
from robot_rl.core.env import Obs

DIRECTIONS = ("forward", "backward")
PAIRS: dict[str, tuple[str, str]] = {
    "drawer": ("drawer-open-v3", "drawer-close-v3"),
    "door": ("door-open-v3", "door-close-v3"),
}
"""Named task pairs: (forward task, backward task), MetaWorld v3 names."""
MJX_PAIRS: dict[str, tuple[str, str]] = {"mjx-drawer": ("mjx/drawer-open", "mjx/drawer-close")}
"""Named MJX task pairs (``MjxPairBackend``)."""
ROBOT_JOINT_PREFIXES = ("right_j", "r_close", "l_close")
"""MetaWorld's Sawyer: the arm's seven joints and the two finger joints (every other joint is an object's)."""
_NO_LIMIT = 2**31 - 1
"""Episode length of the harness envs: the loop, not the env, ends attempts; the envs never autoreset."""


def resolve_pair(pair: str) -> tuple[str, str]:
    """``drawer``, ``door``, or ``FORWARD_TASK:BACKWARD_TASK`` (MetaWorld v3 names, ``metaworld/`` optional)."""
    if pair in PAIRS:
        return PAIRS[pair]
    parts = [p.strip().removeprefix("metaworld/") for p in pair.split(":")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"task pair '{pair}': expected one of {', '.join(PAIRS)} or FORWARD_TASK:BACKWARD_TASK")
    return parts[0], parts[1]


class _SimPair:
    """What both simulated pair backends share: the task names, the env that holds the world, evaluation envs,
    and the arm's move home between attempts."""

    names: tuple[str, str]
    envs: tuple[Any, ...]
    _holder: int
    _eval_envs: dict[int, RobotEnv]
    homes = 0
    """Times the arm was sent home (``home()``)."""

    def _reset(self, direction: int, seed: int | None) -> Obs:
        raise NotImplementedError


    def start(self, direction: int, seed: int | None = None) -> Obs:
        """Begin in a start state of ``direction``'s task (its standard reset; not an intervention)."""
        return self._reset(direction, seed)

    def intervene(self, direction: int, reason: str) -> Obs:
        """Put the world in a fresh start state of ``direction``'s task (a new layout from the harness's seed)."""
        return self._reset(direction, None)

    def get_world_state(self) -> torch.Tensor:
        """float64 ``[1, S]``: the world's sim state, in the layout of the env that holds it."""
        return self.envs[self._holder].get_sim_state()

    def sim_state(self, direction: int) -> torch.Tensor:
        """float64 ``[1, S]``: the world's sim state in ``direction``'s layout (what its next step starts from; frames
        of online preference queries are rendered from it)."""
        self._sync(direction)  # type: ignore[attr-defined]
        return self.envs[direction].get_sim_state()

    def make_eval_env(self, direction: int) -> RobotEnv:
        """A standard (resetting) env of ``direction``'s task with its card's episode length, for evaluation."""
        if direction not in self._eval_envs:
            from robot_rl.envs import make_env

            self._eval_envs[direction] = make_env(self.names[direction])
        return self._eval_envs[direction]

    def close(self) -> None:
        for env in [*getattr(self, "envs", ()), *getattr(self, "_eval_envs", {}).values()]:
            env.close()


class MetaWorldPairBackend(_SimPair):
    """Two MetaWorld tasks on one shared world; see the module docstring. ``seed`` seeds the layouts of the
    start state and of every intervention."""

    can_save_state = True

    def __init__(self, pair: str, seed: int = 0, cameras: tuple[str, ...] = (),
                 image_size: tuple[int, int] = (128, 128), reach_margin: float = 0.1) -> None:
        from robot_rl.envs.metaworld_env import MetaWorldEnv, task_names
        from robot_rl.envs.task_cards import load_task_card

        tasks = resolve_pair(pair)
        for t in tasks:
            if t not in task_names():
                raise ValueError(f"task pair '{pair}': unknown MetaWorld v3 task '{t}'")
        cards = [load_task_card(t) for t in tasks]
        self.pair = pair
        self.tasks = tasks
        self.names: tuple[str, str] = (f"metaworld/{tasks[0]}", f"metaworld/{tasks[1]}")
        self.envs = tuple(MetaWorldEnv(t, 1, cameras=cameras, image_size=image_size, episode_length=_NO_LIMIT,
                                       task_text=c.task_text if c else "") for t, c in zip(tasks, cards, strict=True))
        a, b = (e._instances[0].env for e in self.envs)
        problems = []
        if a.model_name != b.model_name:
            problems.append(f"models differ ({a.model_name.rsplit('/', 1)[-1]} vs {b.model_name.rsplit('/', 1)[-1]})")
        elif not (np.array_equal(a._random_reset_space.low, b._random_reset_space.low)
                  and np.array_equal(a._random_reset_space.high, b._random_reset_space.high)):
            problems.append("their layouts (object placement ranges) differ")
        if problems:
            self.close()
            raise ValueError(f"task pair '{pair}': {tasks[0]} and {tasks[1]} cannot share one world: {problems[0]}")
        self.specs: tuple[EnvSpec, EnvSpec] = (self.envs[0].spec, self.envs[1].spec)
        lengths = [c.episode_length if c else 150 for c in cards]
        self.episode_lengths: tuple[int, int] = (lengths[0], lengths[1])
        self.control_hz = float(self.specs[0].control_hz)
        """MetaWorld's control rate: 1 / (frame_skip * timestep) = 80 Hz of simulated time."""
        self._phys = self.envs[0]._phys_dim
        self._success_index = [row[0] for row in self.specs[0].extras["privileged"]].index("success")
        self._rng = np.random.default_rng(seed)
        self._reach_low = np.asarray(a.mocap_low) - reach_margin
        self._reach_high = np.asarray(a.mocap_high) + reach_margin
        self._holder = 0
        self._synced = [False, False]
        self._obs: list[Obs | None] = [None, None]
        self._prev_row: np.ndarray | None = None
        self._eval_envs: dict[int, RobotEnv] = {}
        self.handoffs = 0
        model = self.envs[0]._instances[0].model
        robot = [j for j in range(model.njnt) if model.joint(j).name.startswith(ROBOT_JOINT_PREFIXES)]
        self._robot_qpos = np.array([model.jnt_qposadr[j] for j in robot])
        self._robot_dofs = np.array([model.jnt_dofadr[j] for j in robot])
        self._home: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------------------------- backend API
    def observe(self, direction: int) -> Obs:
        """The current world in ``direction``'s observation layout (a hand-off if the other env holds it)."""
        self._sync(direction)
        obs = self._obs[direction]
        assert obs is not None
        return obs

    def step(self, direction: int, action: torch.Tensor) -> tuple[Obs, dict[str, Any]]:
        """One control step of ``direction``'s env; ``info["success"]`` bool ``[1]`` is that task's ground truth
        (``info["reward"]`` its reward, for the scripted teacher only)."""
        self._sync(direction)
        env = self.envs[direction]
        before = env.get_sim_state()[0].numpy()
        res = env.step(action)
        self._prev_row = before
        self._holder = direction
        self._synced = [direction == 0, direction == 1]
        self._obs[direction] = res.obs
        return res.obs, {"success": res.info["success"], "sim_state": res.info["sim_state"], "reward": res.reward}

    def ground_truth_success(self, direction: int) -> bool:
        """Whether ``direction``'s task is solved in the current world (the simulator's success flag)."""
        return bool(self.observe(direction)["privileged"][0, self._success_index] > 0.5)

    def stuck_reason(self) -> str | None:
        """Why the world needs a person regardless of attempts: an object out of the hand's reach, NaN physics."""
        state = self.observe(self._holder)["state"][0].numpy()
        if not np.isfinite(state).all():
            return "the simulation state is not finite"
        obj = state[4:7]
        if (obj < self._reach_low).any() or (obj > self._reach_high).any():
            return f"the object at {np.round(obj, 3).tolist()} is out of the hand's reach"
        return None

    # ------------------------------------------------------------------------------------ internals
    def _reset(self, direction: int, seed: int | None) -> Obs:
        if seed is None:
            seed = int(self._rng.integers(2**31 - 1))
        obs, _ = self.envs[direction].reset(seed=seed)
        self._holder = direction
        self._synced = [direction == 0, direction == 1]
        self._obs[direction] = obs
        self._prev_row = None
        data = self.envs[direction]._instances[0].data
        self._home = (data.qpos[self._robot_qpos].copy(), data.mocap_pos.copy(), data.mocap_quat.copy())
        return obs

    def home(self) -> None:
        """Put the robot (arm joints, gripper, mocap target) back in the pose of the last start state, at rest,
        leaving every object where it is: the simulated stand-in for a robot moving home on its own between attempts
        (on a real arm, a planned move that avoids the scene). A scripted path through the physics was tried first
        and knocked MetaWorld's open drawer 5 cm shut on the way out of the handle."""
        import mujoco

        from robot_rl.envs.mujoco_batch import SIM_STATE_FLAGS

        if self._home is None:
            raise RuntimeError("home(): no start state yet (call start() first)")
        env = self.envs[self._holder]
        inst = env._instances[0]
        qpos, mocap_pos, mocap_quat = self._home
        inst.data.qpos[self._robot_qpos] = qpos
        inst.data.qvel[self._robot_dofs] = 0.0
        inst.data.mocap_pos[:], inst.data.mocap_quat[:] = mocap_pos, mocap_quat
        mujoco.mj_forward(inst.model, inst.data)
        row = np.zeros(env.get_sim_state().shape[1])
        mujoco.mj_getState(inst.model, inst.data, row[:self._phys], SIM_STATE_FLAGS)
        rest = env.get_sim_state()[0].numpy()
        row[self._phys:] = rest[self._phys:]
        row[-1] = 1
        prev_obs = env.set_sim_state(torch.from_numpy(row[None].copy()))  # at rest: the previous frame is this one
        row[self._phys:self._phys + 18] = prev_obs["state"][0, :18].double().numpy()
        self._obs[self._holder] = env.set_sim_state(torch.from_numpy(row[None]))
        self._synced = [self._holder == 0, self._holder == 1]
        self._prev_row = None
        self.homes += 1

    def _sync(self, direction: int) -> None:
        """Hand the world to ``direction``'s env if it does not hold the current state."""
        if self._synced[direction]:
            return
        src, dst = self.envs[self._holder], self.envs[direction]
        row = src.get_sim_state()[0].numpy().copy()
        prev = (self._prev_row if self._prev_row is not None else row).copy()
        p = self._phys
        prev[-1] = row[-1] = 1  # episode step 1: observations are clipped like a step's, not a reset's
        prev_obs = dst.set_sim_state(torch.from_numpy(prev[None]))  # the previous frame, in dst's convention
        row[p:p + 18] = prev_obs["state"][0, :18].double().numpy()
        self._obs[direction] = dst.set_sim_state(torch.from_numpy(row[None]))
        self._synced[direction] = True
        self.handoffs += 1


def make_pair_backend(pair: str, seed: int = 0) -> MetaWorldPairBackend | MjxPairBackend:
    """The simulated reset-free backend for ``pair`` (a name in ``PAIRS`` or ``MJX_PAIRS``, or FORWARD:BACKWARD)."""
    if pair in MJX_PAIRS:
        return MjxPairBackend(pair, seed=seed)
    return MetaWorldPairBackend(pair, seed=seed)


class MjxPairBackend(_SimPair):
    """Two MJX tasks on one shared world (``MJX_PAIRS``): same scene, same sim-state layout, different goal.

    One ``MjxEnv`` per task (so each policy sees its own task's goal in ``goal_pos``); a hand-off copies the sim
    row to the other env and puts that task's goal marker in it. ``seed`` seeds every start state and intervention.
    """

    can_save_state = True

    def __init__(self, pair: str, seed: int = 0, cameras: tuple[str, ...] = (),
                 image_size: tuple[int, int] = (128, 128)) -> None:
        from robot_rl.envs.mjx.env import MjxEnv
        from robot_rl.envs.task_cards import load_task_card

        if pair not in MJX_PAIRS:
            raise ValueError(f"MJX task pair '{pair}': expected one of {', '.join(MJX_PAIRS)}")
        self.pair = pair
        self.names: tuple[str, str] = MJX_PAIRS[pair]
        cards = [load_task_card(n) for n in self.names]
        self.envs = tuple(MjxEnv(n.removeprefix("mjx/"), 1, cameras=cameras, image_size=image_size,
                                 episode_length=_NO_LIMIT, task_text=c.task_text if c else "")
                          for n, c in zip(self.names, cards, strict=True))
        self.specs: tuple[EnvSpec, EnvSpec] = (self.envs[0].spec, self.envs[1].spec)
        lengths = [c.episode_length if c else 100 for c in cards]
        self.episode_lengths: tuple[int, int] = (lengths[0], lengths[1])
        self.control_hz = float(self.specs[0].control_hz)
        layout = {row[0]: (row[1], row[2]) for row in self.specs[0].extras["sim_state_layout"]}
        self._goal_cols = slice(*layout["mocap_pos"])
        self._success_index = [row[0] for row in self.specs[0].extras["privileged"]].index("success")
        self._rng = np.random.default_rng(seed)
        first = [env.reset(seed=seed) for env in self.envs]
        self._goals = [info["sim_state"][0, self._goal_cols].clone() for _, info in first]
        self._obs: Obs = first[0][0]
        self._holder = 0
        self._synced = [True, False]
        self._eval_envs: dict[int, RobotEnv] = {}
        self.handoffs = 0
        self._qpos, self._qvel = layout["qpos"][0], layout["qvel"][0]
        self._home = first[0][1]["sim_state"][0, self._qpos:self._qpos + 3].clone()

    def observe(self, direction: int) -> Obs:
        self._sync(direction)
        return self._obs

    def step(self, direction: int, action: torch.Tensor) -> tuple[Obs, dict[str, Any]]:
        self._sync(direction)
        res = self.envs[direction].step(action)
        self._obs = res.obs
        return res.obs, {"success": res.info["success"], "sim_state": res.info["sim_state"], "reward": res.reward}

    def ground_truth_success(self, direction: int) -> bool:
        return bool(self.observe(direction)["privileged"][0, self._success_index] > 0.5)

    def stuck_reason(self) -> str | None:
        """Only non-finite physics: the drawer cannot leave the gripper's reach."""
        if not bool(torch.isfinite(self.observe(self._holder)["state"]).all()):
            return "the simulation state is not finite"
        return None

    def _reset(self, direction: int, seed: int | None) -> Obs:
        if seed is None:
            seed = int(self._rng.integers(2**31 - 1))
        self._obs, _ = self.envs[direction].reset(seed=seed)
        self._holder = direction
        self._synced = [direction == 0, direction == 1]
        self._home = self.envs[direction].get_sim_state()[0, self._qpos:self._qpos + 3].clone()
        return self._obs

    def home(self) -> None:
        """Put the hand (its three slide joints) back where the last start state had it, at rest, leaving the drawer
        where it is (the simulated stand-in for a robot moving home between attempts)."""
        env = self.envs[self._holder]
        row = env.get_sim_state().clone()
        row[0, self._qpos:self._qpos + 3] = self._home  # qpos: hand x, y, z, then the drawer
        row[0, self._qvel:self._qvel + 3] = 0.0
        self._obs = env.set_sim_state(row)
        self.homes += 1
    def _sync(self, direction: int) -> None:
        if self._synced[direction]:
            return
        row = self.envs[self._holder].get_sim_state().clone()
        row[0, self._goal_cols] = self._goals[direction]
        self._obs = self.envs[direction].set_sim_state(row)
        self._holder = direction
        self._synced = [direction == 0, direction == 1]
        self.handoffs += 1


class RobotEnvBackend:
    """A ``RobotEnv`` with ``num_envs == 1`` and no saved state (``RosEnv``) as a reset-free backend.

    Both directions act in the same env and see the same observation layout. There is no ground truth
    (``ground_truth_success`` is ``None``). ``on_intervention(direction, reason)`` must block until a person has
    put the scene right for ``direction``; the env is then ``reset()`` (a ``RosEnv`` moves to its start pose and
    waits for a fresh observation). If the env resets itself (its ``max_episode_steps`` ran out), that is counted
    in ``self_resets`` and reported by the loop. ``stuck_check(obs)`` may flag a stuck scene (e.g. a person's
    button), else only the loop's attempt rule calls for help.
    """

    can_save_state = False

    def __init__(self, env: RobotEnv, on_intervention: Callable[[str, str], None],
                 stuck_check: Callable[[Obs], str | None] | None = None, control_hz: float | None = None) -> None:
        if env.num_envs != 1:
            raise ValueError(f"RobotEnvBackend '{env.spec.name}': needs num_envs == 1 (one robot), got {env.num_envs}")
        self.env = env
        self.names: tuple[str, str] = (env.spec.name, env.spec.name)
        self.specs = (env.spec, env.spec)
        self.episode_lengths: tuple[int, int] = (env.spec.max_episode_steps, env.spec.max_episode_steps)
        self.control_hz = float(control_hz or env.spec.control_hz)
        self.on_intervention = on_intervention
        self.stuck_check = stuck_check
        self.self_resets = 0
        self._obs: Obs | None = None

    def start(self, direction: int, seed: int | None = None) -> Obs:
        self._obs, _ = self.env.reset(seed=seed)
        return self._obs

    def observe(self, direction: int) -> Obs:
        if self._obs is None:
            raise RuntimeError(f"RobotEnvBackend '{self.env.spec.name}': call start() first")
        return self._obs

    def step(self, direction: int, action: torch.Tensor) -> tuple[Obs, dict[str, Any]]:
        res = self.env.step(action)
        self_reset = bool((res.terminated | res.truncated).any())
        self.self_resets += int(self_reset)
        self._obs = res.obs
        return res.obs, {"self_reset": self_reset}

    def ground_truth_success(self, direction: int) -> None:
        return None

    def stuck_reason(self) -> str | None:
        return self.stuck_check(self.observe(0)) if self.stuck_check is not None else None

    def intervene(self, direction: int, reason: str) -> Obs:
        self.on_intervention(DIRECTIONS[direction], reason)
        self._obs, _ = self.env.reset()
        return self._obs

    def make_eval_env(self, direction: int) -> None:
        return None

    def close(self) -> None:
        self.env.close()
