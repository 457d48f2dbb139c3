"""Online fine-tuning: continue IQL (or RLPD) from an offline checkpoint on a mix of offline and new transitions.

Each env step, the (stochastic) policy acts in ``num_envs`` envs; new transitions are labeled by a
``RewardSource``, scaled like the offline rewards, and stored in a device-resident ring buffer. Every
update draws ``offline_ratio`` of the batch from the offline data and the rest from the new transitions.
``algo`` = ``rlpd`` fine-tunes with RLPD instead (``rl/rlpd.py``): from an IQL or BC checkpoint it starts from that
run's offline data and actor (fresh critics); its batches are half offline, half new by default. ``algo`` =
``calql`` (``rl/calql.py``) likewise, or continues a Cal-QL run; new transitions carry ``mc_return`` = -inf, which
turns its calibration off on those rows.

With an env that steps in worker processes (``make_env(..., workers=W)``: it has ``step_async``), the next
action is sent before the updates of the current step, so the envs step while the learner updates; the
policy then acts one step's updates behind (with in-process envs the order is as before: update, then act).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robot_rl.core import EnvSpec, RewardLearner, RewardSource, RobotEnv
from robot_rl.core.config_check import bounded, check_fields
from robot_rl.data import TransitionSampler
from robot_rl.nn.checkpoint import load_checkpoint, save_checkpoint
from robot_rl.nn.device import resolve_device
from robot_rl.nn.normalize import ObsNormalizer
from robot_rl.rl.agent import Agent, optimizer_state, sample_rows
from robot_rl.rl.algorithms import ALGORITHMS, algorithm
from robot_rl.rl.calql import NO_MC_RETURN, refresh_mc_return
from robot_rl.rl.evaluate import evaluate
from robot_rl.rl.graphed import UpdateRunner
from robot_rl.rl.logger import MetricsLogger
from robot_rl.rl.policy import Policy, require_fit
from robot_rl.rl.reward_updates import FixedReward, update_and_relabel
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
    """An online fine-tuning run that starts from an offline checkpoint (IQL; BC or IQL with ``algo`` = ``rlpd``)."""

    env_steps: int = bounded(10_000, ge=1)
    """Environment steps (summed over the batch of envs)."""
    updates_per_env_step: float = bounded(1.0, ge=0)
    """Gradient updates per environment step."""
    offline_ratio: float | None = bounded(None, ge=0, le=1)
    """Fraction of each batch drawn from the offline dataset (the rest from new transitions); default the learner's:
    0.75 for IQL (measured on drawer-open from a 90%-success offline IQL policy with a learned reward, 3000 env steps:
    0.5 dipped to 60-65% success (2 seeds), 0.75 kept 85-90% (6000 steps: 90%, higher return)), 0.5 for RLPD
    (its symmetric sampling)."""
    warmup_env_steps: int = bounded(1000, ge=0)
    """New transitions collected before updates start (then ``updates_per_env_step`` per env step)."""
    capacity: int = bounded(1_000_000, ge=1)
    """Ring-buffer size for new transitions."""
    log_every: int = bounded(1000, ge=1)
    """Log (and check for divergence) every this many env steps."""
    eval_every: int = bounded(5000, ge=0)
    eval_episodes: int = bounded(10, ge=0)
    """Episodes of each periodic evaluation (0: none); episode ``k`` is seeded ``10000 + k``, as in ``eval``."""
    seed: int = bounded(0, ge=0)
    threads: int = bounded(0, ge=0)
    """torch CPU threads of the learner (0: 1 when it runs on CUDA, where more only spin — on the H200 16 threads
    spun while the GPU idled; with env worker processes, the cores less one per worker; with envs in this process,
    torch's default: envs and updates take turns, and on the idle 2-core VM 2 threads fine-tuned the quickstart in
    40 s where 1 thread took 53 s). On a 2-core VM shared with other busy processes, 1 thread was far faster
    (benchmarks/finetune_speed.md): set it there."""

    algo: str | None = None
    """Learner to fine-tune with: the checkpoint's own (default), or ``rlpd`` / ``calql`` (from another learner's
    checkpoint: its offline data and, where the layout matches, its actor; new critics)."""
    critic_warmup: int = bounded(0, ge=0)
    """Critic-only updates on the offline data before the first env step, when the critics start new (``algo``
    other than the checkpoint's, e.g. RLPD from IQL): the actor then first sees a critic of its own behaviour."""
    online_labels: int = bounded(0, ge=0)
    """Preference queries to ask during fine-tuning, in total (0: none, the reward stays as it is). Needs a learned
    reward: every ``label_every`` env steps, pairs of segments of recent rollouts (the reward ensemble's disagreement
    picks them) are labeled through the label store, the ensemble is retrained from where it was on all labels so far
    and the replay buffer relabeled (``robot_rl.rewards.online``)."""
    label_every: int = bounded(5000, ge=1)
    """Env steps between two rounds of online preference labels (with ``online_labels``)."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """Changes to the checkpoint's training config, nested by section, e.g. ``{"rlpd": {"utd": 4}}``
    (``robot-rl finetune --set rlpd.utd=4``)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.algo is not None and self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algo '{self.algo}'; choose one of: {', '.join(ALGORITHMS)}")


class OnlineReplay:
    """Ring buffer of normalized transitions on the training device (with ``mc_return``: a column that stays
    ``NO_MC_RETURN``, for learners whose offline rows carry one)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, seed: int,
                 mc_return: bool = False):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data = {
            "obs": torch.zeros(capacity, obs_dim, device=device),
            "actions": torch.zeros(capacity, act_dim, device=device),
            "rewards": torch.zeros(capacity, device=device),
            "next_obs": torch.zeros(capacity, obs_dim, device=device),
            "terminals": torch.zeros(capacity, dtype=torch.bool, device=device),
        }
        if mc_return:  # Cal-QL's batches: online rows have no Monte-Carlo return, so no calibration on them
            self.data["mc_return"] = torch.full((capacity,), NO_MC_RETURN, device=device)
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
    """An agent restored (or started) from an offline run, with everything online fine-tuning needs."""

    payload: dict[str, Any]
    """The checkpoint it came from."""
    train_cfg: TrainConfig
    agent: Agent
    normalizer: ObsNormalizer
    offline: OfflineData
    device: torch.device
    start: str = ""
    """How the agent started, in words (the checkpoint's agent, or which parts came from it)."""
    new_critics: bool = False
    """The critics start untrained (another learner than the checkpoint's)."""


def load_iql_for_finetuning(checkpoint_dir: Path, target: EnvSpec, total_updates: int) -> LoadedAgent:
    """The agent of an offline state-observation run (IQL, or another online learner), its offline data and
    normalizer, ready to continue for ``total_updates`` updates in an env with spec ``target``."""
    return load_for_finetuning(checkpoint_dir, target, total_updates)


def load_for_finetuning(checkpoint_dir: Path, target: EnvSpec, total_updates: int, algo: str | None = None,
                        overrides: dict[str, Any] | None = None) -> LoadedAgent:
    """Like ``load_iql_for_finetuning``, with learner ``algo`` (default: the checkpoint's) and ``overrides`` of the
    training config (nested by section). Another learner than the checkpoint's starts from its offline data and,
    where it can (``load_actor``), its actor. One-line ``ValueError`` if it cannot."""
    payload, _ = load_checkpoint(checkpoint_dir)
    if payload["config"].get("obs", "state") != "state":
        raise ValueError(f"{checkpoint_dir}: online fine-tuning supports state-observation checkpoints only; this one "
                         f"uses obs={payload['config']['obs']}")
    source = payload["algo"]
    algo = algo or source
    if not algorithm(algo).online:
        online = ", ".join(name for name, entry in ALGORITHMS.items() if entry.online)
        raise ValueError(f"{checkpoint_dir}: online fine-tuning continues a learner with a critic ({online}); this "
                         f"checkpoint is {source} (--algo rlpd or calql starts that learner from its data and actor)")
    config = {**payload["config"], "algo": algo, "device": "auto"}
    for key, value in (overrides or {}).items():  # one level deep: sections such as rlpd.utd
        config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) \
            else value
    try:
        train_cfg = TrainConfig.from_dict(config)
    except TypeError as e:
        raise ValueError(f"{checkpoint_dir}: bad training-config override {overrides}: {e}") from None
    device = resolve_device(train_cfg.device)
    normalizer = ObsNormalizer(**payload["normalizer"])
    require_fit(EnvSpec.from_json(payload["env_spec"]), target)  # before loading (maybe rendering) the data
    offline = load_offline_data(train_cfg, normalizer, payload["reward_scale"])
    train_cfg = dataclasses.replace(train_cfg, steps=max(total_updates, 1))
    agent = make_agent(train_cfg, offline.spec.state_dim, offline.spec.action.dim).to(device)
    if algo == source:
        agent.load_state_dict(payload["agent"])
        start = f"{algo} agent of the checkpoint"
    elif hasattr(agent, "load_actor"):
        prefix = "actor."
        actor = {k[len(prefix):]: v for k, v in payload["agent"].items() if k.startswith(prefix)}
        start = f"{algo} from the {source} checkpoint's offline data: {agent.load_actor(actor)}; critics new"
    else:
        raise ValueError(f"{checkpoint_dir}: cannot fine-tune a {source} checkpoint with {algo}; it continues only "
                         f"its own checkpoints")
    return LoadedAgent(payload, train_cfg, agent, normalizer, offline, device, start, new_critics=algo != source)


def mixed_batch(offline: TransitionSampler, replay: OnlineReplay, batch: int, n_off: int, parts: int = 1
                ) -> dict[str, torch.Tensor]:
    """``parts`` minibatches of ``n_off`` offline transitions and ``batch - n_off`` new ones, stacked: ``[parts *
    batch]`` rows, each minibatch mixed the same way (RLPD splits them for its critic steps)."""
    pieces = [offline.sample(n_off * parts)] if n_off else []
    if batch - n_off:
        pieces.append(replay.sample((batch - n_off) * parts))
    return {k: torch.cat([p[k].unflatten(0, (parts, -1)) for p in pieces], dim=1).flatten(0, 1) for k in pieces[0]}


def _mc_return_refresh(offline: OfflineData, sampler: TransitionSampler, agent: Agent) -> Callable[[], None] | None:
    """Cal-QL: after an online relabel of the offline rewards, recompute their Monte-Carlo returns
    (``refresh_mc_return``); None for learners without them."""
    if "mc_return" not in offline.arrays or offline.episode_index is None:
        return None
    return functools.partial(refresh_mc_return, sampler.data, offline.episode_index, float(agent.config.discount))


def finetune(checkpoint_dir: Path, env: RobotEnv, reward: RewardSource, cfg: FinetuneConfig, run_dir: Path,
             on_log: Callable[[int, dict[str, float]], None] | None = None,
             learner: RewardLearner | None = None) -> tuple[Agent, dict[str, float]]:
    """Fine-tune the agent of ``checkpoint_dir`` (or ``cfg.algo`` started from it) online in ``env``; write
    checkpoints and metrics to ``run_dir``. ``learner`` (usually ``reward`` itself): a reward that learns online;
    when it changes, the new transitions (and the offline ones, where it labeled those) are relabeled."""
    total_updates = max(int((cfg.env_steps - cfg.warmup_env_steps) * cfg.updates_per_env_step), 1)
    loaded = load_for_finetuning(checkpoint_dir, env.spec, total_updates, cfg.algo, cfg.train_overrides)
    payload, train_cfg, agent, normalizer, offline, device = (
        loaded.payload, loaded.train_cfg, loaded.agent, loaded.normalizer, loaded.offline, loaded.device)
    learner = learner or FixedReward(cfg.online_labels)
    ratio = algorithm(train_cfg.algo).offline_ratio if cfg.offline_ratio is None else cfg.offline_ratio
    cfg = dataclasses.replace(cfg, algo=train_cfg.algo, offline_ratio=ratio)  # as resolved, for the checkpoint
    torch.manual_seed(cfg.seed)
    offline_sampler = TransitionSampler(offline.arrays, device, seed=cfg.seed)
    replay = OnlineReplay(cfg.capacity, offline.spec.state_dim, offline.spec.action.dim, device, cfg.seed + 1,
                          mc_return="mc_return" in offline.arrays)
    refresh = _mc_return_refresh(offline, offline_sampler, agent)
    policy = Policy(agent.actor, normalizer, offline.spec)
    logger = MetricsLogger(run_dir)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    batch, parts = agent.config.batch_size, sample_rows(agent.config) // agent.config.batch_size
    n_off = int(round(batch * ratio))
    obs, info = env.reset(seed=cfg.seed)
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
    runner = UpdateRunner(agent, lambda: mixed_batch(offline_sampler, replay, batch, n_off, parts),
                          [offline_sampler.generator, replay.generator], k, path, schedule_length=total_updates + 1)
    print(f"finetune: {loaded.start}; batches {n_off}/{batch} offline", file=sys.stderr, flush=True)
    print(f"finetune: {describe_path(train_cfg, device)}", file=sys.stderr, flush=True)
    critic_step = getattr(agent, "critic_step", None)
    warmup = cfg.critic_warmup if loaded.new_critics and critic_step is not None else 0
    try:
        if warmup and critic_step is not None:
            print(f"finetune: {warmup} critic-only updates on the offline data first", file=sys.stderr, flush=True)
            for _ in range(warmup):
                critic_step(offline_sampler.sample(batch))
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
            learner.observe(obs, info, action, next_obs, res.reward, res.terminated, res.truncated, res.info)
            episode_return += r.cpu()
            for i in torch.nonzero(done).flatten().tolist():
                returns.append(float(episode_return[i]))
                episode_return[i] = 0.0
            obs, info = res.obs, res.info
            env_steps += env.num_envs
            update_and_relabel(learner, env_steps, (replay.data, replay.size),
                               (offline_sampler.data, len(offline_sampler)), normalizer, offline.reward_scale, refresh)
            log_due = env_steps >= next_log or env_steps >= cfg.env_steps
            eval_due = log_due and cfg.eval_episodes > 0 and (env_steps >= next_eval or env_steps >= cfg.env_steps)
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
                means.update(learner.metrics())
                if eval_due:
                    next_eval += cfg.eval_every
                    agent.actor.eval()
                    means.update(evaluate(policy, env, cfg.eval_episodes, seed=10_000).as_metrics())
                    obs, info = env.reset(seed=cfg.seed + env_steps)
                    episode_return.zero_()
                    learner.restart()
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


def finetune_payload(base: dict[str, Any], train_cfg: TrainConfig, agent: Agent, settings: dict[str, Any],
                     last: dict[str, float]) -> dict[str, Any]:
    """A complete checkpoint of a fine-tuned agent: the offline run's payload with the agent, its optimizer and
    schedule, the metrics, and ``settings`` (e.g. ``{"finetune": ...}``) replacing what they name."""
    return {**base, "algo": train_cfg.algo, "config": train_cfg.to_dict(), **settings, "agent": agent.state_dict(),
            "optimizer": optimizer_state(agent.optimizer), "scheduler": agent.scheduler.state_dict(), "metrics": last}
