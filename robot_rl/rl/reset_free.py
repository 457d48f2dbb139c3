"""Reset-free fine-tuning: a forward and a backward IQL policy take turns in one world, without resets.

Both policies start from offline IQL checkpoints (e.g. drawer-open and drawer-close). An *attempt* is one
policy acting until its success signal says "done" (probability >= threshold) or a time limit; then the other
policy takes over from wherever the world is. Each policy learns online from its own attempts, on batches that
mix its offline data (``offline_ratio``) with its new transitions, as ``robot_rl.rl.finetune`` does.

Reward of each direction (offline data relabeled the same way, so the two agree): ``scale * 1[p >= threshold]``
with ``p`` the direction's :class:`SuccessSignal` on the state after the step; that transition is terminal
(``soft_reward``: ``scale * p`` on every step, terminal still only where ``p >= threshold``).
``scale`` defaults to the task's episode length (the project's reward normalization, episode length / return
range, with returns in {0, 1}).

A signal with a teacher (``robot_rl.rewards.success.verify.VerifiedSuccess``: it has ``check`` and ``update``) has
each claim checked: a rejected claim (or one held back shortly after a rejection) is stored unrewarded and not
terminal, and the attempt goes on; when the signal's classifier retrained on the answers, the direction's offline
and replay rows are relabeled with it (rows a teacher answered keep the answer). Each answer is a ``verify`` event.

Ground truth (``info["success"]`` of the backend, where it has one) is recorded beside every step and attempt
and used only to measure: the claimed successes (by the signal) and the true ones are counted apart, a claim
that ground truth contradicts is a *false claim*, and a backend without ground truth reports "n/a", never the
signal's claims in its place.

Interventions: after each attempt the pair is *stuck* when ``stuck_attempts`` attempts in a row (both
directions counted) made no progress, or when the backend reports a reason (object out of reach). Progress
means the attempt's task went from unsolved at its start to solved at its end, judged by ground truth where the
backend has it (the sim harness stands in for a person who looks at the scene; ground truth never reaches the
learners), else by the signal. An attempt that finds its task already solved makes no progress. The backend
then puts the world in a start state of the direction about to act (sim: a fresh reset of that task; robot:
a callback that blocks until a person is done). Interventions are counted and reported per 1,000 steps and
per hour of robot time at the backend's control rate (MetaWorld: 80 Hz of simulated time,
``1 / (frame_skip * timestep)``; pass ``control_hz`` for a nominal rate).

Length: one loop and the state it carries (learners, attempts, interventions, evaluation) read top to bottom; the
report already lives in ``reset_free_report.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch

from robot_rl.core import CheckedSuccessSignal, EnvSpec, RobotEnv, SuccessSignal
from robot_rl.core.env import Obs
from robot_rl.data import Dataset, TransitionSampler
from robot_rl.nn.checkpoint import save_checkpoint
from robot_rl.rl.agent import gradient_step
from robot_rl.rl.evaluate import evaluate
from robot_rl.rl.finetune import LoadedAgent, OnlineReplay, finetune_payload, load_iql_for_finetuning, mixed_batch
from robot_rl.rl.logger import MetricsLogger
from robot_rl.rl.policy import Policy
from robot_rl.rl.reset_free_report import DIRECTIONS, EVENTS_FILE
from robot_rl.rl.reward_updates import relabel_rows, update_and_relabel
from robot_rl.rl.train import TrainingDiverged


class GroundTruthSuccess:
    """The simulator's success flag (``obs["privileged"]``'s ``success`` term) as a 0/1 probability.

    For the ground-truth baseline and for tests; a backend without privileged observations cannot use it.
    """

    name = "ground_truth"
    threshold = 0.5

    def __init__(self, spec: EnvSpec) -> None:
        names = [row[0] for row in spec.extras.get("privileged", [])]
        if "privileged" not in spec.observations or "success" not in names:
            raise ValueError(f"success signal 'ground_truth': '{spec.name}' has no ground-truth success term "
                             "(a real robot?); use a success classifier")
        self.index = names.index("success")

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        if "privileged" not in obs:
            raise ValueError("success signal 'ground_truth': the observation has no 'privileged' term")
        return (obs["privileged"][:, self.index] > 0.5).float()


class ResetFreeBackend(Protocol):
    """One world shared by the forward (0) and backward (1) direction; see ``robot_rl.envs.reset_free``."""

    names: tuple[str, str]
    specs: tuple[EnvSpec, EnvSpec]
    episode_lengths: tuple[int, int]
    control_hz: float
    can_save_state: bool

    def start(self, direction: int, seed: int | None = None) -> Obs: ...

    def observe(self, direction: int) -> Obs: ...

    def step(self, direction: int, action: torch.Tensor) -> tuple[Obs, dict[str, Any]]: ...

    def ground_truth_success(self, direction: int) -> bool | None: ...

    def stuck_reason(self) -> str | None: ...

    def intervene(self, direction: int, reason: str) -> Obs: ...

    def make_eval_env(self, direction: int) -> RobotEnv | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ResetFreeConfig:
    """A reset-free fine-tuning run (steps are environment steps, both directions together)."""

    steps: int = 20_000
    attempt_time_limit: int | None = None
    """Steps before an attempt ends unsolved; default: each task's episode length (task card)."""
    stuck_attempts: int = 4
    """Attempts in a row (both directions) without progress (unsolved -> solved) before an intervention."""
    offline_ratio: float = 0.75
    """Share of each batch from the direction's offline data (``finetune``'s measured default)."""
    updates_per_step: float = 1.0
    """Updates of the acting direction's agent per env step (after its warm-up)."""
    warmup_steps: int = 500
    """New transitions a direction collects before its agent starts updating."""
    reward_scale: float | None = None
    """Reward of a success step; default: the task's episode length."""
    critic_warmup_updates: int = 2000
    """Value and critic updates (no actor) on the relabeled offline data before the online phase: the offline
    critic learned the dataset's reward, not the success reward, and its advantages would steer the actor.
    Measured (benchmarks/reset_free.md, drawer pair, seed 0): without it forward success fell 60% -> 20-25%; with
    2000 it stayed at 60-70%."""
    capacity: int = 200_000
    log_every: int = 1000
    eval_every: int = 0
    """Evaluate both policies (with resets) every this many steps; 0: only before and after."""
    eval_episodes: int = 10
    """Episodes per evaluation (0: no evaluation)."""
    control_hz: float | None = None
    """Control rate for "per hour" figures; default: the backend's."""
    home: bool = False
    """Between attempts (not after an intervention, which starts fresh anyway), move the arm to its home pose
    (``backend.home()``: the hand where the last start state had it, objects left where they are), so each attempt
    starts from the arm pose that evaluation starts from."""
    soft_reward: bool = False
    """Reward each step with ``scale * p`` (the success signal's probability on the state after it) instead of
    ``scale * 1[p >= threshold]``, offline data relabeled the same way; attempts still end, and steps are still
    terminal, only on claims (``p >= threshold``). For a classifier whose threshold sits near 1, which online fires
    on few truly solved states."""
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"{k} must be >= {lo}, got {v}" for k, v, lo in (
            ("steps", self.steps, 1), ("stuck_attempts", self.stuck_attempts, 1), ("log_every", self.log_every, 1),
            ("warmup_steps", self.warmup_steps, 0),
            ("critic_warmup_updates", self.critic_warmup_updates, 0), ("eval_every", self.eval_every, 0),
            ("eval_episodes", self.eval_episodes, 0), ("capacity", self.capacity, 1),
            ("attempt_time_limit", self.attempt_time_limit or 1, 1), ("updates_per_step", self.updates_per_step, 0))
            if v < lo]
        if not 0.0 <= self.offline_ratio <= 1.0:
            problems.append(f"offline_ratio must be in [0, 1], got {self.offline_ratio}")
        if self.control_hz is not None and not self.control_hz > 0:
            problems.append(f"control_hz must be > 0, got {self.control_hz}")
        if problems:
            raise ValueError("reset-free config: " + "; ".join(problems))


