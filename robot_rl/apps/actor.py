"""``robot-rl actor``: the robot PC's half of learning on the robot (CPU, at the control rate).

Each control period: take the newest weights the learner pushed (``robot_rl.ros.dds.learning``), decide the action
- a person's teleop input while it is held (``robot_rl.ros.teleop``: an intervention), else the policy (stochastic,
to explore), else, before any weights ever arrived, the hold command (zero / current position) - and send it
through ``RosEnv``, i.e. through the same ``SafetyGate`` in every case. The step's transition goes to the spool on
disk at once and from there to the learner until acked; each episode also goes to ``record`` (HDF5, with
``interventions``) when it ends.

Weights: the newest message wins; it is also kept in the spool folder, so an actor restarted while the learner is
away acts on the last weights at once. If the learner goes away, the actor keeps acting on what it has.

Episodes are ``episode_steps`` long (then the robot's reset handshake, ``DdsTransport.reset``); the reward of a step
is the robot's success signal (``std_msgs/Bool`` on ``success_topic``: a success-detector node on a real robot, the
simulator's flag for ``robot_rl.envs.sim_robot``) after the step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.apps.learning_config import ActorConfig
from robot_rl.core import EnvSpec
from robot_rl.data import DatasetWriter, Episode
from robot_rl.envs.ros_env import RosEnv
from robot_rl.envs.sim_robot import state_joint_names
from robot_rl.ros.control import ControlConfig, ObservationConfig
from robot_rl.ros.dds.learning import HOLD, HUMAN, POLICY, ActorLink, RowLayout, Spool
from robot_rl.ros.dds.msgs import Bool, Joy, Twist, dds_types
from robot_rl.ros.dds.qos import DEFAULT, SENSOR_DATA
from robot_rl.ros.dds.transport import DdsTopics, DdsTransport
from robot_rl.ros.safety import SafetyConfig
from robot_rl.ros.teleop import TELEOP, Teleop

SUCCESS = "success"
"""Cache key of the success signal."""


def robot_spec(spec: EnvSpec) -> EnvSpec:
    """The policy's spec as the robot gives it: the ``"state"`` observation only, episodes ended by the actor."""
    return dataclasses.replace(spec, observations={"state": spec.observations["state"]}, max_episode_steps=2**31)


@dataclass
class _EpisodeBuffer:
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def episode(self) -> Episode:
        r = self.rows
        t = len(r)
        dones = np.zeros(t, bool)
        dones[-1] = True
        versions = [row["version"] for row in r]
        return Episode(states=np.stack([row["obs"] for row in r]), actions=np.stack([row["action"] for row in r]),
                       rewards=np.full(t, np.nan, np.float32), next_states=np.stack([row["next_obs"] for row in r]),
                       terminals=np.zeros(t, bool), dones=dones,
                       successes=np.array([row["success"] for row in r], bool),
                       interventions=np.array([row["source"] == HUMAN for row in r], bool),
                       attrs={"holds": sum(row["source"] == HOLD for row in r),
                              "refused": sum(not row["commanded"] for row in r),
                              "weights_version_min": min(versions), "weights_version_max": max(versions)})


