"""Reset-free fine-tuning in real MetaWorld: tiny offline IQL runs of drawer-open and drawer-close, short runs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.core import StepResult
from robot_rl.envs import make_env
from robot_rl.envs.reset_free import MetaWorldPairBackend, RobotEnvBackend
from robot_rl.nn.checkpoint import load_checkpoint
from robot_rl.rewards.success import ConstantSuccess
from robot_rl.rl import reset_free as reset_free_module
from robot_rl.rl.policy import load_policy
from robot_rl.rl.reset_free import GroundTruthSuccess, ResetFreeConfig, reset_free_finetune
from robot_rl.rl.reset_free_report import read_events, write_report

TINY = dict(warmup_steps=30, log_every=100, eval_episodes=0, critic_warmup_updates=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two busy cores: one torch thread makes these tiny updates ~50x faster than two contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rf")
    for task in ("drawer-open-v3", "drawer-close-v3"):
        data = root / f"{task}.h5"
        assert main(["collect", "--task", f"metaworld/{task}", "--episodes", "4", "--episode-length", "30",
                     "--out", str(data)]) == 0
        assert main(["train", "--dataset", str(data), "--steps", "60", "--out", str(root / task), "--device", "cpu",
                     "--set", "iql.hidden=[32,32]", "--set", "log_every=30", "--eval-episodes", "0"]) == 0
    return root


def _run(runs: Path, out: Path, signals: Any = None, backend: Any = None, **cfg: Any):
    backend = backend or MetaWorldPairBackend("drawer", seed=0)
    signals = signals or (GroundTruthSuccess(backend.specs[0]), GroundTruthSuccess(backend.specs[1]))
    try:
        return reset_free_finetune(runs / "drawer-open-v3", runs / "drawer-close-v3", backend, signals,
                                   ResetFreeConfig(**{**TINY, **cfg}), out)
    finally:
        backend.close()


def _attempts(out: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(out) if e["type"] == "attempt"]


def _expected_interventions(events: list[dict[str, Any]], k: int) -> list[int]:
    """Replay the stuck rule on the recorded attempts: k in a row without (ground-truth) progress."""
    steps, in_row = [], 0
    for e in events:
        if e["type"] != "attempt" or e["ended_by"] == "budget":
            continue
        progress = e["gt_end"] and not e["gt_start"] if e["gt_end"] is not None else e["claimed"] and not e[
            "claimed_start"]
        in_row = 0 if progress else in_row + 1
        if in_row >= k:
            steps.append(e["end"])
            in_row = 0
    return steps


def test_ground_truth_run_learns_logs_and_reports(runs, tmp_path):
    out = tmp_path / "gt"
    res = _run(runs, out, steps=240, attempt_time_limit=40, eval_episodes=1)
    attempts = _attempts(out)
    assert sum(a["length"] for a in attempts) == res.steps == 240
    assert all(a["length"] <= 40 for a in attempts)
    assert all(a["claimed"] == a["gt_end"] for a in attempts)  # the signal is the ground truth here
    assert res.summary["metrics"]["forward/signal_step_accuracy"] == 1.0
    finished = [a for a in attempts if a["ended_by"] != "budget"]
    directions = [a["direction"] for a in attempts]
    assert directions[:4] == ["forward", "backward", "forward", "backward"]  # alternation
    assert res.stats[0].attempts + res.stats[1].attempts == len(finished)
    assert [e["step"] for e in read_events(out) if e["type"] == "intervention"] == _expected_interventions(
        read_events(out), 4)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [100, 200, 240]
    assert res.evals[0]["step"] == 0 and res.evals[-1]["step"] == 240  # before and after, with resets
    # both agents were fine-tuned and saved atomically; each checkpoint is a policy robot-rl eval can load
    assert res.stats[0].updates == res.stats[0].steps - 30  # one update per own step after a 30-step warm-up
    for i, (d, task) in enumerate((("forward", "drawer-open-v3"), ("backward", "drawer-close-v3"))):
        payload, _ = load_checkpoint(out / d)
        before, _ = load_checkpoint(runs / task)
        assert payload["step"] == 240 and payload["reset_free"]["signal"] == "ground_truth"
        changed = any(not torch.equal(payload["agent"][k], before["agent"][k]) for k in payload["agent"])
        assert changed == (res.stats[i].updates > 0)  # backward attempts find the drawer closed: few own steps
        assert load_policy(out / d).spec.name == f"metaworld/{task}"
    report = write_report(out, "test").read_text()
    assert "| forward |" in report and "Interventions:" in report and (out / "reset_free.png").stat().st_size > 5000


def test_always_right_signal_counts_false_claims_and_calls_for_help(runs, tmp_path):
    out = tmp_path / "yes"
    res = _run(runs, out, signals=(ConstantSuccess(1.0), ConstantSuccess(1.0)), steps=60, attempt_time_limit=30)
    attempts = _attempts(out)
    assert all(a["length"] == 1 and a["claimed"] for a in attempts)  # every attempt ends on its first step
    m = res.summary["metrics"]
    assert m["forward/claimed_rate"] == 1.0
    false_fwd = sum(1 for a in attempts if a["direction"] == "forward" and not a["gt_end"])
    assert m["forward/false_claims"] == false_fwd == 30  # one step never opens the drawer: every claim is false
    assert m["forward/true_rate"] == 0.0  # the true rate comes from ground truth, not from the claims
    assert res.interventions == 15  # no attempt made progress: help after every 4th attempt
    assert m["interventions_per_1k_steps"] == pytest.approx(250.0)
    assert m["interventions_per_hour"] == pytest.approx(15 / (60 / 80 / 3600))  # MetaWorld's 80 Hz
    report = write_report(out, "always yes").read_text()
    assert "| forward | 30 | 100% | 0% |" in report


def test_always_wrong_signal_and_a_policy_that_never_succeeds_keep_running(runs, tmp_path):
    out = tmp_path / "no"
    res = _run(runs, out, signals=(ConstantSuccess(0.0), ConstantSuccess(0.0)), steps=200, attempt_time_limit=20)
    attempts = _attempts(out)
    assert res.steps == 200 and all(not a["claimed"] for a in attempts)
    assert all(a["ended_by"] == "time_limit" for a in attempts)
    m = res.summary["metrics"]
    # 20 steps cannot open the drawer (the scripted expert needs ~87): the forward policy never succeeds
    assert m["forward/true_rate"] == 0.0 and m["forward/claimed_rate"] == 0.0
    # the closed drawer is a backward success the signal never sees: missed, not claimed
    missed = sum(1 for a in attempts if a["direction"] == "backward" and a["gt_end"])
    assert m["backward/missed_successes"] == missed > 0 and m["backward/claimed_rate"] == 0.0
    assert res.interventions == len(_expected_interventions(read_events(out), 4)) == 2


class HiddenStateRobot:
    """A MetaWorld env that behaves like a robot: one env, no sim state, no ground truth, NaN reward."""

    def __init__(self, episode_length: int) -> None:
        self.env = make_env("metaworld/drawer-open-v3", episode_length=episode_length)
        spec = self.env.spec
        self.spec = dataclasses.replace(spec, name="fake/drawer-robot", sim_state_dim=0, extras={},
                                        observations={"state": spec.observations["state"]})
        self.num_envs, self.device = 1, self.env.device
        self.resets = 0

    def reset(self, seed: int | None = None):
        self.resets += 1
        obs, _ = self.env.reset(seed=seed)
        return {"state": obs["state"]}, {}

    def step(self, action: torch.Tensor) -> StepResult:
        res = self.env.step(action)
        return StepResult({"state": res.obs["state"]}, torch.full((1,), float("nan")), res.terminated,
                          res.truncated, {})

    def close(self) -> None:
        self.env.close()


def test_backend_without_state_or_ground_truth_runs_and_asks_a_person(runs, tmp_path):
    robot = HiddenStateRobot(episode_length=50)
    with pytest.raises(ValueError, match="no ground-truth success term"):
        GroundTruthSuccess(robot.spec)
    calls: list[tuple[str, str]] = []
    backend = RobotEnvBackend(robot, on_intervention=lambda d, reason: calls.append((d, reason)))
    out = tmp_path / "robot"
    res = _run(runs, out, signals=(ConstantSuccess(0.0), ConstantSuccess(0.0)), backend=backend, steps=120,
               attempt_time_limit=15)
    assert res.steps == 120 and res.interventions == len(calls) == 2  # 8 attempts, none claimed
    assert calls[0] == ("forward", "4 attempts in a row made no progress")
    assert res.self_resets == 2  # the env's own 50-step limit reset it twice: reported, not hidden
    assert res.summary["has_ground_truth"] == [False, False] and res.summary["can_save_state"] is False
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["forward/true_rate"] is None and summary["metrics"]["forward/false_claims"] is None
    report = write_report(out, "robot").read_text()
    assert "no ground truth" in report and "| forward | 4 | 0% | n/a |" in report
    assert "reset itself 2 times" in report


def test_cli_reset_free_end_to_end(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    fwd, bwd = str(runs / "drawer-open-v3"), str(runs / "drawer-close-v3")
    base = ["finetune", "--reset-free", "--forward", fwd, "--backward", bwd, "--task-pair", "drawer"]
    assert main([*base, "--steps", "100", "--warmup", "30", "--eval-episodes", "1", "--attempt-steps", "25",
                 "--critic-warmup", "50",
                 "--success", "ground_truth", "--backward-success", "constant:0.0", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["signals"] == ["ground_truth", "constant"] and summary["steps"] == 100
    assert (out / "report.md").exists() and (out / "reset_free.png").exists()
    assert "interventions" in capsys.readouterr().err
    assert main([*base, "--steps", "10", "--out", str(tmp_path / "x")]) == 2
    assert "no success signal for the forward direction" in capsys.readouterr().err
    assert main(["finetune", "--reset-free", "--forward", fwd, "--steps", "10", "--success", "ground_truth"]) == 2
    assert "--reset-free needs --backward RUN_DIR" in capsys.readouterr().err
    assert main(["finetune", "--reset-free", "--forward", bwd, "--backward", fwd, "--steps", "10",
                 "--success", "ground_truth", "--out", str(tmp_path / "y")]) == 2
    assert "trained on 'metaworld/drawer-close-v3', but the forward task of this pair is" in capsys.readouterr().err
    assert main(["finetune", "--steps", "10"]) == 2
    assert "--checkpoint RUN_DIR is required" in capsys.readouterr().err


def test_cli_verify_claims_asks_the_scripted_teacher_and_refuses_it_on_a_robot(runs, tmp_path, capsys):
    import argparse

    from rich.console import Console

    from robot_rl.cli.finetune_cmd import verified_signals

    out = tmp_path / "cli-verify"
    assert main(["finetune", "--reset-free", "--forward", str(runs / "drawer-open-v3"), "--backward",
                 str(runs / "drawer-close-v3"), "--task-pair", "drawer", "--steps", "40", "--warmup", "30",
                 "--eval-episodes", "0", "--attempt-steps", "20", "--critic-warmup", "0", "--success", "constant:1.0",
                 "--verify-claims", "5", "--out", str(out)]) == 0
    assert "claims verified: up to 5 per direction, answered by 'scripted'" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["signals"] == ["verified:constant", "verified:constant"]
    asked = [e for e in read_events(out) if e["type"] == "verify"]
    assert 0 < len(asked) <= 10 and all(e["answer"] == e["truth"] for e in asked)
    robot = argparse.Namespace(verify_claims=5, claim_teacher="scripted", robot=True, seed=0)
    with pytest.raises(ValueError, match="ground truth, which a robot does not have"):
        verified_signals((ConstantSuccess(1.0), ConstantSuccess(1.0)), ("a", "b"), robot, Console())
    person = verified_signals((ConstantSuccess(1.0), ConstantSuccess(1.0)), ("a", "b"),
                              argparse.Namespace(verify_claims=5, claim_teacher=None, robot=True, seed=0), Console())
    assert [s.teacher.name for s in person] == ["human", "human"]  # type: ignore[attr-defined]


class HomeRecorder(MetaWorldPairBackend):
    """The drawer pair, noting where the hand is when each attempt after a move home begins."""

    def __init__(self) -> None:
        super().__init__("drawer", seed=0)
        self.start_hand: torch.Tensor | None = None
        self.after_home: list[torch.Tensor] = []
        self._homed = False

    def start(self, direction: int, seed: int | None = None):
        obs = super().start(direction, seed)
        self.start_hand = obs["state"][0, :3].clone()
        return obs

    def home(self) -> None:
        super().home()
        self._homed = True

    def observe(self, direction: int):
        obs = super().observe(direction)
        if self._homed:
            self.after_home.append(obs["state"][0, :3].clone())
            self._homed = False
        return obs


def test_home_starts_every_attempt_from_the_arm_start_pose(runs, tmp_path):
    out = tmp_path / "home"
    backend = HomeRecorder()
    res = _run(runs, out, backend=backend, steps=150, attempt_time_limit=30, home=True)
    finished = [a for a in _attempts(out) if a["ended_by"] != "budget"]
    assert res.summary["homes"] == backend.homes == len(finished) - res.interventions > 0  # not after a person's fix
    assert len(backend.after_home) == backend.homes
    assert all(torch.allclose(h, backend.start_hand, atol=1e-3) for h in backend.after_home)
    with pytest.raises(ValueError, match="cannot move the arm home on its own"):
        _run(runs, tmp_path / "robot-home", signals=(ConstantSuccess(0.0), ConstantSuccess(0.0)),
             backend=RobotEnvBackend(HiddenStateRobot(episode_length=50), on_intervention=lambda d, r: None),
             steps=10, home=True)


@pytest.mark.parametrize("soft", [False, True])
def test_soft_reward_is_the_signal_probability_offline_and_online(runs, tmp_path, monkeypatch, soft):
    """p = 0.3 under threshold 0.5: the claim reward is 0 everywhere, the soft one 0.3 * scale; never terminal."""
    signal = ConstantSuccess(0.3)
    backend = MetaWorldPairBackend("drawer", seed=0)
    cfg = ResetFreeConfig(**{**TINY, "steps": 40, "attempt_time_limit": 20, "soft_reward": soft})
    try:
        learner = reset_free_module._make_learner(runs / "drawer-open-v3", backend, 0, signal, cfg)
    finally:
        backend.close()
    rewards = learner.offline.data["rewards"][:len(learner.offline)]
    assert torch.allclose(rewards, torch.full_like(rewards, 0.3 * learner.scale if soft else 0.0))
    assert not learner.offline.data["terminals"][:len(learner.offline)].any()
    stored: list[tuple[float, bool]] = []
    add = reset_free_module._add

    def recording_add(learner, obs, action, next_obs, claimed, success):
        add(learner, obs, action, next_obs, claimed, success)
        stored.append((float(learner.replay.data["rewards"][learner.replay.pos - 1]), claimed))

    monkeypatch.setattr(reset_free_module, "_add", recording_add)
    _run(runs, tmp_path / "soft", signals=(signal, signal), steps=40, attempt_time_limit=20, soft_reward=soft)
    assert len(stored) == 40
    assert {claimed for _, claimed in stored} == {False}
    assert {round(r / learner.scale, 4) for r, _ in stored} == {0.3 if soft else 0.0}


def test_verified_claims_a_teacher_rejects_earn_nothing_and_end_no_attempt(runs, tmp_path, monkeypatch):
    """A signal that claims every step, checked by the scripted teacher (ground truth) for 20 claims per direction:
    the rejected steps are stored unrewarded and non-terminal and the attempt goes on; the 21st claim stands."""
    from robot_rl.rewards.success.verify import ScriptedClaimTeacher, VerifiedSuccess, VerifyConfig

    signals = tuple(VerifiedSuccess(ConstantSuccess(1.0), ScriptedClaimTeacher(), VerifyConfig(budget=20,
                                                                                               requery_after=0), t)
                    for t in ("open", "close"))
    stored: list[tuple[float, bool]] = []
    add = reset_free_module._add

    def recording_add(learner, obs, action, next_obs, claimed, success):
        add(learner, obs, action, next_obs, claimed, success)
        if learner.signal is signals[0]:
            stored.append((float(learner.replay.data["rewards"][learner.replay.pos - 1]), claimed))

    monkeypatch.setattr(reset_free_module, "_add", recording_add)
    out = tmp_path / "verified"
    res = _run(runs, out, signals=signals, steps=60, attempt_time_limit=30)
    events = read_events(out)
    asked = [e for e in events if e["type"] == "verify" and e["direction"] == "forward"]
    assert len(asked) == 20 and all(e["answer"] is False and e["truth"] is False for e in asked)
    first = _attempts(out)[0]
    assert first["direction"] == "forward" and first["length"] == 21 and first["ended_by"] == "claim"
    scale = 30.0  # the offline episodes' length
    assert stored[:20] == [(0.0, False)] * 20 and stored[20] == (scale, True)
    m = res.summary["metrics"]
    assert m["forward/claims_rejected"] == 20 and m["forward/claims_confirmed"] == 0
    assert m["forward/claims_unverified"] >= 1 and m["forward/classifier_retrains"] == 0  # a constant: no retraining
    assert "Claims a teacher checked: forward 0 confirmed, 20 rejected" in write_report(out, "verified").read_text()
    back = [e for e in events if e["type"] == "verify" and e["direction"] == "backward"]
    assert back and all(e["answer"] == e["truth"] for e in back)  # the teacher answers from ground truth


class _Retrained:
    """A verified signal whose classifier "retrains" at its first rejection: before, p = 0.9 everywhere (every step
    a claim); after, p = 0.2 (no claim). The teacher rejects every claim."""

    name, threshold = "retrained", 0.5

    def __init__(self) -> None:
        self.p, self.changed = 0.9, False

    def __call__(self, obs):
        return torch.full((obs["state"].shape[0],), self.p)

    def check(self, obs, info, step):
        self.p, self.changed = 0.2, True
        return "rejected"

    def update(self):
        changed, self.changed = self.changed, False
        return changed


def test_a_retrained_success_signal_relabels_offline_and_replay_rows_but_keeps_the_teachers_answers(runs, tmp_path):
    backend = MetaWorldPairBackend("drawer", seed=0)
    cfg = ResetFreeConfig(**{**TINY, "steps": 40, "attempt_time_limit": 20})
    signal = _Retrained()
    try:
        learner = reset_free_module._make_learner(runs / "drawer-open-v3", backend, 0, signal, cfg)
        n = len(learner.offline)
        assert learner.offline.data["terminals"][:n].all()  # p = 0.9: every offline row a success
        assert torch.allclose(learner.offline.data["rewards"][:n], torch.full((n,), learner.scale))
        for _ in range(3):  # three stored claims the old classifier made, unanswered
            reset_free_module._add(learner, {"state": torch.zeros(1, 39)}, torch.zeros(1, 4),
                                   {"state": torch.zeros(1, 39)}, True, 1.0)
        learner.answers[1] = True  # a teacher confirmed row 1
        run = reset_free_module._Run((learner, learner), backend, cfg, tmp_path / "r", None)
        verdict = run.verify(0, {"state": torch.zeros(1, 39)}, {}, 0.9, None)
        run.close()
    finally:
        backend.close()
    assert verdict == "rejected" and learner.answers == {1: True, 3: False}  # row 3: the step being verified
    assert not learner.offline.data["terminals"][:n].any()
    assert learner.offline.data["rewards"][:n].abs().max() == 0
    assert learner.replay.data["terminals"][:3].tolist() == [False, True, False]
    assert learner.replay.data["rewards"][:3].tolist() == [0.0, learner.scale, 0.0]


def test_an_answer_goes_with_its_row_when_the_replay_ring_overwrites_it(runs, tmp_path):
    backend = MetaWorldPairBackend("drawer", seed=0)
    cfg = ResetFreeConfig(**{**TINY, "steps": 40, "attempt_time_limit": 20, "capacity": 4})
    signal = _Retrained()
    state = {"state": torch.zeros(1, 39)}
    try:
        learner = reset_free_module._make_learner(runs / "drawer-open-v3", backend, 0, signal, cfg)
        for _ in range(4):
            reset_free_module._add(learner, state, torch.zeros(1, 4), state, True, 1.0)
        learner.answers[1] = True  # a teacher confirmed row 1's transition
        run = reset_free_module._Run((learner, learner), backend, cfg, tmp_path / "r", None)
        assert run.verify(0, state, {}, 0.9, None) == "rejected"  # the next step goes to row 0 (wrapped)
        run.close()
        reset_free_module._add(learner, state, torch.zeros(1, 4), state, True, 1.0)  # row 0: the answered step
        assert learner.answers == {0: False, 1: True}
        reset_free_module._add(learner, state, torch.zeros(1, 4), state, True, 1.0)  # row 1: a new, unanswered step
        assert learner.answers == {0: False}
        signal.p, signal.changed = 0.9, True  # the classifier changes its mind: relabel
        reset_free_module._relabel_success(learner, cfg)
    finally:
        backend.close()
    assert learner.replay.data["terminals"][:4].tolist() == [False, True, True, True]


def test_critic_warmup_moves_critics_not_the_actor(runs, tmp_path):
    out = tmp_path / "cw"
    res = _run(runs, out, steps=5, warmup_steps=10, critic_warmup_updates=20, attempt_time_limit=5)
    assert res.stats[0].updates == res.stats[1].updates == 0  # no online update yet: only the warm-up ran
    payload, _ = load_checkpoint(out / "forward")
    before, _ = load_checkpoint(runs / "drawer-open-v3")
    changed = {k.split(".")[0] for k in payload["agent"] if not torch.equal(payload["agent"][k], before["agent"][k])}
    assert changed == {"critic", "target_critic", "value"}


@pytest.mark.parametrize("bad, message", [
    (dict(steps=0), "steps must be >= 1, got 0"),
    (dict(offline_ratio=1.5), "offline_ratio must be in [0, 1], got 1.5"),
    (dict(attempt_time_limit=-3), "attempt_time_limit must be >= 1, got -3"),
    (dict(control_hz=0.0), "control_hz must be > 0, got 0.0"),
])
def test_bad_config_says_what(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ResetFreeConfig(**bad)