@dataclass
class DirectionStats:
    """What one direction did; ``true_*`` stay 0 and ``has_ground_truth`` False on a backend without ground truth."""

    steps: int = 0
    attempts: int = 0
    """Finished attempts (ended by a claim or the time limit)."""
    claimed: int = 0
    """Attempts the success signal ended (claimed success)."""
    true_success: int = 0
    """Attempts whose end state ground truth calls solved."""
    true_from_unsolved: int = 0
    """Of those, attempts that began unsolved (the policy did it)."""
    began_unsolved: int = 0
    false_claims: int = 0
    """Claimed, but ground truth says unsolved."""
    missed: int = 0
    """Not claimed (time limit), but ground truth says solved at the end."""
    has_ground_truth: bool = False
    confusion: dict[str, int] = field(default_factory=lambda: {"tp": 0, "fp": 0, "tn": 0, "fn": 0})
    """Per step: signal's claim vs ground truth of the post-step state."""
    updates: int = 0

    def add_attempt(self, claimed: bool, gt_start: bool | None, gt_end: bool | None) -> None:
        """Count one finished attempt: claimed by the signal; ground truth at its start and end (``None``: none)."""
        self.attempts += 1
        self.claimed += claimed
        if gt_end is not None:
            self.true_success += gt_end
            self.false_claims += claimed and not gt_end
            self.missed += gt_end and not claimed
            if gt_start is False:
                self.began_unsolved += 1
                self.true_from_unsolved += gt_end

    def metrics(self, prefix: str) -> dict[str, float]:
        nan = float("nan")
        c = self.confusion
        judged = sum(c.values())
        gt = self.has_ground_truth
        out = {
            "steps": float(self.steps), "attempts": float(self.attempts), "updates": float(self.updates),
            "claimed_rate": self.claimed / self.attempts if self.attempts else nan,
            "true_rate": self.true_success / self.attempts if gt and self.attempts else nan,
            "true_rate_from_unsolved": (self.true_from_unsolved / self.began_unsolved
                                        if gt and self.began_unsolved else nan),
            "false_claims": float(self.false_claims) if gt else nan,
            "missed_successes": float(self.missed) if gt else nan,
            "signal_step_accuracy": (c["tp"] + c["tn"]) / judged if judged else nan,
            "signal_step_precision": c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else nan,
            "signal_step_recall": c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else nan,
            "signal_attempt_accuracy": ((self.attempts - self.false_claims - self.missed) / self.attempts
                                        if gt and self.attempts else nan),
        }
        return {f"{prefix}{k}": v for k, v in out.items()}


