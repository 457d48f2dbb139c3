"""Reset-free fine-tuning on the robot (``robot_rl.apps.robot_reset_free``): the reset-free loop over ``RosEnv`` on
loopback DDS against a simulated robot process, a success classifier (``robot-rl train-success``) as both signals,
a scripted operator's teleop as the interventions, and the robot's recorder holding every step it executed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs the dds extra")

from robot_rl.apps.actor import robot_spec  # noqa: E402
from robot_rl.apps.robot_reset_free import RecordingEnv, robot_reset_free  # noqa: E402
from robot_rl.cli.main import main  # noqa: E402
from robot_rl.core import EnvSpec  # noqa: E402
from robot_rl.data.reader import Dataset  # noqa: E402
from robot_rl.envs.ros_env import RosEnv  # noqa: E402
from robot_rl.envs.sim_robot import state_joint_names  # noqa: E402
from robot_rl.nn.checkpoint import load_checkpoint  # noqa: E402
from robot_rl.rewards.signals import resolve_success_signal  # noqa: E402
from robot_rl.rl.reset_free import ResetFreeConfig  # noqa: E402
from robot_rl.ros.control import ControlConfig, ObservationConfig  # noqa: E402
from robot_rl.ros.dds.msgs import Twist, dds_types  # noqa: E402
from robot_rl.ros.dds.qos import SENSOR_DATA, loopback_config  # noqa: E402
from robot_rl.ros.dds.transport import DdsTopics, DdsTransport  # noqa: E402
from robot_rl.ros.safety import SafetyConfig  # noqa: E402
from robot_rl.ros.teleop import TELEOP, Teleop, TeleopConfig  # noqa: E402
from tests.apps.procs import TASK, Procs, read_json, wait_for  # noqa: E402


def test_reset_free_over_ros_env_with_teleop_resets_and_a_recorder(offline_run: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = tmp_path / "success"
    assert main(["train-success", "--dataset", str(offline_run.parent / "d.h5"), "--out", str(classifier),
                 "--device", "cpu", "--steps", "30"]) == 0
    domain = 100 + (os.getpid() * 19 + 7) % 130
    monkeypatch.setenv("CYCLONEDDS_URI", loopback_config())
    procs = Procs(tmp_path, domain)
    robot_stats = tmp_path / "robot.json"
    spec = robot_spec(EnvSpec.from_json(load_checkpoint(offline_run)[0]["env_spec"]))
    try:
        procs.start("robot", ["-m", "robot_rl.envs.sim_robot", "--task", TASK, "--rate", "20", "--stats",
                              str(robot_stats)])
        procs.start("operator", ["-m", "robot_rl.envs.sim_operator", "--task", TASK, "--on", "0.6", "--off", "1.5"])
        wait_for("the robot", lambda: "ready" in procs.log("robot"), 60, procs)
        transport = DdsTransport(DdsTopics(), "float64_array", domain_id=domain, reset_timeout_s=30)
        transport.subscribe(TELEOP, "teleop", Twist, SENSOR_DATA)
        control = ControlConfig(ObservationConfig(state_joint_names(39)), command_kind="float64_array",
                                control_rate_hz=20, safety=SafetyConfig(max_obs_age_s=0.5))
        env = RecordingEnv(RosEnv(spec, transport, control, dds_types(), reset_timeout_s=30), tmp_path / "rec.h5",
                           chunk_steps=25)
        signal = resolve_success_signal(f"classifier:{classifier}", "forward", spec)
        cfg = ResetFreeConfig(steps=40, attempt_time_limit=6, stuck_attempts=2, warmup_steps=10,
                              critic_warmup_updates=5, updates_per_step=0.5, log_every=20, eval_episodes=0)
        try:
            res, person = robot_reset_free(offline_run, offline_run, env, Teleop(TeleopConfig(
                "twist", axes=(0, 1, 2, 5)), 4), (signal, signal), cfg, tmp_path / "run", settle_s=0.2,
                timeout_s=30)
        finally:
            env.close()
            transport.close()
        assert procs.stop("robot") == 0
        procs.stop("operator")
    finally:
        procs.close()
    robot = read_json(robot_stats)
    assert res.steps == 40 and res.interventions >= 1 and person.requests == res.interventions
    assert person.steps > 0  # the person drove the robot at each request
    with Dataset(tmp_path / "rec.h5") as ds:
        episodes = [ds.load_episode(n) for n in ds.episode_names]
    flags = np.concatenate([ep.interventions for ep in episodes])
    refused = sum(int(ep.attrs["refused"]) for ep in episodes)
    assert len(flags) == env.recorded >= res.steps + person.steps  # and the holds while waiting for the person
    assert int(flags.sum()) == person.steps  # the person's steps, flagged
    assert len(flags) - refused == robot["commands"]  # every command the robot executed is recorded
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["signals"] == ["success_classifier", "success_classifier"] and summary["has_ground_truth"] == [
        False, False]
