"""Reset-free fine-tuning on the robot: ``robot_rl.rl.reset_free`` over ``RosEnv``, a person's teleop as the resets.

The reset-free loop (forward and backward policy in turns, each judged by its success signal, e.g. a success
classifier run folder) runs unchanged on a :class:`~robot_rl.envs.reset_free.RobotEnvBackend`; this module supplies
what a robot needs around it:

- :class:`TeleopReset`, the backend's ``on_intervention``: when the loop is stuck it says so on stderr and hands the
  robot to the person: each control period their teleop input (``robot_rl.ros.teleop``) is sent through the env,
  i.e. through the same ``SafetyGate``; without input the gate's hold command goes out. It returns once the person
  has taken over and then let go for ``settle_s``; nobody within ``timeout_s`` is a one-line ``TimeoutError``.
  The backend then ``reset()``s the env (the robot's start pose).
- :class:`RecordingEnv`, the robot's own recorder around the env: every step the robot executed, the loop's and
  the person's, goes to an HDF5 dataset (``interventions`` flags the person's steps), committed every
  ``chunk_steps`` steps and at every reset, so a crash loses at most one chunk.

No ROS 2 graph ran here: the test drives it over loopback DDS against ``robot_rl.envs.sim_robot`` and the scripted
operator ``robot_rl.envs.sim_operator``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.core import EnvSpec, SuccessSignal
from robot_rl.core.env import Obs, StepResult
from robot_rl.data import DatasetWriter, Episode
from robot_rl.envs.reset_free import RobotEnvBackend
from robot_rl.envs.ros_env import RosEnv
from robot_rl.rl.reset_free import ResetFreeConfig, ResetFreeResult, reset_free_finetune
from robot_rl.ros.teleop import TELEOP, Teleop, TeleopConfig


class RecordingEnv:
    """A one-robot ``RosEnv`` that writes every step to ``path`` (see the module docstring)."""

    num_envs = 1

    def __init__(self, env: RosEnv, path: Path, chunk_steps: int = 200):
        self.env, self.spec, self.device, self.chunk_steps = env, env.spec, env.device, chunk_steps
        self.writer = DatasetWriter(path, env.spec, "robot-rl reset-free (robot recorder)", resume=True)
        self.intervening = False
        """Set by ``TeleopReset`` while the person drives: those steps are flagged as interventions."""
        self._rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool, bool]] = []
        self._obs: Obs | None = None
        self.recorded = 0

    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        self.commit()
        self._obs, info = self.env.reset(seed=seed)
        return self._obs, info

    def step(self, action: torch.Tensor) -> StepResult:
        res = self.env.step(action)
        if self._obs is not None:
            after = res.info.get("final_obs", res.obs)
            self._rows.append((self._obs["state"][0].numpy(), action[0].float().cpu().numpy(),
                               after["state"][0].numpy(), self.intervening, bool(res.info["commanded"][0])))
            self.recorded += 1
        self._obs = res.obs
        if len(self._rows) >= self.chunk_steps:
            self.commit()
        return res

    def commit(self) -> None:
        """Write the steps since the last commit as one episode."""
        if not self._rows:
            return
        t = len(self._rows)
        dones = np.zeros(t, bool)
        dones[-1] = True
        self.writer.add_episode(Episode(
            states=np.stack([r[0] for r in self._rows]), actions=np.stack([r[1] for r in self._rows]),
            rewards=np.full(t, np.nan, np.float32), next_states=np.stack([r[2] for r in self._rows]),
            terminals=np.zeros(t, bool), dones=dones, interventions=np.array([r[3] for r in self._rows]),
            attrs={"refused": sum(not r[4] for r in self._rows)}))
        self._rows = []

    def close(self) -> None:
        """Commit what is left and close the dataset (the caller's, after the run); the transport stays open."""
        if self.writer is not None:
            self.commit()
            self.writer.close()
            self.writer = None  # type: ignore[assignment]
        self.env.close()


class TeleopReset:
    """``on_intervention`` of a ``RobotEnvBackend`` over a :class:`RecordingEnv`: the person drives until done."""

    def __init__(self, env: RecordingEnv, teleop: Teleop, settle_s: float = 0.5, timeout_s: float = 120.0,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)):
        self.env, self.teleop, self.settle_s, self.timeout_s, self.log = env, teleop, settle_s, timeout_s, log
        self.requests = 0
        self.steps = 0
        """Steps the person drove, over all interventions."""

    def __call__(self, direction: str, reason: str) -> None:
        self.requests += 1
        ros = self.env.env
        self.log(f"reset-free: help needed before the {direction} policy acts ({reason}): take over with the "
                 f"teleop input, let go when the scene is right")
        started = time.monotonic()
        touched, released_at = False, 0.0
        try:
            while True:
                override = self.teleop.action(ros.cache.get(TELEOP), ros.transport.now())
                if override is not None:
                    touched, released_at = True, 0.0
                    self.env.intervening = True
                    self.env.step(torch.from_numpy(override)[None])
                    self.steps += 1
                    continue
                self.env.intervening = False
                if touched:
                    released_at = released_at or time.monotonic()
                    if time.monotonic() - released_at >= self.settle_s:
                        self.log(f"reset-free: the person let go after {self.steps} steps in total; resuming")
                        return
                elif time.monotonic() - started > self.timeout_s:
                    raise TimeoutError(f"reset-free: nobody took over within {self.timeout_s} s of the request "
                                       f"({reason}); is the teleop input on '{self.teleop.config.topic}'?")
                self.env.step(ros.hold_action())  # keep still (and the observation fresh) while waiting
        finally:
            self.env.intervening = False


