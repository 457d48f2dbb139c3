"""Online fine-tuning: continue IQL from an offline checkpoint on a mix of offline and new transitions.

Each env step, the (stochastic) policy acts in ``num_envs`` envs; new transitions are labeled by a
``RewardSource``, scaled like the offline rewards, and stored in a device-resident ring buffer. Every
update draws ``offline_ratio`` of the batch from the offline data and the rest from the new transitions.

With an env that steps in worker processes (``make_env(..., workers=W)``: it has ``step_async``), the next
action is sent before the updates of the current step, so the envs step while the learner updates; the
policy then acts one step's updates behind (with in-process envs the order is as before: update, then act).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robot_rl.core import EnvSpec, RewardSource, RobotEnv
from robot_rl.core.config_check import bounded, check_fields
from robot_rl.data import TransitionSampler
from robot_rl.nn.checkpoint import load_checkpoint, save_checkpoint
from robot_rl.nn.device import resolve_device
from robot_rl.nn.normalize import ObsNormalizer
from robot_rl.rl.agent import optimizer_state
from robot_rl.rl.algorithms import algorithm
from robot_rl.rl.evaluate import evaluate
from robot_rl.rl.graphed import UpdateRunner
from robot_rl.rl.iql import IQL
from robot_rl.rl.logger import MetricsLogger
from robot_rl.rl.policy import Policy, require_fit
from robot_rl.rl.train import (
    OfflineData,
    TrainConfig,
    TrainingDiverged,
    describe_path,
    load_offline_data,
    make_agent,
    update_path,
)


@dataclass(frozen=True)
class FinetuneConfig:
    """An online fine-tuning run that starts from an offline IQL checkpoint."""

    env_steps: int = bounded(10_000, ge=1)
    """Environment steps (summed over the batch of envs)."""
    updates_per_env_step: float = bounded(1.0, ge=0)
    """Gradient updates per environment step."""
    offline_ratio: float = bounded(0.75, ge=0, le=1)
    """Fraction of each batch drawn from the offline dataset (the rest from new transitions). Measured on drawer-open
    from a 90%-success offline IQL policy with a learned reward, 3000 env steps: 0.5 dipped to 60-65% success
    (2 seeds), 0.75 kept 85-90% (6000 steps: 90%, higher return)."""
    warmup_env_steps: int = bounded(1000, ge=0)
    """New transitions collected before updates start (then ``updates_per_env_step`` per env step)."""
    capacity: int = bounded(1_000_000, ge=1)
    """Ring-buffer size for new transitions."""
    log_every: int = bounded(1000, ge=1)
    """Log (and check for divergence) every this many env steps."""
    eval_every: int = bounded(5000, ge=0)
    eval_episodes: int = bounded(10, ge=0)
    seed: int = bounded(0, ge=0)
    threads: int = bounded(0, ge=0)
    """torch CPU threads of the learner (0: 1 when it runs on CUDA, where more only spin — on the H200 16 threads
    spun while the GPU idled; with env worker processes, the cores less one per worker; with envs in this process,
    torch's default: envs and updates take turns, and on the idle 2-core VM 2 threads fine-tuned the quickstart in
    40 s where 1 thread took 53 s). On a 2-core VM shared with other busy processes, 1 thread was far faster
    (benchmarks/finetune_speed.md): set it there."""

    def __post_init__(self) -> None:
        check_fields(self)


class OnlineReplay:
    """Ring buffer of normalized transitions on the training device."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, seed: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data = {
            "obs": torch.zeros(capacity, obs_dim, device=device),
            "actions": torch.zeros(capacity, act_dim, device=device),
            "rewards": torch.zeros(capacity, device=device),
            "next_obs": torch.zeros(capacity, obs_dim, device=device),
            "terminals": torch.zeros(capacity, dtype=torch.bool, device=device),
        }
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self._filled = torch.zeros((), dtype=torch.int64, device=device)
        """``size`` on the device: a CUDA graph that samples keeps reading the current fill, not a captured one."""

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        n = batch["obs"].shape[0]
        idx = (torch.arange(n, device=self.data["obs"].device) + self.pos) % self.capacity
        for k, v in batch.items():
            self.data[k][idx] = v.to(self.data[k].dtype)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self._filled.fill_(self.size)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """B stored transitions uniformly with replacement (a 62-bit draw modulo the fill: bias < 1e-12)."""
        if self.size == 0:
            raise ValueError("the online replay is empty: collect transitions before sampling")
        draw = torch.randint(2**62, (batch_size,), device=self.data["obs"].device, generator=self.generator)
        idx = draw % self._filled
        return {k: v[idx] for k, v in self.data.items()}