@dataclass
class ResetFreeResult:
    stats: tuple[DirectionStats, DirectionStats]
    interventions: int
    self_resets: int
    steps: int
    control_hz: float
    evals: list[dict[str, float]]
    """``{"step", "forward", "backward"}`` success rates with resets (NaN: no evaluation env)."""
    summary: dict[str, Any]


@dataclass
class _Learner:
    loaded: LoadedAgent
    policy: Policy
    offline: TransitionSampler
    replay: OnlineReplay
    signal: SuccessSignal
    scale: float
    reward: Any = None
    """A learned reward that learns online (a ``RewardSource`` and ``RewardLearner``, e.g. the online preference loop):
    the direction's rewards come from it (scaled like its offline run's) instead of the success signal, which still
    ends attempts and marks terminal steps."""
    new_transitions: int = 0
    answers: dict[int, bool] = field(default_factory=dict)
    """Replay rows whose success a teacher answered (verified claims): relabels keep the answer. A row the ring
    buffer overwrites loses its answer (unless the answer is for the new transition)."""
    answered_row: int | None = None
    """The replay row of the transition being verified now (answered, not stored yet)."""
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counted: int = 0


def offline_probability(signal: SuccessSignal, loaded: LoadedAgent, chunk: int = 4096) -> np.ndarray:
    """float32 ``[N]``: the signal's success probability on the post-step state of every offline transition
    (dataset order).

    ``GroundTruthSuccess`` reads the dataset's per-step ``successes``; any other signal sees ``{"state": ...}``.
    """
    if isinstance(signal, GroundTruthSuccess):
        dataset = loaded.train_cfg.dataset
        parts = []
        with Dataset(dataset) as ds:
            for name in ds.episode_names:
                ep = ds.load_episode(name)
                if ep.successes is None:
                    raise ValueError(f"{dataset}: episode {name} has no per-step success; the 'ground_truth' "
                                     "signal cannot label it (use a success classifier)")
                parts.append(ep.successes.astype(np.float32))
        return np.concatenate(parts)
    mean = np.asarray(loaded.normalizer.mean, np.float32)
    std = np.asarray(loaded.normalizer.std, np.float32)
    return _state_probability(signal, torch.from_numpy(loaded.offline.arrays["next_obs"] * std + mean), chunk).numpy()