def robot_backend(env: RecordingEnv, teleop: Teleop, settle_s: float = 0.5, timeout_s: float = 120.0
                  ) -> tuple[RobotEnvBackend, TeleopReset]:
    """The reset-free backend of the robot of ``env``, the person's teleop (``TeleopReset``) as its interventions."""
    on_intervention = TeleopReset(env, teleop, settle_s, timeout_s)
    return RobotEnvBackend(env, on_intervention, control_hz=env.env.config.control_rate_hz), on_intervention


def robot_reset_free(forward: Path, backward: Path, env: RecordingEnv, teleop: Teleop,
                     signals: tuple[SuccessSignal, SuccessSignal], cfg: ResetFreeConfig, run_dir: Path,
                     settle_s: float = 0.5, timeout_s: float = 120.0) -> tuple[ResetFreeResult, TeleopReset]:
    """Run ``reset_free_finetune`` on the robot of ``env`` with the person's teleop as its interventions; close
    ``env`` after (its recorder commits the last steps then)."""
    backend, on_intervention = robot_backend(env, teleop, settle_s, timeout_s)
    return reset_free_finetune(forward, backward, backend, signals, cfg, run_dir), on_intervention


class RobotLink:
    """The robot of ``finetune --reset-free --robot``: one DDS participant speaking ROS 2's wire conventions
    (``robot_rl.ros.dds``), the policy's ``RosEnv`` behind the safety gate, the teleop subscription and the
    recorder, set up as ``robot-rl actor`` sets up its robot. ``close()`` commits the recorder and leaves the
    participant."""

    def __init__(self, spec: EnvSpec, record: Path, teleop: TeleopConfig, rate_hz: float, max_obs_age_s: float,
                 domain_id: int | None = None, namespace: str = "", joints: tuple[str, ...] = ()) -> None:
        from robot_rl.apps.actor import robot_spec
        from robot_rl.envs.sim_robot import state_joint_names
        from robot_rl.ros.control import ControlConfig, ObservationConfig
        from robot_rl.ros.dds.msgs import Joy, Twist, dds_types
        from robot_rl.ros.dds.qos import SENSOR_DATA
        from robot_rl.ros.dds.transport import DdsTopics, DdsTransport
        from robot_rl.ros.safety import SafetyConfig

        spec = robot_spec(spec)
        self.transport = DdsTransport(DdsTopics(), "float64_array", domain_id=domain_id, namespace=namespace,
                                      reset_timeout_s=30.0, discovery_timeout_s=30.0)
        try:
            self.transport.subscribe(TELEOP, teleop.topic, Twist if teleop.source == "twist" else Joy, SENSOR_DATA)
            control = ControlConfig(ObservationConfig(joints or state_joint_names(spec.state_dim)),
                                    command_kind="float64_array", control_rate_hz=rate_hz,
                                    safety=SafetyConfig(max_obs_age_s=max_obs_age_s))
            self.env = RecordingEnv(RosEnv(spec, self.transport, control, dds_types(), reset_timeout_s=30.0), record)
        except BaseException:
            self.transport.close()
            raise
        self.teleop = Teleop(teleop, spec.action.dim)

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            self.transport.close()
