"""Offline training (IQL, BC, RLPD or Cal-QL) from an HDF5 dataset into a run folder.

``RUN_DIR`` gets ``config.yaml``, ``metrics.jsonl`` and TensorBoard events, ``checkpoints/``, ``curves.png``
and ``report.md``. The dataset and the sampler live on the training device; the hot loop accumulates
metrics on the device and syncs only every ``log_every`` steps.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from robot_rl.core import EnvSpec
from robot_rl.core.config_check import bounded, check_fields, config_from_dict
from robot_rl.data import Dataset, DatasetError, TransitionSampler
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from robot_rl.nn.cuda_graph import STEPS_PER_REPLAY
from robot_rl.nn.device import resolve_device
from robot_rl.nn.normalize import ObsNormalizer, reward_scale
from robot_rl.rl import algorithms
from robot_rl.rl.agent import Agent, optimizer_state, sample_rows, single_step
from robot_rl.rl.calql import CalQLConfig, mc_returns
from robot_rl.rl.compiled import compile_losses
from robot_rl.rl.graphed import UpdateRunner, choose_path
from robot_rl.rl.image_data import FrameSampler, RenderProgress, next_frame_rows, step_frames
from robot_rl.rl.image_iql import EncoderConfig
from robot_rl.rl.iql import IQLConfig
from robot_rl.rl.logger import MetricsLogger
from robot_rl.rl.rlpd import RLPDConfig

OBS_TYPES = ("state", "image", "image_only")


@dataclass(frozen=True)
class TrainConfig:
    """An offline training run."""

    dataset: str
    """Path of the HDF5 dataset."""
    algo: str = "iql"
    """The learner, a name in ``rl.algorithms.ALGORITHMS`` (``iql``, ``bc``, ``rlpd``, ``calql``)."""
    steps: int = bounded(30_000, ge=1)
    """Gradient updates."""
    seed: int = bounded(0, ge=0)
    """Seeds torch, numpy, Python and the sampler: same seed, data and device, same run."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:i]``."""
    reward_key: str = "rewards"
    """Which reward to learn from: ``rewards`` (the active one) or a labeler id such as ``ground_truth``."""
    normalize_rewards: bool = True
    """Scale rewards by (episode length) / (max - min episode return), as the reference IQL does (1000 / ...
    on 1000-step episodes), whatever their source."""
    reward_scale_numerator: float | None = bounded(None, gt=0)
    """With ``normalize_rewards``, rewards are multiplied by this / (max - min episode return). Default: the
    episode length, which is the reference IQL's 1000 on D4RL's 1000-step episodes and keeps per-step rewards
    of order 1 on shorter episodes (on 150-step MetaWorld episodes, 1000 made IQL fall below BC:
    benchmarks/iql_quality.md)."""
    normalize_obs: bool = True
    """Standardize states with the dataset's mean and std."""
    log_every: int = bounded(1000, ge=1)
    checkpoint_every: int = bounded(5000, ge=1)
    threads: int = bounded(0, ge=0)
    """CPU threads for torch (0: torch's default)."""
    compile: bool = False
    """Compile the loss computation with torch.compile (fused kernels; the first update compiles)."""
    cuda_graphs: bool = True
    """On CUDA, run whole updates as CUDA-graph replays (``rl/graphed.py``); false: eager updates."""
    updates_per_call: int = bounded(0, ge=0)
    """Updates captured in one CUDA graph and replayed per call (0: the measured default, 16); CUDA graphs only."""
    obs: str = "state"
    """What the policy sees: ``state``, ``image`` (a camera image and the state) or ``image_only``."""
    camera: str | None = None
    """Camera of image observations (default: the dataset's only stored camera, else the task's)."""
    image_size: int | None = bounded(None, ge=16)
    """Square image size in pixels (default: the stored frames' when every step is stored, else 64); frames
    that the dataset lacks at this size are rendered once from its sim states at load time."""
    iql: IQLConfig = field(default_factory=IQLConfig)
    rlpd: RLPDConfig = field(default_factory=RLPDConfig)
    """RLPD's hyperparameters (``algo`` = ``rlpd``), e.g. ``--set rlpd.utd=20``."""
    calql: CalQLConfig = field(default_factory=CalQLConfig)
    """Cal-QL's hyperparameters (``algo`` = ``calql``), e.g. ``--set calql.cql_alpha=1``."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The image encoder (``obs`` = ``image`` / ``image_only``)."""

    def __post_init__(self) -> None:
        check_fields(self)  # types and the declared ranges (image_size >= 16: the conv encoder's receptive field)
        algorithms.algorithm(self.algo)  # one-line error listing the known names
        if self.obs not in OBS_TYPES:
            raise ValueError(f"unknown obs '{self.obs}'; choose one of: {', '.join(OBS_TYPES)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["iql"]["hidden"] = list(self.iql.hidden)
        d["rlpd"]["hidden"] = list(self.rlpd.hidden)
        d["calql"]["hidden"] = list(self.calql.hidden)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        """From YAML / ``--set`` / a checkpoint's config: unknown keys, types and ranges are one-line
        ``ConfigError``s naming the dotted key (``core.config_check``)."""
        return config_from_dict(TrainConfig, d)

    @property
    def images(self) -> bool:
        return self.obs != "state"


class TrainingDiverged(RuntimeError):
    """A loss became non-finite; the message gives the step, the last finite metrics and the kept checkpoint."""


@dataclass
class OfflineData:
    spec: EnvSpec
    task_text: str
    arrays: dict[str, np.ndarray]
    """``obs``, ``actions``, ``rewards`` (scaled), ``next_obs``, ``terminals`` (normalized obs); ``mc_return`` for
    learners that ask for it (``Algorithm.needs_mc_return``); with images also
    ``frame`` and ``next_frame`` (int64 rows of ``frames``)."""
    normalizer: ObsNormalizer
    reward_scale: float
    episode_returns: np.ndarray
    frames: np.ndarray | None = None
    """uint8 ``[N, S, S, 3]`` frame before every step (image observations only)."""
    camera: str | None = None
    image_size: int | None = None
    episode_index: np.ndarray | None = None
    """int ``[N]``: the episode of every row (rows in step order, episodes contiguous)."""


def load_offline_data(cfg: TrainConfig, normalizer: ObsNormalizer | None = None, scale: float | None = None,
                      on_render: RenderProgress | None = None) -> OfflineData:
    """Read the dataset; refuse unlabeled or NaN rewards naming the episode; fit (or reuse) normalizers.

    With image observations, also a frame for every step (``image_data.step_frames``: stored, or rendered from
    sim states with ``on_render(done, total)`` progress).
    """
    with Dataset(cfg.dataset) as ds:
        t = ds.transitions(reward_key=cfg.reward_key)
        names = ds.episode_names
        spec, task_text = ds.spec, ds.task_text
        bad = ~np.isfinite(t["rewards"])
        if bad.any():
            ep = names[int(t["episode_index"][np.argmax(bad)])]
            raise DatasetError(f"{cfg.dataset}: episode {ep}: reward '{cfg.reward_key}' has NaN values "
                               f"({int(bad.sum())} steps in the dataset); label the dataset first "
                               "(robot-rl label / robot-rl relabel --activate) or pick --reward-key ground_truth")
        frames = step_frames(ds, cfg.camera, cfg.image_size, on_render) if cfg.images else None  # after the check
    returns = np.bincount(t["episode_index"], weights=t["rewards"].astype(np.float64), minlength=len(names))
    if normalizer is None:
        normalizer = ObsNormalizer.fit(t["states"]) if cfg.normalize_obs else ObsNormalizer.identity(spec.state_dim)
    if scale is None:
        numerator = cfg.reward_scale_numerator or float(spec.max_episode_steps)
        scale = reward_scale(returns, numerator) if cfg.normalize_rewards else 1.0
    mean, std = np.asarray(normalizer.mean, np.float32), np.asarray(normalizer.std, np.float32)
    arrays = {
        "obs": (t["states"] - mean) / std,
        "actions": t["actions"],
        "rewards": (t["rewards"] * scale).astype(np.float32),
        "next_obs": (t["next_states"] - mean) / std,
        "terminals": t["terminals"],
    }
    if algorithms.algorithm(cfg.algo).needs_mc_return:  # Cal-QL: return-to-go of the scaled rewards, once
        arrays["mc_return"] = mc_returns(arrays["rewards"], t["episode_index"], t["terminals"],
                                         learner_config(cfg).discount)
    if frames is None:
        return OfflineData(spec, task_text, arrays, normalizer, float(scale), returns,
                           episode_index=t["episode_index"])
    arrays["frame"] = np.arange(len(t["episode_index"]), dtype=np.int64)
    arrays["next_frame"] = next_frame_rows(t["episode_index"])
    return OfflineData(spec, task_text, arrays, normalizer, float(scale), returns, frames.frames, frames.camera,
                       frames.image_size, t["episode_index"])


def learner_config(cfg: TrainConfig) -> Any:
    """The hyperparameters of ``cfg.algo`` (its registry ``section`` of ``cfg``) planned for ``cfg.steps`` updates."""
    return dataclasses.replace(getattr(cfg, algorithms.algorithm(cfg.algo).section), steps=cfg.steps)


def make_agent(cfg: TrainConfig, obs_dim: int, act_dim: int) -> Agent:
    """The run's learner (``cfg.algo`` from the registry) on states, or (``cfg.obs`` image / image_only, with
    ``cfg.image_size`` resolved) on images."""
    iql_cfg = learner_config(cfg)
    if not cfg.images:
        return algorithms.make_agent(cfg.algo, obs_dim, act_dim, iql_cfg)
    if cfg.image_size is None:
        raise ValueError("an image agent needs cfg.image_size (train() resolves it from the dataset)")
    return algorithms.make_agent(cfg.algo, obs_dim, act_dim, iql_cfg, cfg.image_size, cfg.encoder,
                                 use_state=cfg.obs == "image")


def update_path(cfg: TrainConfig, device: torch.device) -> tuple[str, int]:
    """How the run updates: (``"cuda-graph"`` or ``"eager"``, updates per call). A learner whose update is several
    gradient steps (RLPD with ``utd > 1``) runs eagerly: the graph body records one joint step."""
    path = choose_path(device, cfg.cuda_graphs and single_step(learner_config(cfg)))
    return path, (cfg.updates_per_call or STEPS_PER_REPLAY) if path == "cuda-graph" else 1


def describe_path(cfg: TrainConfig, device: torch.device) -> str:
    """One line for the console: which update path a run on ``device`` takes (and why eager on CUDA)."""
    path, k = update_path(cfg, device)
    compiled = ", torch.compile'd losses" if cfg.compile else ""
    if path == "cuda-graph":
        return f"update path: CUDA graph on {device}, {k} updates per replay{compiled}"
    why = ""
    if device.type == "cuda" and cfg.cuda_graphs:
        utd = getattr(learner_config(cfg), "utd", 1)
        why = (f" ({cfg.algo}.utd={utd}: an update is {utd} critic steps then one joint step, which the one-step "
               f"CUDA-graph body does not record; {cfg.algo}.utd=1 runs as a CUDA graph)")
    return f"update path: eager on {device}{compiled}{why}"


def make_runner(cfg: TrainConfig, agent: Agent, sampler: TransitionSampler, device: torch.device,
                schedule_length: int) -> UpdateRunner:
    """The run's ``UpdateRunner`` (compiling the losses first when ``cfg.compile``)."""
    path, k = update_path(cfg, device)
    if cfg.compile:
        compile_losses(agent, device, inside_graph=path == "cuda-graph")
    batch = sample_rows(agent.config)
    return UpdateRunner(agent, lambda: sampler.sample(batch), [sampler.generator], k, path, schedule_length,
                        mark_step=cfg.compile and device.type == "cuda" and path == "eager")


def _payload(cfg: TrainConfig, data: OfflineData, agent: Agent, sampler: TransitionSampler, step: int,
             last: dict[str, float]) -> dict[str, Any]:
    return {
        "format": 1, "algo": cfg.algo, "config": cfg.to_dict(), "env_spec": data.spec.to_json(),
        "task_text": data.task_text, "agent": agent.state_dict(), "optimizer": optimizer_state(agent.optimizer),
        "scheduler": agent.scheduler.state_dict(), "normalizer": dataclasses.asdict(data.normalizer),
        "reward_scale": data.reward_scale, "metrics": last,
        "rng": {"torch": torch.get_rng_state(), "sampler": sampler.generator.get_state(),
                "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }


def _restore(payload: dict[str, Any], agent: Agent, sampler: TransitionSampler) -> int:
    agent.load_state_dict(payload["agent"])
    agent.optimizer.load_state_dict(payload["optimizer"])
    agent.scheduler.load_state_dict(payload["scheduler"])
    rng = payload["rng"]  # generator states are CPU byte tensors, whatever map_location moved them to
    torch.set_rng_state(rng["torch"].cpu())
    sampler.generator.set_state(rng["sampler"].cpu())
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    return int(payload["step"])


def _params_finite(agent: torch.nn.Module) -> bool:
    return bool(torch.stack([torch.isfinite(p).all() for p in agent.parameters()]).all())


ProgressFn = Callable[[int, dict[str, float]], None]


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False, on_log: ProgressFn | None = None,
          on_render: RenderProgress | None = None) -> tuple[Agent, OfflineData, dict[str, float]]:
    """Run (or, with ``resume``, continue) offline training. Returns the agent, the data and the last metrics.

    ``on_log(step, metrics)`` is called every ``log_every`` steps (progress bars, early looks);
    ``on_render(done, total)`` while image observations are rendered from sim states at load time.
    """
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    payload = None
    if resume:
        payload, _ = load_checkpoint(run_dir, map_location=device)
        cfg = TrainConfig.from_dict({**payload["config"], "steps": cfg.steps, "device": cfg.device,
                                     "threads": cfg.threads})
    elif checkpoint_paths(run_dir):
        raise FileExistsError(f"{run_dir} already holds checkpoints; pass --resume to continue or pick a new --out")
    else:  # finetune, eval and resume may run from another folder: record where the data is
        cfg = dataclasses.replace(cfg, dataset=str(Path(cfg.dataset).resolve()))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    normalizer, scale = (ObsNormalizer(**payload["normalizer"]), payload["reward_scale"]) if payload else (None, None)
    data = load_offline_data(cfg, normalizer, scale, on_render)
    if data.frames is not None:  # record the camera and size the data resolved to: policies and resumes use them
        cfg = dataclasses.replace(cfg, camera=data.camera, image_size=data.image_size)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    sampler = (TransitionSampler(data.arrays, device, seed=cfg.seed) if data.frames is None
               else FrameSampler(data.arrays, data.frames, device, seed=cfg.seed))
    agent = make_agent(cfg, data.spec.state_dim, data.spec.action.dim).to(device)
    agent.train()
    step = _restore(payload, agent, sampler) if payload else 0
    runner = make_runner(cfg, agent, sampler, device, schedule_length=cfg.steps + 1)
    logger = MetricsLogger(run_dir, start_step=step)  # rows a killed run logged past its checkpoint go
    last: dict[str, float] = dict(payload.get("metrics", {})) if payload else {}
    sums: dict[str, torch.Tensor] = {}
    count = 0
    try:
        while step < cfg.steps:
            boundary = min(_next_multiple(step, cfg.log_every), _next_multiple(step, cfg.checkpoint_every), cfg.steps)
            n = min(runner.k, boundary - step)
            for k, v in runner.run(n).items():
                sums[k].add_(v) if k in sums else sums.setdefault(k, v.clone())  # in place: no allocation per step
            count += n
            step += n
            at_log = step % cfg.log_every == 0 or step == cfg.steps
            at_ckpt = step % cfg.checkpoint_every == 0 or step == cfg.steps
            if at_log or at_ckpt:
                means = {k: float(v) / count for k, v in sums.items()}  # the one host sync per log interval
                if not all(math.isfinite(v) for v in means.values()) or not _params_finite(agent):
                    raise _diverged(run_dir, step, means, last)
                if at_log:
                    means["actor_lr"] = float(agent.optimizer.param_groups[-1]["lr"])
                    logger.log(step, means)
                    last = {**means, "step": step}
                    sums, count = {}, 0
                if at_ckpt:  # only ever after the finiteness check above
                    save_checkpoint(run_dir, step, _payload(cfg, data, agent, sampler, step, last))
                if at_log and on_log is not None:
                    on_log(step, means)
    finally:
        logger.close()
    return agent, data, last


def _next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``."""
    return (step // every + 1) * every


def _diverged(run_dir: Path, step: int, means: dict[str, float], last: dict[str, float]) -> TrainingDiverged:
    bad = sorted(k for k, v in means.items() if not math.isfinite(v)) or ["parameters"]
    kept = checkpoint_paths(run_dir)
    finite = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step") or "none logged yet"
    return TrainingDiverged(
        f"training diverged at step {step}: {', '.join(bad)} non-finite; last finite metrics "
        f"(step {last.get('step', 0):.0f}): {finite}; last good checkpoint: {kept[-1] if kept else 'none'}")