def _state_probability(signal: SuccessSignal, states: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """float32 ``[N]`` on the CPU: the signal's success probability of raw ``states [N, D]``, ``chunk`` rows a call."""
    out = [signal({"state": states[i:i + chunk]}).detach().float().cpu() for i in range(0, len(states), chunk)]
    return torch.cat(out) if out else torch.zeros(0)


def _success_columns(prob: Any, threshold: float, scale: float, soft: bool) -> tuple[Any, Any]:
    """``(rewards, terminals)`` of success probabilities ``prob`` (a numpy array or a tensor): terminal where
    ``p >= threshold``; reward ``scale * 1[p >= threshold]``, or ``scale * p`` with ``soft``."""
    success = prob >= threshold
    return (prob if soft else success) * scale, success


def _make_learner(checkpoint_dir: Path, backend: ResetFreeBackend, direction: int, signal: SuccessSignal,
                  cfg: ResetFreeConfig, reward: Any = None) -> _Learner:
    target = backend.specs[direction]
    updates = max(int(cfg.steps * cfg.updates_per_step), 1)
    loaded = load_iql_for_finetuning(checkpoint_dir, target, updates)
    trained = loaded.offline.spec.name
    if backend.specs[0].name != backend.specs[1].name and trained != target.name:
        raise ValueError(f"{checkpoint_dir}: the {DIRECTIONS[direction]} checkpoint was trained on '{trained}', "
                         f"but the {DIRECTIONS[direction]} task of this pair is '{target.name}'")
    scale = float(cfg.reward_scale if cfg.reward_scale is not None else loaded.offline.spec.max_episode_steps)
    prob = offline_probability(signal, loaded)
    n = len(loaded.offline.arrays["rewards"])
    if len(prob) != n:
        raise ValueError(f"{loaded.train_cfg.dataset}: {len(prob)} success labels for {n} transitions")
    rewards, terminals = _success_columns(prob, signal.threshold, scale, cfg.soft_reward)
    arrays = {**loaded.offline.arrays, "rewards": rewards.astype(np.float32), "terminals": terminals}
    device = loaded.device
    seed = cfg.seed * 2 + direction
    sampler = TransitionSampler(arrays, device, seed=seed)
    if reward is not None:  # the learned reward labels the offline data too
        relabel_rows(reward, sampler.data, len(sampler), loaded.normalizer, loaded.offline.reward_scale)
    return _Learner(loaded, Policy(loaded.agent.actor, loaded.normalizer, loaded.offline.spec), sampler,
                    OnlineReplay(cfg.capacity, target.state_dim, target.action.dim, device, seed + 100),
                    signal, scale, reward)


def reset_free_finetune(forward: Path, backward: Path, backend: ResetFreeBackend,
                        signals: tuple[SuccessSignal, SuccessSignal], cfg: ResetFreeConfig, run_dir: Path,
                        on_progress: Callable[[int, dict[str, float]], None] | None = None,
                        rewards: tuple[Any, Any] = (None, None)) -> ResetFreeResult:
    """Fine-tune the IQL agents of ``forward`` and ``backward`` in ``backend``, taking turns without resets.

    Writes ``run_dir/forward`` and ``run_dir/backward`` (checkpoints, loadable by ``robot-rl eval``),
    ``metrics.jsonl``, ``events.jsonl`` (one line per attempt, intervention and evaluation) and ``summary.json``.
    ``on_progress(step, metrics)`` is called after every attempt and log step. ``rewards[i]``: a learned reward that
    learns online (``_Learner.reward``) for direction ``i``, or None (the success reward).
    """
    learners = tuple(_make_learner(d, backend, i, signals[i], cfg, rewards[i])
                     for i, d in enumerate((forward, backward)))
    run = _Run(learners, backend, cfg, Path(run_dir), on_progress)  # type: ignore[arg-type]
    try:
        run.loop()
    finally:
        run.close()
    summary = run.summary()
    (Path(run_dir) / "summary.json").write_text(json.dumps(_finite_or_none(summary), indent=2) + "\n")
    return ResetFreeResult((run.stats[0], run.stats[1]), run.interventions, int(getattr(backend, "self_resets", 0)),
                           run.steps, run.control_hz, run.evals, summary)


class _Run:
    """The state of one reset-free run; ``loop()`` alternates attempts until ``cfg.steps``."""

    def __init__(self, learners: tuple[_Learner, _Learner], backend: ResetFreeBackend, cfg: ResetFreeConfig,
                 run_dir: Path, on_progress: Callable[[int, dict[str, float]], None] | None) -> None:
        self.learners, self.backend, self.cfg, self.run_dir, self.on_progress = (
            learners, backend, cfg, run_dir, on_progress)
        self.control_hz = float(cfg.control_hz or backend.control_hz or float("nan"))
        self.limits = tuple(cfg.attempt_time_limit or backend.episode_lengths[i] for i in range(2))
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator(device=learners[0].loaded.device)
        self.gen.manual_seed(cfg.seed)
        self.stats = (DirectionStats(), DirectionStats())
        run_dir.mkdir(parents=True, exist_ok=True)
        self.logger = MetricsLogger(run_dir)
        self.events = (run_dir / EVENTS_FILE).open("a", encoding="utf-8")
        self.evals: list[dict[str, float]] = []
        self.steps, self.interventions, self.unsolved_in_row, self.logged_at = 0, 0, 0, -1
        if cfg.home and not callable(getattr(backend, "home", None)):
            raise ValueError(f"reset-free config: home=True, but the backend for {' / '.join(backend.names)} cannot "
                             "move the arm home on its own (a simulated pair backend can)")
        self.next_log = cfg.log_every
        self.next_eval = cfg.eval_every or math.inf

    def loop(self) -> None:
        if self.cfg.eval_episodes:
            self.evaluate()
        for learner in self.learners:
            _critic_warmup(learner, self.cfg)
        direction = 0
        self.backend.start(0, seed=self.cfg.seed)
        while self.steps < self.cfg.steps:
            if not self.attempt(direction):
                break
            direction = 1 - direction
            if not self.maybe_intervene(direction) and self.cfg.home:
                self.backend.home()  # type: ignore[attr-defined]
            if self.on_progress is not None:
                self.on_progress(self.steps, self.metrics())
        if self.cfg.eval_episodes and (not self.evals or self.evals[-1]["step"] != self.steps):
            self.evaluate()
        if self.logged_at != self.steps:
            self.log()

    def attempt(self, direction: int) -> bool:
        """One attempt of ``direction``; ``False`` if the step budget ran out before it finished."""
        learner, st, backend = self.learners[direction], self.stats[direction], self.backend
        obs = backend.observe(direction)
        gt_start = backend.ground_truth_success(direction)
        claimed_start = self.probability(learner.signal, obs) >= learner.signal.threshold
        start, length, claimed, gt_ever = self.steps, 0, False, False
        gt: bool | None = None
        before = {"sim_state": backend.sim_state(direction)} if hasattr(backend, "sim_state") else {}
        while not (claimed or length >= self.limits[direction] or self.steps >= self.cfg.steps):
            action = learner.policy(obs, deterministic=False, generator=self.gen)
            next_obs, info = backend.step(direction, action)
            p = self.probability(learner.signal, next_obs)
            gt = bool(info["success"][0]) if "success" in info else None
            verdict = self.verify(direction, next_obs, info, p, gt) if p >= learner.signal.threshold else None
            refused = verdict in ("rejected", "held")  # a teacher said no, or shortly after a no
            claimed = p >= learner.signal.threshold and not refused
            if gt is not None:
                st.has_ground_truth = True
                gt_ever |= gt
                st.confusion[("t" if claimed == gt else "f") + ("p" if claimed else "n")] += 1
            _add(learner, obs, action, next_obs, claimed,
                 0.0 if refused else p if self.cfg.soft_reward else float(claimed))
            self.steps += 1
            length += 1
            st.steps += 1
            if learner.reward is not None:
                _observe(learner, obs, before, action, next_obs, info, claimed, length >= self.limits[direction],
                         self.steps)
                before = info
            _update(learner, st, self.cfg)
            obs = next_obs
            self.on_step()
        finished = claimed or length >= self.limits[direction]
        self.event({"type": "attempt", "direction": DIRECTIONS[direction], "start": start, "end": self.steps,
                    "length": length, "ended_by": "claim" if claimed else "time_limit" if finished else "budget",
                    "claimed_start": claimed_start, "claimed": claimed, "gt_start": gt_start, "gt_end": gt,
                    "gt_ever": gt_ever if gt is not None else None})
        if finished:
            st.add_attempt(claimed, gt_start, gt)
            # progress: the task went from unsolved to solved (ground truth where there is one, else the signal);
            # an attempt that found its task already solved moved nothing
            progress = (gt and not gt_start) if gt is not None else (claimed and not claimed_start)
            self.unsolved_in_row = 0 if progress else self.unsolved_in_row + 1
        return finished

    def verify(self, direction: int, obs: Obs, info: dict[str, Any], p: float, gt: bool | None) -> str | None:
        """A checked signal's verdict on a claim (``CheckedSuccessSignal.check``; None: a signal without a teacher);
        after a retrained classifier, the direction's data is relabeled."""
        learner = self.learners[direction]
        if not callable(getattr(learner.signal, "check", None)):
            return None
        signal = cast(CheckedSuccessSignal, learner.signal)
        row = learner.replay.pos  # where this step's transition goes
        verdict = str(signal.check(obs, info, self.steps + 1))
        if verdict in ("confirmed", "rejected"):
            learner.answers[row] = verdict == "confirmed"
            learner.answered_row = row
            self.event({"type": "verify", "direction": DIRECTIONS[direction], "step": self.steps + 1, "p": p,
                        "answer": verdict == "confirmed", "truth": gt})
        if signal.update():
            _relabel_success(learner, self.cfg)
        return verdict

    @staticmethod
    def probability(signal: SuccessSignal, obs: Obs) -> float:
        return float(signal(obs).detach().float().cpu()[0])

    def maybe_intervene(self, direction: int) -> bool:
        """Call for help if the pair is stuck; the world is then put in a start state of ``direction``. Whether it
        was."""
        reason = self.backend.stuck_reason()
        if reason is None and self.unsolved_in_row >= self.cfg.stuck_attempts:
            reason = f"{self.unsolved_in_row} attempts in a row made no progress"
        if reason is None:
            return False
        self.interventions += 1
        self.unsolved_in_row = 0
        self.backend.intervene(direction, reason)
        self.event({"type": "intervention", "step": self.steps, "direction": DIRECTIONS[direction], "reason": reason})
        return True

    def on_step(self) -> None:
        if self.steps >= self.next_eval:
            self.next_eval += self.cfg.eval_every
            self.evaluate()
        if self.steps >= self.next_log:
            self.next_log += self.cfg.log_every
            self.log()

    def event(self, row: dict[str, Any]) -> None:
        self.events.write(json.dumps(_finite_or_none(row)) + "\n")
        self.events.flush()

    def evaluate(self) -> None:
        row: dict[str, float] = {"step": float(self.steps)}
        for i, learner in enumerate(self.learners):
            env = self.backend.make_eval_env(i) if self.cfg.eval_episodes else None
            row[DIRECTIONS[i]] = float("nan") if env is None else evaluate(
                learner.policy, env, self.cfg.eval_episodes, seed=10_000).success_rate
        self.evals.append(row)
        self.event({"type": "eval", **row})

    def metrics(self) -> dict[str, float]:
        m = {**self.stats[0].metrics("forward/"), **self.stats[1].metrics("backward/")}
        for i, learner in enumerate(self.learners):  # a verified signal's verdict counts
            signal_metrics = getattr(learner.signal, "metrics", None)
            if signal_metrics is not None:
                m.update({f"{DIRECTIONS[i]}/{k}": float(v) for k, v in signal_metrics().items()})
        n, hours = self.steps, self.steps / self.control_hz / 3600.0
        m.update({"interventions": float(self.interventions),
                  "self_resets": float(getattr(self.backend, "self_resets", 0)),
                  "interventions_per_1k_steps": 1000.0 * self.interventions / n if n else float("nan"),
                  "interventions_per_hour": self.interventions / hours if n else float("nan")})
        return m

    def log(self) -> None:
        m = self.metrics()
        for i, learner in enumerate(self.learners):
            n = max(self.stats[i].updates - learner.counted, 1)
            means = {f"{DIRECTIONS[i]}/{k}": float(v) / n for k, v in learner.sums.items()}
            if not all(math.isfinite(v) for v in means.values()):
                raise TrainingDiverged(f"reset-free fine-tuning diverged at step {self.steps} ({DIRECTIONS[i]}): "
                                       f"{means}; last checkpoints kept in {self.run_dir}")
            m.update(means)
            if learner.reward is not None:
                m.update({f"{DIRECTIONS[i]}/{k}": v for k, v in learner.reward.metrics().items()})
            learner.sums, learner.counted = {}, self.stats[i].updates
        if self.evals and self.evals[-1]["step"] == self.steps:
            m.update({f"eval/{d}/success_rate": self.evals[-1][d] for d in DIRECTIONS})
        self.logger.log(self.steps, m)
        self.logged_at = self.steps
        for i, learner in enumerate(self.learners):
            save_checkpoint(self.run_dir / DIRECTIONS[i], self.steps, _payload(learner, self.cfg, m))
        if self.on_progress is not None:
            self.on_progress(self.steps, m)

    def summary(self) -> dict[str, Any]:
        hours = self.steps / self.control_hz / 3600.0
        n = self.steps
        return {
            "steps": n, "tasks": list(self.backend.names), "signals": [x.signal.name for x in self.learners],
            "thresholds": [x.signal.threshold for x in self.learners],
            "success_reward": [x.scale for x in self.learners],
            "can_save_state": self.backend.can_save_state,
            "has_ground_truth": [s.has_ground_truth for s in self.stats],
            "interventions": self.interventions, "self_resets": int(getattr(self.backend, "self_resets", 0)),
            "homes": int(getattr(self.backend, "homes", 0)),
            "interventions_per_1k_steps": 1000.0 * self.interventions / n if n else None,
            "interventions_per_hour": self.interventions / hours if n else None,
            "control_hz": self.control_hz, "robot_hours": hours,
            "eval_before": self.evals[0] if self.evals else None,
            "eval_after": self.evals[-1] if len(self.evals) > 1 else None,
            "config": dataclasses.asdict(self.cfg), "metrics": self.metrics(),
            "confusion": {DIRECTIONS[i]: dict(s.confusion) for i, s in enumerate(self.stats)},
        }

    def close(self) -> None:
        self.logger.close()
        self.events.close()


def _add(learner: _Learner, obs: Obs, action: torch.Tensor, next_obs: Obs, claimed: bool, success: float) -> None:
    """Store one transition; without a learned reward its reward is ``scale * success`` (1/0 by the claim, or the
    signal's probability with ``soft_reward``)."""
    device, norm = learner.loaded.device, learner.loaded.normalizer
    if learner.reward is None:
        reward = torch.full((1,), learner.scale * success, device=device)
    else:
        nan = torch.full((1,), float("nan"))
        reward = learner.reward(obs, action, next_obs, nan).to(device).float() * learner.loaded.offline.reward_scale
    if learner.answered_row != learner.replay.pos:  # the ring wrapped onto an answered row: the answer was for
        learner.answers.pop(learner.replay.pos, None)  # the transition that this one overwrites
    learner.answered_row = None
    learner.replay.add({
        "obs": norm(obs["state"].to(device).float()), "actions": action.to(device),
        "rewards": reward,
        "next_obs": norm(next_obs["state"].to(device).float()),
        "terminals": torch.full((1,), claimed, dtype=torch.bool, device=device)})
    learner.new_transitions += 1


def _observe(learner: _Learner, obs: Obs, before: dict[str, Any], action: torch.Tensor, next_obs: Obs,
             info: dict[str, Any], claimed: bool, time_up: bool, steps: int) -> None:
    """Show the direction's learned reward the step (an attempt is its episode: it ends by a claim, terminal, or at
    the time limit) and let it update at ``steps``; relabel the direction's data when it changed."""
    reward = info.get("reward", torch.full((1,), float("nan")))
    learner.reward.observe(obs, before, action, next_obs, reward, torch.tensor([claimed]),
                           torch.tensor([time_up and not claimed]), info)
    loaded, replay = learner.loaded, learner.replay
    update_and_relabel(learner.reward, steps, (replay.data, replay.size), (learner.offline.data, len(learner.offline)),
                       loaded.normalizer, loaded.offline.reward_scale)


def _relabel_success(learner: _Learner, cfg: ResetFreeConfig) -> None:
    """The success signal changed (a retrained classifier): recompute terminals, and success rewards where the
    success signal gives them, of the offline rows and of the replay's (rows a teacher answered keep the answer)."""
    loaded, replay, signal = learner.loaded, learner.replay, learner.signal
    parts = [(learner.offline.data, torch.from_numpy(offline_probability(signal, loaded)))]
    if replay.size:
        mean = torch.as_tensor(loaded.normalizer.mean, dtype=torch.float32, device=loaded.device)
        std = torch.as_tensor(loaded.normalizer.std, dtype=torch.float32, device=loaded.device)
        with torch.no_grad():
            prob = _state_probability(signal, replay.data["next_obs"][:replay.size] * std + mean)
        for row, answer in learner.answers.items():
            if row < replay.size:  # the row of the step being verified is stored after this, with its answer
                prob[row] = 1.0 if answer else 0.0
        parts.append((replay.data, prob))
    for data, prob in parts:
        rewards, terminals = _success_columns(prob.to(loaded.device), signal.threshold, learner.scale, cfg.soft_reward)
        data["terminals"][:len(prob)] = terminals
        if learner.reward is None:
            data["rewards"][:len(prob)] = rewards


def _update(learner: _Learner, st: DirectionStats, cfg: ResetFreeConfig) -> None:
    agent = learner.loaded.agent
    batch = learner.loaded.train_cfg.iql.batch_size
    n_off = int(round(batch * cfg.offline_ratio))
    target = (learner.new_transitions - cfg.warmup_steps) * cfg.updates_per_step
    if st.updates >= target:
        return
    agent.actor.train()
    while st.updates < target:
        for k, v in agent.update(mixed_batch(learner.offline, learner.replay, batch, n_off)).items():
            learner.sums[k].add_(v) if k in learner.sums else learner.sums.setdefault(k, v.clone())
        st.updates += 1
    agent.actor.eval()


def _critic_warmup(learner: _Learner, cfg: ResetFreeConfig) -> None:
    """``cfg.critic_warmup_updates`` value and critic steps on offline batches (actor untouched)."""
    agent = learner.loaded.agent
    for _ in range(cfg.critic_warmup_updates):
        out = agent.losses(learner.offline.sample(learner.loaded.train_cfg.iql.batch_size))
        gradient_step(agent, {k: v for k, v in out.items() if k != "actor_loss"})


def _payload(learner: _Learner, cfg: ResetFreeConfig, last: dict[str, float]) -> dict[str, Any]:
    signal = learner.signal
    settings = {"reset_free": {**dataclasses.asdict(cfg), "signal": signal.name, "threshold": signal.threshold,
                               "success_reward": learner.scale}}
    return finetune_payload(learner.loaded.payload, learner.loaded.train_cfg, learner.loaded.agent, settings, last)


def _finite_or_none(v: Any) -> Any:
    """JSON-safe copy: NaN / inf become ``null`` (strict JSON has no NaN)."""
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite_or_none(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