@dataclass
class LoadedAgent:
    """An IQL agent restored from an offline run, with everything online fine-tuning needs."""

    payload: dict[str, Any]
    """The checkpoint it came from."""
    train_cfg: TrainConfig
    agent: IQL
    normalizer: ObsNormalizer
    offline: OfflineData
    device: torch.device


def load_iql_for_finetuning(checkpoint_dir: Path, target: EnvSpec, total_updates: int) -> LoadedAgent:
    """The IQL agent of an offline state-observation run, its offline data and normalizer, ready to continue
    for ``total_updates`` updates in an env with spec ``target``; one-line ``ValueError`` if it cannot."""
    payload, _ = load_checkpoint(checkpoint_dir)
    if payload["config"].get("obs", "state") != "state":
        raise ValueError(f"{checkpoint_dir}: online fine-tuning supports state-observation checkpoints only; this one "
                         f"uses obs={payload['config']['obs']}")
    if not algorithm(payload["algo"]).online:
        raise ValueError(f"{checkpoint_dir}: online fine-tuning continues IQL; this checkpoint is {payload['algo']}")
    train_cfg = TrainConfig.from_dict({**payload["config"], "device": "auto"})
    device = resolve_device(train_cfg.device)
    normalizer = ObsNormalizer(**payload["normalizer"])
    require_fit(EnvSpec.from_json(payload["env_spec"]), target)  # before loading (maybe rendering) the data
    offline = load_offline_data(train_cfg, normalizer, payload["reward_scale"])
    train_cfg = dataclasses.replace(train_cfg, steps=max(total_updates, 1))
    agent = make_agent(train_cfg, offline.spec.state_dim, offline.spec.action.dim).to(device)
    agent.load_state_dict(payload["agent"])
    assert isinstance(agent, IQL)
    return LoadedAgent(payload, train_cfg, agent, normalizer, offline, device)


