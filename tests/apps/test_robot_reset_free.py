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


@pytest.fixture(scope="module")
def classifier(offline_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("success") / "success"
    assert main(["train-success", "--dataset", str(offline_run.parent / "d.h5"), "--out", str(out),
                 "--device", "cpu", "--steps", "30"]) == 0
    return out


def test_reset_free_over_ros_env_with_teleop_resets_and_a_recorder(offline_run: Path, classifier: Path,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_finetune_reset_free_robot_command(offline_run: Path, classifier: Path, tmp_path: Path) -> None:
    """``robot-rl finetune --reset-free --robot`` as an engineer runs it: its own process, the robot and the person
    in theirs; the run ends on its own with the loop's steps done, the person's steps flagged in ``--record``,
    every command the robot executed recorded, and the report saying where it ran."""
    domain = 100 + (os.getpid() * 23 + 11) % 130
    procs = Procs(tmp_path, domain)
    robot_stats, record, run = tmp_path / "robot.json", tmp_path / "rec.h5", tmp_path / "run"
    try:
        procs.start("robot", ["-m", "robot_rl.envs.sim_robot", "--task", TASK, "--rate", "20", "--stats",
                              str(robot_stats)])
        procs.start("operator", ["-m", "robot_rl.envs.sim_operator", "--task", TASK, "--on", "0.6", "--off", "1.5"])
        wait_for("the robot", lambda: "ready" in procs.log("robot"), 60, procs)
        learner = procs.start("finetune", [
            "-m", "robot_rl.cli.main", "finetune", "--reset-free", "--robot", "--forward", str(offline_run),
            "--backward", str(offline_run), "--success", f"classifier:{classifier}", "--record", str(record),
            "--out", str(run), "--steps", "40", "--attempt-steps", "6", "--stuck-attempts", "2", "--warmup", "10",
            "--critic-warmup", "5", "--updates-per-step", "0.5", "--eval-every", "1000", "--rate-hz", "20",
            "--teleop", "twist", "--teleop-axes", "0", "1", "2", "5", "--settle-s", "0.2",
            "--takeover-timeout-s", "30", "--threads", "1"])
        assert learner.wait(timeout=240) == 0, procs.logs()
        procs.procs.pop("finetune")
        assert procs.stop("robot") == 0
        procs.stop("operator")
    finally:
        procs.close()
    robot = read_json(robot_stats)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interventions"] >= 1, procs.logs()
    with Dataset(record) as ds:
        episodes = [ds.load_episode(n) for n in ds.episode_names]
    flags = np.concatenate([ep.interventions for ep in episodes])
    refused = sum(int(ep.attrs["refused"]) for ep in episodes)
    assert int(flags.sum()) > 0  # the person's steps, flagged
    assert len(flags) - int(flags.sum()) >= 40  # the loop's own steps (and holds while waiting for the person)
    assert len(flags) - refused == robot["commands"]  # every command the robot executed is recorded
    assert "help needed" in procs.log("finetune") and "over DDS" in (run / "report.md").read_text()


def test_finetune_robot_flags_are_checked_before_anything_opens(offline_run: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    base = ["finetune", "--reset-free", "--robot", "--forward", str(offline_run), "--backward", str(offline_run),
            "--success", "classifier:x", "--out", str(tmp_path / "run")]
    assert main(base + ["--teleop", "twist"]) == 2
    assert "needs --record" in capsys.readouterr().err
    assert main(base + ["--record", str(tmp_path / "r.h5")]) == 2
    assert "needs --teleop twist|joy" in capsys.readouterr().err
    assert main(base + ["--record", str(tmp_path / "r.h5"), "--teleop", "joy", "--joints", "a,b"]) == 2
    assert "--joints names 2 joints" in capsys.readouterr().err
    assert main(["finetune", "--robot", "--checkpoint", str(offline_run)]) == 2
    assert "--robot works with --reset-free" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "r.h5").exists()