class Actor:
    """One robot's actor (see the module docstring). ``step_once`` is one control period."""

    def __init__(self, spec: EnvSpec, cfg: ActorConfig, spool_dir: Path, record: Path | None = None,
                 domain_id: int | None = None, namespace: str = "", joints: tuple[str, ...] = (),
                 log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)):
        self.spec, self.cfg, self.log = robot_spec(spec), cfg, log
        recorded = dataclasses.replace(self.spec, max_episode_steps=cfg.episode_steps)
        self.writer = DatasetWriter(record, recorded, "robot-rl actor", resume=True) if record else None
        joints = joints or state_joint_names(spec.state_dim)
        self.transport = DdsTransport(DdsTopics(), "float64_array", domain_id=domain_id, namespace=namespace,
                                      reset_timeout_s=30.0, discovery_timeout_s=30.0)
        teleop = cfg.teleop_config()
        self.teleop = Teleop(teleop, spec.action.dim) if teleop else None
        if teleop is not None:
            self.transport.subscribe(TELEOP, teleop.topic, Twist if teleop.source == "twist" else Joy, SENSOR_DATA)
        self.transport.subscribe(SUCCESS, cfg.success_topic, Bool, DEFAULT)
        control = ControlConfig(ObservationConfig(joints), command_kind="float64_array", control_rate_hz=cfg.rate_hz,
                                safety=SafetyConfig(max_obs_age_s=cfg.max_obs_age_s))
        self.env = RosEnv(self.spec, self.transport, control, dds_types(), reset_timeout_s=30.0)
        self.layout = RowLayout(spec.state_dim, spec.action.dim)
        actor_id = f"actor{os.getpid()}x{time.time_ns() % 10**12}"
        self.link = ActorLink(self.transport.participant, Spool(spool_dir, self.layout, actor_id), cfg.batch_rows,
                              resend_s=cfg.resend_s)
        self.policy: Any = None
        self.version = -1
        self.generator = torch.Generator().manual_seed(cfg.seed)
        cached = self.link.spool.load_weights()
        if cached is not None:
            self._take_weights(cached, "the spool's last weights")
        self.episodes: list[dict[str, Any]] = []
        self.steps = 0

    def _take_weights(self, data: bytes, where: str) -> bool:
        from robot_rl.apps.policy_weights import decode_weights

        try:
            version, updates, policy = decode_weights(data)
            policy.check_spec(self.spec)
        except ValueError as e:
            self.log(f"actor: ignoring {where}: {e}; keeping weights v{self.version}")
            return False
        if version != self.version:
            self.log(f"actor: acting on weights v{version} ({updates} updates) from {where}")
        self.policy, self.version = policy, version
        return True

    def _receive(self) -> None:
        msg = self.link.pump()
        if msg is not None and int(msg.seq) != self.version and self._take_weights(bytes(msg.data), "the learner"):
            self.link.spool.save_weights(bytes(msg.data))

    def run_episode(self, seed: int, stop: Callable[[], bool]) -> dict[str, Any] | None:
        """One episode (or less, if ``stop`` turns true); returns its summary, ``None`` if stopped before a step."""
        obs, _ = self.env.reset(seed=seed)
        buffer = _EpisodeBuffer()
        period = 1.0 / self.cfg.rate_hz
        for t in range(self.cfg.episode_steps):
            if stop():
                break
            self._receive()
            override = self.teleop.action(self.env.cache.get(TELEOP), self.transport.now()) if self.teleop else None
            if override is not None:
                action, source = torch.from_numpy(override)[None], HUMAN
            elif self.policy is None:
                action, source = self.env.hold_action(), HOLD
            else:
                action = self.policy(obs, deterministic=self.cfg.deterministic, generator=self.generator)
                source = POLICY
            started = time.monotonic()
            res = self.env.step(action.float())
            success_msg = self.env.cache.get(SUCCESS)
            success = bool(success_msg.data) if success_msg is not None else False
            last = t == self.cfg.episode_steps - 1
            state, next_state = obs["state"][0].numpy(), res.obs["state"][0].numpy()
            commanded = bool(res.info["commanded"][0])
            self.link.record(self.layout.pack(state, action[0].numpy(), next_state, float(success), False, last,
                                              source, commanded, max(self.version, 0)))
            buffer.rows.append({"obs": state, "action": action[0].numpy().astype(np.float32),
                                "next_obs": next_state, "success": success, "source": source,
                                "commanded": commanded, "version": self.version})
            self.steps += 1
            obs = res.obs
            if time.monotonic() - started > 3 * period:
                self._receive()  # keep acks flowing even when the loop runs late
        if not buffer.rows:
            return None
        self.link.spool.seal()
        episode = buffer.episode()
        if self.writer is not None:
            self.writer.add_episode(episode)
        summary = {"steps": episode.length, "success": bool(np.any(episode.successes)),
                   "interventions": episode.num_interventions, "holds": episode.attrs["holds"],
                   "refused": episode.attrs["refused"], "weights_version": self.version}
        self.episodes.append(summary)
        self.log(f"actor: episode {len(self.episodes)}: {json.dumps(summary)}; spooled {self.link.spool.recorded}, "
                 f"acked batches {self.link.acked}, pending {len(self.link.spool.pending())}")
        return summary

    def run(self, stop: Callable[[], bool] = lambda: False, status: Path | None = None) -> list[dict[str, Any]]:
        seed = self.cfg.seed
        while not stop() and (not self.cfg.episodes or len(self.episodes) < self.cfg.episodes):
            self.run_episode(seed, stop)
            seed += 1
            if status is not None:
                self.write_status(status)
        return self.episodes

    def drain(self, timeout_s: float) -> int:
        """Keep sending until every spooled batch is acked or ``timeout_s`` passes; returns batches still pending."""
        self.link.spool.seal()
        deadline = time.monotonic() + timeout_s
        while self.link.spool.pending() and time.monotonic() < deadline:
            self._receive()
            self.transport.participant.wait(0.05)
        return len(self.link.spool.pending())

    def write_status(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"episodes": self.episodes, "steps": self.steps, "spooled": self.link.spool.recorded,
                                   "acked_batches": self.link.acked, "pending": len(self.link.spool.pending()),
                                   "weights_version": self.version}))
        tmp.replace(path)

    def close(self) -> None:
        self.link.spool.close()
        if self.writer is not None:
            self.writer.close()
        self.env.close()
        self.transport.close()