def mixed_batch(offline: TransitionSampler, replay: OnlineReplay, batch: int, n_off: int) -> dict[str, torch.Tensor]:
    """``n_off`` offline transitions and ``batch - n_off`` new ones, concatenated."""
    parts = [offline.sample(n_off)] if n_off else []
    if batch - n_off:
        parts.append(replay.sample(batch - n_off))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def finetune(checkpoint_dir: Path, env: RobotEnv, reward: RewardSource, cfg: FinetuneConfig, run_dir: Path,
             on_log: Callable[[int, dict[str, float]], None] | None = None) -> tuple[IQL, dict[str, float]]:
    """Fine-tune the IQL agent of ``checkpoint_dir`` online in ``env``; write checkpoints and metrics to ``run_dir``."""
    total_updates = max(int((cfg.env_steps - cfg.warmup_env_steps) * cfg.updates_per_env_step), 1)
    loaded = load_iql_for_finetuning(checkpoint_dir, env.spec, total_updates)
    payload, train_cfg, agent, normalizer, offline, device = (
        loaded.payload, loaded.train_cfg, loaded.agent, loaded.normalizer, loaded.offline, loaded.device)
    torch.manual_seed(cfg.seed)
    offline_sampler = TransitionSampler(offline.arrays, device, seed=cfg.seed)
    replay = OnlineReplay(cfg.capacity, offline.spec.state_dim, offline.spec.action.dim, device, cfg.seed + 1)
    policy = Policy(agent.actor, normalizer, offline.spec)
    logger = MetricsLogger(run_dir)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    batch = train_cfg.iql.batch_size
    n_off = int(round(batch * cfg.offline_ratio))
    obs, _ = env.reset(seed=cfg.seed)
    env_steps, updates, episode_return = 0, 0, torch.zeros(env.num_envs)
    returns: list[float] = []
    sums: dict[str, torch.Tensor] = {}
    last: dict[str, float] = {}
    next_log = cfg.log_every
    next_eval = cfg.eval_every
    overlap = hasattr(env, "step_async")  # a SubprocEnv: its workers step while this process updates
    next_action: torch.Tensor | None = None
    threads = _set_threads(cfg.threads, device, env)
    path, k = update_path(train_cfg, device)
    runner = UpdateRunner(agent, lambda: mixed_batch(offline_sampler, replay, batch, n_off),
                          [offline_sampler.generator, replay.generator], k, path, schedule_length=total_updates + 1)
    print(f"finetune: {describe_path(train_cfg, device)}", file=sys.stderr, flush=True)
    try:
        while env_steps < cfg.env_steps:
            if next_action is None:
                agent.actor.eval()
                action = policy(obs, deterministic=False, generator=gen)
                res = env.step(action.to(env.device))
            else:
                action, next_action = next_action, None
                res = env.step_wait()  # type: ignore[attr-defined]
            next_obs = dict(res.obs)
            done = res.terminated | res.truncated
            if bool(done.any()):  # rows that reset: what the step ended in (state, frames a reward reads)
                final = res.info["final_obs"]
                for key in next_obs.keys() & final.keys():
                    rows = done.view(-1, *([1] * (next_obs[key].dim() - 1))).to(next_obs[key].device)
                    next_obs[key] = torch.where(rows, final[key], next_obs[key])
            r = reward(obs, action, next_obs, res.reward)
            replay.add({"obs": normalizer(obs["state"].to(device).float()), "actions": action,
                        "rewards": (r * offline.reward_scale).to(device),
                        "next_obs": normalizer(next_obs["state"].to(device).float()),
                        "terminals": res.terminated.to(device)})
            episode_return += r.cpu()
            for i in torch.nonzero(done).flatten().tolist():
                returns.append(float(episode_return[i]))
                episode_return[i] = 0.0
            obs = res.obs
            env_steps += env.num_envs
            log_due = env_steps >= next_log or env_steps >= cfg.env_steps
            eval_due = log_due and (env_steps >= next_eval or env_steps >= cfg.env_steps)
            if overlap and env_steps < cfg.env_steps and not eval_due:
                # act now with the policy before this step's updates, and let the envs step during them
                agent.actor.eval()
                next_action = policy(obs, deterministic=False, generator=gen)
                env.step_async(next_action.to(env.device))  # type: ignore[attr-defined]
            agent.actor.train()
            due = math.ceil((env_steps - cfg.warmup_env_steps) * cfg.updates_per_env_step) - updates
            if due > 0:  # one CUDA-graph replay per K updates on CUDA, an eager loop elsewhere
                for key, v in runner.run(due).items():
                    sums[key].add_(v) if key in sums else sums.setdefault(key, v.clone())  # in place
                updates += due
            if log_due:
                next_log += cfg.log_every
                n = max(updates - int(last.get("updates", 0)), 1)
                means = {k: float(v) / n for k, v in sums.items()}
                if not all(math.isfinite(v) for v in means.values()):
                    raise TrainingDiverged(f"fine-tuning diverged at env step {env_steps}: {means}; "
                                           f"last checkpoint kept in {run_dir}")
                recent = returns[-20:]
                means.update({"updates": float(updates), "train/return_mean": sum(recent) / max(len(recent), 1)})
                if eval_due:
                    next_eval += cfg.eval_every
                    agent.actor.eval()
                    means.update(evaluate(policy, env, cfg.eval_episodes, seed=10_000).as_metrics())
                    obs, _ = env.reset(seed=cfg.seed + env_steps)
                    episode_return.zero_()
                logger.log(env_steps, means)
                last, sums = means, {}
                settings = {"finetune": dataclasses.asdict(cfg)}
                save_checkpoint(run_dir, env_steps, finetune_payload(payload, train_cfg, agent, settings, last))
                if on_log is not None:
                    on_log(env_steps, means)
    finally:
        logger.close()
        torch.set_num_threads(threads)
    return agent, last


def _set_threads(requested: int, device: torch.device, env: RobotEnv) -> int:
    """Set torch's CPU threads for fine-tuning (see ``FinetuneConfig.threads``), say so once on stderr; returns the
    number before, to restore."""
    before = torch.get_num_threads()
    workers = len(getattr(env, "worker_pids", ()))
    if requested > 0:
        n, why = requested, "threads setting"
    elif device.type == "cuda":
        n, why = 1, "learner on CUDA: one thread launches the kernels, more would only spin"
    elif workers:
        n = max(1, min(before, (os.cpu_count() or 1) - workers))
        why = "one core left to each env worker"
    else:  # envs step in this process, between updates: nothing runs beside the learner
        n, why = before, "torch's default: the envs step between updates, in this process"
    torch.set_num_threads(n)
    where = f"{workers} env worker process(es)" if workers else "envs in this process"
    print(f"finetune: torch CPU threads {n} ({why}); learner on {device}; {where}", file=sys.stderr, flush=True)
    return before


def finetune_payload(base: dict[str, Any], train_cfg: TrainConfig, agent: IQL, settings: dict[str, Any],
                     last: dict[str, float]) -> dict[str, Any]:
    """A complete checkpoint of a fine-tuned agent: the offline run's payload with the agent, its optimizer and
    schedule, the metrics, and ``settings`` (e.g. ``{"finetune": ...}``) replacing what they name."""
    return {**base, "config": train_cfg.to_dict(), **settings, "agent": agent.state_dict(),
            "optimizer": optimizer_state(agent.optimizer), "scheduler": agent.scheduler.state_dict(), "metrics": last}
