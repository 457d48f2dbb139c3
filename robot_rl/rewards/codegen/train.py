"""Training one candidate reward (runs in a pool worker): the candidate's code is evaluated only inside the sandbox,
never in this process.

Trainers (``TrainBudget.trainer``):

- ``iql`` (default): relabel an offline dataset (``job.dataset``; the search collects a ``suboptimal`` one when
  none is given) with the candidate reward, train offline IQL for ``iql_steps`` updates, evaluate. On 2 CPU cores,
  3,000 updates take ~30 s and reach 90% drawer-open success with the simulator's reward (10 eval episodes), so a
  K=4 iteration fits in a few minutes and success differs between rewards.
- ``ppo``: Stable-Baselines3 PPO online in the sim through ``to_sb3_vec_env``, with the sandboxed reward replacing
  the env's reward (``SandboxRewardVecEnv``). Needs far more steps to say anything on manipulation tasks
  (20,000 steps: 0% drawer-open success with the simulator's own reward), so it suits cheap locomotion tasks or
  GPU-sized budgets.
- ``none``: no training; only the label agreement (for datasets without a simulator, e.g. from a real robot).

Every trainer records per-component statistics (mean, min, max) at ``stat_points`` points of training (Eureka's
reflection): PPO over its own rollouts, IQL over one rollout of the current policy at each point, plus the
dataset's statistics. Ground-truth success comes from ``info["success"]`` through ``robot_rl.rl.evaluate``.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec

TRAINERS = ("iql", "ppo", "none")
RewardFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


class CandidateTimeout(RuntimeError):
    """The candidate ran past its wall-clock budget."""


@dataclass(frozen=True)
class TrainBudget:
    """How each candidate is trained and evaluated."""

    trainer: str = "iql"
    iql_steps: int = 3000
    """IQL updates (batch 256, reference hyperparameters)."""
    ppo_steps: int = 20_000
    """PPO environment steps."""
    ppo_envs: int = 4
    eval_episodes: int = 10
    stat_points: int = 10
    """Points of training at which component statistics are taken."""
    seed: int = 0
    threads: int = 1
    """torch threads per candidate (candidates run in parallel: one each)."""

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"unknown trainer '{self.trainer}'; choose one of {', '.join(TRAINERS)}")
        for name in ("iql_steps", "ppo_steps", "ppo_envs", "eval_episodes", "stat_points", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"budget {name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class CandidateJob:
    """Everything a worker needs (picklable)."""

    id: str
    iteration: int
    index: int
    code: str
    task: str | None
    """Sim task name (``None``: trainer ``none`` on a dataset's spec)."""
    spec_json: str
    budget: TrainBudget
    dataset: str | None = None
    """Offline data for ``iql``."""
    preferences: Any = None
    """``select.Preferences`` for label agreement (``None``: not scored on labels)."""
    sandbox_limits: dict[str, Any] = field(default_factory=dict)
    """``SandboxLimits`` fields."""
    deadline_s: float = 900.0
    """Wall-clock budget; past it the candidate stops with a timeout (the pool also kills it a little later)."""


def open_reward(code: str, spec: EnvSpec, limits: dict[str, Any] | None = None) -> Any:
    """The sandbox that evaluates ``code``: callable ``(states, actions) -> (reward, components)``, ``close()``;
    raises ``GateError`` at once for code the gate rejects."""
    from robot_rl.rewards.codegen.sandbox import Sandbox, SandboxLimits

    return Sandbox(code, spec, SandboxLimits(**(limits or {})))


class StatsTracker:
    """Per-term (``reward`` and each component) mean / min / max over windows of training."""

    def __init__(self) -> None:
        self.points: list[dict[str, Any]] = []
        self._acc: dict[str, list[float]] = {}
        self._episodes: list[bool] = []

    def add(self, reward: np.ndarray, components: dict[str, np.ndarray]) -> None:
        for name, values in {"reward": reward, **components}.items():
            v = np.asarray(values, np.float64)
            if v.size == 0:
                continue
            acc = self._acc.setdefault(name, [0.0, 0.0, math.inf, -math.inf])
            acc[0] += float(v.sum())
            acc[1] += v.size
            acc[2] = min(acc[2], float(v.min()))
            acc[3] = max(acc[3], float(v.max()))

    def episode(self, success: bool) -> None:
        self._episodes.append(bool(success))

    def flush(self, step: int) -> None:
        terms = {k: {"mean": a[0] / a[1], "min": a[2], "max": a[3]} for k, a in self._acc.items() if a[1]}
        success = float(np.mean(self._episodes)) if self._episodes else None
        self.points.append({"step": step, "success": success, "episodes": len(self._episodes), "terms": terms})
        self._acc, self._episodes = {}, []


def run_candidate(job: CandidateJob) -> dict[str, Any]:
    """Train and evaluate one candidate; never raises: failures come back as ``status: failed`` with a reason."""
    start = time.monotonic()
    result: dict[str, Any] = {"id": job.id, "iteration": job.iteration, "index": job.index,
                              "trainer": job.budget.trainer, "status": "ok", "reason": None}
    reward_fn = None
    try:
        import torch

        torch.set_num_threads(job.budget.threads)
        spec = EnvSpec.from_json(job.spec_json)
        reward_fn = open_reward(job.code, spec, job.sandbox_limits)
        deadline = start + job.deadline_s
        if job.preferences is not None:
            from robot_rl.rewards.codegen.select import label_agreement

            result["agreement"] = label_agreement(job.preferences, reward_fn)
        if job.budget.trainer == "iql":
            result.update(_train_iql(job, spec, reward_fn, deadline))
        elif job.budget.trainer == "ppo":
            result.update(_train_ppo(job, spec, reward_fn, deadline))
    except CandidateTimeout as e:
        result.update(status="timeout", reason=str(e))
    except Exception as e:
        result.update(status="failed", reason=_one_line(e))
    finally:
        if reward_fn is not None:
            reward_fn.close()
    result["seconds"] = time.monotonic() - start
    return result


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    from robot_rl.rewards.codegen.errors import RewardCodeError

    if isinstance(e, RewardCodeError):  # already one line that says what and where
        return text
    where = traceback.extract_tb(e.__traceback__)
    last = f" ({os.path.basename(where[-1].filename)}:{where[-1].lineno})" if where else ""
    return f"{type(e).__name__}: {text}{last}"


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise CandidateTimeout("ran past its wall-clock budget (stopped)")


# ------------------------------------------------------------------------------------------------------------ IQL


def relabel_dataset(dataset: str, spec: EnvSpec, reward_fn: RewardFn, chunk: int = 50_000
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The transitions of ``dataset`` with ``reward_fn``'s rewards (``rewards``), and its components over them
    (``--check-reply`` and the iql trainer both go through here)."""
    from robot_rl.data import Dataset

    with Dataset(dataset) as ds:
        problems = ds.spec.compatible_with(spec)
        if problems:
            raise ValueError(f"{dataset}: dataset of '{ds.spec.name}' does not fit '{spec.name}': "
                             + "; ".join(problems))
        t = ds.transitions()
    rewards: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(t["actions"]), chunk):
        reward, comps = reward_fn(t["next_states"][i:i + chunk], t["actions"][i:i + chunk])
        rewards.append(np.asarray(reward, np.float32))
        for name, values in comps.items():
            parts.setdefault(name, []).append(np.asarray(values, np.float32))
    t["rewards"] = np.concatenate(rewards) if rewards else np.zeros(0, np.float32)
    return t, {name: np.concatenate(v) for name, v in parts.items()}


def _relabel(job: CandidateJob, spec: EnvSpec, reward_fn: RewardFn, chunk: int = 50_000
             ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The dataset's transitions with the candidate's rewards, and the rewards' statistics over the dataset."""
    assert job.dataset is not None
    t, components = relabel_dataset(job.dataset, spec, reward_fn, chunk)
    tracker = StatsTracker()
    tracker.add(t["rewards"], components)
    tracker.flush(0)
    return t, tracker.points[0]["terms"]


def _train_iql(job: CandidateJob, spec: EnvSpec, reward_fn: RewardFn, deadline: float) -> dict[str, Any]:
    if job.dataset is None or job.task is None:
        raise ValueError("the iql trainer needs a sim task and an offline dataset")
    b = job.budget
    t, dataset_terms = _relabel(job, spec, reward_fn)
    tracker = StatsTracker()

    def at_mark(env: Any, policy: Callable[[dict[str, Any]], Any], step: int) -> None:
        _rollout(env, policy, reward_fn, tracker, b.seed + step)
        tracker.flush(step)

    result = train_iql(job.task, spec, t, b, deadline, at_mark)
    return {"steps": b.iql_steps, "stats": tracker.points, "dataset_stats": dataset_terms, **result}


def train_iql(task: str, spec: EnvSpec, transitions: dict[str, np.ndarray], budget: TrainBudget,
              deadline: float = math.inf,
              at_mark: Callable[[Any, Callable[[dict[str, Any]], Any], int], None] | None = None) -> dict[str, Any]:
    """The iql trainer on ``transitions`` with the rewards they carry (a candidate's, or the simulator's for a
    baseline): reward scale and state normalization from the data, ``budget.iql_steps`` updates, then
    ``budget.eval_episodes`` episodes on the fixed evaluation layouts (``rl.evaluate``'s seed), so that rewards
    are compared on the same episodes. ``at_mark(env, policy, step)`` runs at ``budget.stat_points`` points."""
    import torch

    from robot_rl.data import TransitionSampler
    from robot_rl.envs import make_env
    from robot_rl.nn.normalize import ObsNormalizer, reward_scale
    from robot_rl.rl.policy import Policy
    from robot_rl.rl.train import TrainConfig, make_agent

    b = budget
    t = transitions
    returns = np.bincount(t["episode_index"], weights=t["rewards"].astype(np.float64))
    scale = reward_scale(returns, float(spec.max_episode_steps))
    norm = ObsNormalizer.fit(t["states"])
    mean, std = np.asarray(norm.mean, np.float32), np.asarray(norm.std, np.float32)
    arrays = {"obs": (t["states"] - mean) / std, "actions": t["actions"], "rewards": t["rewards"] * scale,
              "next_obs": (t["next_states"] - mean) / std, "terminals": t["terminals"]}
    torch.manual_seed(b.seed)
    cfg = TrainConfig(dataset="", steps=b.iql_steps, seed=b.seed, device="cpu")
    agent = make_agent(cfg, spec.state_dim, spec.action.dim)
    sampler = TransitionSampler(arrays, "cpu", seed=b.seed)
    env = make_env(task, num_envs=min(b.eval_episodes, 5))
    marks = {max(1, round(b.iql_steps * (p + 1) / b.stat_points)) for p in range(b.stat_points)}
    try:
        policy = Policy(agent.actor, norm, spec)
        for step in range(1, b.iql_steps + 1):
            agent.train()
            agent.update(sampler.sample(cfg.iql.batch_size))
            if step in marks:
                _check_deadline(deadline)
                if at_mark is not None:
                    at_mark(env, policy, step)
        return _evaluate(Policy(agent.actor, norm, spec), env, b.eval_episodes)
    finally:
        env.close()


def _rollout(env: Any, policy: Callable[[dict[str, Any]], Any], reward_fn: RewardFn, tracker: StatsTracker,
             seed: int) -> None:
    """One episode per env slot with the current policy; candidate terms on the states after each step."""
    import torch

    obs, _ = env.reset(seed=seed)
    after, actions = [], []
    success = np.zeros(env.num_envs, bool)
    with torch.no_grad():
        for _ in range(env.spec.max_episode_steps):
            action = policy(obs)
            res = env.step(action)
            state = res.obs["state"].clone()
            done = res.terminated | res.truncated
            if bool(done.any()):
                state[done] = res.info["final_obs"]["state"][done]
            after.append(state.numpy())
            actions.append(action.numpy())
            if "success" in res.info:
                success |= res.info["success"].numpy()
            obs = res.obs
            if bool(done.all()):
                break
    reward, comps = reward_fn(np.concatenate(after), np.concatenate(actions))
    tracker.add(reward, comps)
    for s in success:
        tracker.episode(bool(s))


def _evaluate(policy: Callable[[dict[str, Any]], Any], env: Any, episodes: int) -> dict[str, Any]:
    from robot_rl.rl.evaluate import evaluate

    r = evaluate(policy, env, episodes)
    return {"success_rate": None if math.isnan(r.success_rate) else r.success_rate,
            "eval_return": r.return_mean, "eval_episodes": episodes}


# ------------------------------------------------------------------------------------------------------------ PPO


def _train_ppo(job: CandidateJob, spec: EnvSpec, reward_fn: RewardFn, deadline: float) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO

    from robot_rl.envs import make_env
    from robot_rl.envs.adapters import to_sb3_vec_env

    if job.task is None:
        raise ValueError("the ppo trainer needs a sim task")
    b = job.budget
    window = max(1, b.ppo_steps // b.stat_points)
    venv = SandboxRewardVecEnv(to_sb3_vec_env(make_env(job.task, num_envs=b.ppo_envs)), reward_fn, window, deadline)
    n_steps = max(8, min(256, b.ppo_steps // b.ppo_envs))
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=min(64, n_steps * b.ppo_envs), seed=b.seed,
                device="cpu", verbose=0)
    try:
        model.learn(b.ppo_steps)
    finally:
        venv.close()
    if venv.tracker._acc:
        venv.tracker.flush(venv.steps)

    def policy(obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.as_tensor(model.predict(obs["state"].numpy(), deterministic=True)[0])

    env = make_env(job.task, num_envs=min(b.eval_episodes, 5))
    try:
        return {"steps": venv.steps, "stats": venv.tracker.points, **_evaluate(policy, env, b.eval_episodes)}
    finally:
        env.close()


def _vec_env_wrapper() -> type:
    from stable_baselines3.common.vec_env import VecEnvWrapper

    return VecEnvWrapper


class SandboxRewardVecEnv(_vec_env_wrapper()):  # type: ignore[misc]
    """An SB3 ``VecEnv`` whose rewards come from the sandboxed candidate, on the states after each step (the final
    observation where an episode ended); records terms per window of ``window`` env steps and episode success."""

    def __init__(self, venv: Any, reward_fn: RewardFn, window: int, deadline: float) -> None:
        super().__init__(venv)
        self.reward_fn = reward_fn
        self.window = window
        self.deadline = deadline
        self.tracker = StatsTracker()
        self.steps = 0
        self._next_flush = window
        self._actions = np.zeros((self.num_envs, 0), np.float32)
        self._success = np.zeros(self.num_envs, bool)

    def reset(self) -> Any:
        self._success[:] = False
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.clip(np.asarray(actions, np.float32).reshape(self.num_envs, -1), -1.0, 1.0)
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, env_reward, dones, infos = self.venv.step_wait()
        after = np.array(obs, np.float32, copy=True)
        for done in np.flatnonzero(dones):
            after[done] = infos[done]["terminal_observation"]
        reward, comps = self.reward_fn(after, self._actions)
        self.tracker.add(reward, comps)
        for i, info in enumerate(infos):
            info["env_reward"] = float(env_reward[i])
            self._success[i] |= bool(info.get("success", False))
            if dones[i]:
                self.tracker.episode(bool(self._success[i]))
                self._success[i] = False
        self.steps += self.num_envs
        if self.steps >= self._next_flush:
            self.tracker.flush(self.steps)
            self._next_flush += self.window
            _check_deadline(self.deadline)
        return obs, np.asarray(reward, np.float32), dones, infos
