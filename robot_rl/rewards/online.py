"""The online preference loop of fine-tuning (PEBBLE / RL-VLM-F): new labels on fresh rollouts while the policy
learns, the reward ensemble retrained from where it was, the replay buffer relabeled.

``OnlinePreferences`` wraps a learned reward (``sources.LearnedReward``) and is both the fine-tuning loop's
``RewardSource`` (the current ensemble's reward) and its ``RewardLearner``:

- every finished online episode is written to ``<run>/online_rollouts.h5`` (the project's dataset format, with the
  simulator's ground truth for the scripted teacher and sim states from which a VLM's or a person's frames are
  rendered);
- every ``label_every`` env steps (a *round*), pairs of segments of the most recent episodes are drawn
  (``pairs.sample_pairs``: ensemble disagreement by default) and answered by the labeler through the label store,
  the same ``label_queries`` as ``robot-rl label``: an answer already stored, by this run or an earlier one, is not
  asked again (the store's key is the query's content), and each new one is stored with the round and env step
  that asked it (``provenance["online"]``);
- the ensemble is retrained, warm-started, on the offline labels it was trained on plus every online label so far
  (``train_reward_model(init=...)``), saved to ``<run>/reward/reward_model.pt``, and the fine-tuning loop relabels
  its buffers with it.

The query budget counts the pairs the loop labels (answered now or from the store), so a rerun with the same seed
walks the same rounds and pays for nothing it asked before. Each round is a line of ``<run>/online_labels.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from robot_rl.core import EnvSpec
from robot_rl.data import GROUND_TRUTH, Dataset, DatasetWriter, Episode, active_label
from robot_rl.rewards.base import Labeler, Segment
from robot_rl.rewards.jobs import MODEL_FILE, REWARD_CONFIG_FILE, label_accuracy, preference_data
from robot_rl.rewards.labeling import label_queries
from robot_rl.rewards.pairs import SELECTIONS, make_queries, sample_pairs
from robot_rl.rewards.sources import LearnedReward
from robot_rl.rewards.store import LabelStore, default_store_path

ROLLOUTS_FILE = "online_rollouts.h5"
ROUNDS_FILE = "online_labels.jsonl"
REWARD_DIR = "reward"


@dataclass(frozen=True)
class OnlineLabelsConfig:
    """The online preference loop (``robot-rl finetune --online-labels N --label-every K``)."""

    budget: int
    """Queries in total (pairs labeled, from the labeler or the store)."""
    label_every: int
    """Env steps between rounds."""
    env_steps: int
    """Env steps of the whole fine-tuning run (plans the rounds)."""
    segment_length: int | None = None
    """Steps per segment; default: the offline labels' length, else 50 (1 for a VLM: single frames)."""
    selection: str = "disagreement"
    """``disagreement`` (std over members of P(second better)), ``entropy`` or ``uniform``."""
    pairs_per_round: int = 0
    """0: the budget left spread evenly over the rounds left."""
    recent_episodes: int = 10
    """Pairs are drawn from this many most recent online episodes."""
    reward_steps: int | None = None
    """Training steps of each warm-started retraining (default: the model's own ``steps``)."""
    pool_factor: int = 10
    """Disagreement / entropy score this many candidate pairs per pair kept."""
    seed: int = 0
    camera: str | None = None
    """Frames for image labelers: camera (default: the task's) and square size."""
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"online labels: the query budget must be >= 1, got {self.budget}")
        if self.label_every < 1 or self.label_every >= self.env_steps:
            raise ValueError(f"online labels: --label-every must be between 1 and the fine-tuning env steps "
                             f"({self.env_steps}) less one, got {self.label_every}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"online labels: unknown selection '{self.selection}'; choose one of "
                             f"{', '.join(SELECTIONS)}")
        for name in ("pairs_per_round", "recent_episodes", "pool_factor", "seed"):
            if getattr(self, name) < (1 if name in ("recent_episodes", "pool_factor") else 0):
                raise ValueError(f"online labels: {name} out of range: {getattr(self, name)}")
        if self.segment_length is not None and self.segment_length < 1:
            raise ValueError(f"online labels: segment length must be >= 1, got {self.segment_length}")
        if self.reward_steps is not None and self.reward_steps < 1:
            raise ValueError(f"online labels: reward steps must be >= 1, got {self.reward_steps}")

    @property
    def rounds(self) -> int:
        """Rounds at ``label_every``, ``2 * label_every``, ... before the last env step (a round there would change
        a reward that nothing uses any more)."""
        return (self.env_steps - 1) // self.label_every


def rewards_came_from(dataset: str, reward_key: str, source: LearnedReward) -> bool:
    """Whether ``dataset``'s rewards under ``reward_key`` (``rewards``: the active ones) are ``source``'s model's
    (the labels' provenance names its file's sha256)."""
    label = active_label(dataset) if reward_key == "rewards" else reward_key
    if label is None or label == GROUND_TRUTH:
        return False
    with Dataset(dataset) as ds:
        names = ds.episode_names
        if not names or label not in ds.reward_label_ids():
            return False
        provenance = ds.load_episode(names[0]).reward_labels.get(label, (None, {}))[1]
    return provenance.get("sha256") == source.sha256


def reward_config(source: LearnedReward) -> dict[str, Any]:
    """The ``reward_config.yaml`` beside the model of ``source`` (dataset, store, labeler it was trained from)."""
    path = Path(source.path).parent / REWARD_CONFIG_FILE
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return dict(yaml.safe_load(f) or {})


def label_store_of(source: LearnedReward) -> str | None:
    """The label store the model of ``source`` was trained from (None when unknown)."""
    cfg = reward_config(source)
    if cfg.get("store"):
        return str(cfg["store"])
    return default_store_path(str(cfg["dataset"])) if cfg.get("dataset") else None


class OnlinePreferences:
    """See the module docstring. ``source``: the learned reward to improve; ``labeler``: who answers (scripted
    teacher, VLM, human); ``spec``: the fine-tuning env's; ``store``: the label store (default: the one the reward
    model was trained from); ``relabels_offline``: the offline data's rewards came from ``source``."""

    name = "reward_model+online_labels"
    camera_input = None

    def __init__(self, source: LearnedReward, labeler: Labeler, cfg: OnlineLabelsConfig, run_dir: Path,
                 spec: EnvSpec, store: str | None = None, relabels_offline: bool = False,
                 log: Any = None) -> None:
        if source.model.config.obs != "state":
            raise ValueError(f"{source.path}: online labels retrain state reward models only; this one reads "
                             f"{source.model.config.obs}s (relabeling the replay buffer would need a frame of every "
                             "step)")
        if cfg.selection != "uniform" and source.model.members < 2:
            raise ValueError(f"online labels: selection '{cfg.selection}' needs a reward ensemble of >= 2 members, "
                             f"{source.path} has {source.model.members}; use selection uniform")
        self.source, self.labeler, self.cfg, self.spec = source, labeler, cfg, spec
        self.relabels_offline = relabels_offline
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.say = log or (lambda text: print(f"online labels: {text}", file=sys.stderr, flush=True))
        reward_cfg = reward_config(source)
        self.offline_dataset = str(reward_cfg.get("dataset") or "")
        store = store or label_store_of(source)
        if store is None:
            raise ValueError(f"{source.path}: no reward_config.yaml says which label store it was trained from; "
                             "pass --label-store FILE")
        self.store = store
        self.offline, self.offline_length, task_text = self._offline_labels(reward_cfg.get("labeler"))
        self.length = cfg.segment_length or self.offline_length or (1 if labeler.uses_images else 50)
        if self.offline is not None and self.offline_length != self.length:
            raise ValueError(f"online labels: segment length {self.length} differs from the offline labels' "
                             f"({self.offline_length}); they are trained together")
        self.rollouts = self.run_dir / ROLLOUTS_FILE
        for stale in (self.rollouts, Path(f"{self.rollouts}-journal"), self.run_dir / ROUNDS_FILE):  # started anew
            stale.unlink(missing_ok=True)
        self.task_text = task_text if task_text is not None else spec.task_text
        self._writer: DatasetWriter | None = None
        self._rows: list[dict[str, list[np.ndarray]]] = []
        self.episodes: list[str] = []
        self.pairs: list[tuple[Segment, Segment]] = []
        self.values: list[float | None] = []
        self.env_steps = 0
        self.round = 0
        self.next_round = cfg.label_every
        self.counts = {"queries": 0, "asked": 0, "reused": 0, "cant_tell": 0}
        self.last: dict[str, float] = {}

    # --- RewardSource ------------------------------------------------------------------------------------------
    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        return self.source(obs, action, next_obs, env_reward)

    def rewards(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            device = self.source.model.device
            return self.source.score(states.to(device), actions.to(device)).to(states.device)

    # --- RewardLearner -----------------------------------------------------------------------------------------
    def observe(self, obs: dict[str, torch.Tensor], info: dict[str, Any], action: torch.Tensor,
                next_obs: dict[str, torch.Tensor], env_reward: torch.Tensor, terminated: torch.Tensor,
                truncated: torch.Tensor, step_info: dict[str, Any]) -> None:
        def np_(x: torch.Tensor) -> np.ndarray:
            return x.detach().cpu().numpy()

        done = np_(terminated | truncated)
        step = {"states": np_(obs["state"]).astype(np.float32), "actions": np_(action).astype(np.float32),
                "rewards": np_(env_reward).astype(np.float32), "next_states": np_(next_obs["state"]).astype(np.float32),
                "terminals": np_(terminated).astype(bool), "dones": done.astype(bool)}
        if "success" in step_info:
            step["successes"] = np_(step_info["success"]).astype(bool)
        if "sim_state" in info:
            step["sim_states"] = np.asarray(np_(info["sim_state"]), np.float64)
        n = len(done)
        while len(self._rows) < n:
            self._rows.append({})
        for i in range(n):
            for key, value in step.items():
                self._rows[i].setdefault(key, []).append(value[i])
        self.env_steps += n
        for i in np.flatnonzero(done).tolist():
            self._finish(i)

    def restart(self) -> None:
        self._rows = []  # the envs were reset: episodes in progress end unfinished

    def update(self, env_steps: int) -> bool:
        if env_steps < self.next_round or env_steps >= self.cfg.env_steps or self.counts["queries"] >= self.cfg.budget:
            return False
        while self.next_round <= env_steps:
            self.next_round += self.cfg.label_every
        self.round += 1
        left = self.cfg.budget - self.counts["queries"]
        rounds_left = max(self.cfg.rounds - self.round + 1, 1)
        quota = min(self.cfg.pairs_per_round or math.ceil(left / rounds_left), left)
        names = self.episodes[-self.cfg.recent_episodes:]
        if not names:
            self.say(f"round {self.round} at env step {env_steps}: no finished episode yet, skipped")
            return False
        self._close_writer()
        t0 = time.time()
        provenance = {"online": {"round": self.round, "env_step": env_steps, "run": str(self.run_dir.resolve()),
                                 "selection": self.cfg.selection}}
        with Dataset(self.rollouts) as ds:
            try:
                refs = sample_pairs(ds, quota, self.length, self.cfg.selection, self.source.model,
                                    seed=self.cfg.seed * 100_003 + self.round, pool_factor=self.cfg.pool_factor,
                                    names=names)
            except ValueError as e:
                self.say(f"round {self.round} at env step {env_steps}: no pairs ({e}), skipped")
                return False
            frames = None
            if self.labeler.uses_images:
                from robot_rl.rewards.frames import FrameSource

                frames = FrameSource(ds, self.cfg.camera, (self.cfg.image_size, self.cfg.image_size))
            queries = [dataclasses.replace(q, task_text=self.task_text) for q in make_queries(ds, refs, frames)]
            try:
                with LabelStore(self.store) as store:
                    result = label_queries(queries, self.labeler, store, str(self.rollouts), provenance=provenance)
            finally:
                if frames is not None:
                    frames.close()
        self.counts["queries"] += len(queries)
        self.counts["asked"] += result.asked
        self.counts["reused"] += result.reused
        self.counts["cant_tell"] += result.cant_tell
        self.pairs += [(q.first, q.second) for q in queries]
        self.values += [label.value for label in result.labels]
        accuracy, decided = label_accuracy(queries, result.labels)
        row: dict[str, Any] = {"round": self.round, "env_step": env_steps, "pairs": len(queries),
                               "asked": result.asked, "reused": result.reused, "cant_tell": result.cant_tell,
                               "agreement_with_ground_truth": accuracy, "decided": decided,
                               "episodes": names, **{f"total_{k}": v for k, v in self.counts.items()}}
        changed = self._retrain(row)
        row["seconds"] = time.time() - t0
        with open(self.run_dir / ROUNDS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")
        retrained = f"; reward retrained, held-out accuracy {row.get('valid_accuracy', math.nan):.2f}"
        self.say(f"round {self.round} at env step {env_steps}: {len(queries)} pairs ({result.asked} asked, "
                 f"{result.reused} from the store, {result.cant_tell} can't tell); {self.counts['queries']} of "
                 f"{self.cfg.budget} queries used" + (retrained if changed else ""))
        self.last = {"labels/queries": float(self.counts["queries"]), "labels/asked": float(self.counts["asked"]),
                     "labels/reused": float(self.counts["reused"]), "labels/rounds": float(self.round),
                     "labels/agreement": float(accuracy), "reward/valid_accuracy": float(row.get("valid_accuracy",
                                                                                                math.nan))}
        return changed

    def metrics(self) -> dict[str, float]:
        return dict(self.last)

    def summary(self) -> dict[str, str]:
        """For the run's report: what the loop asked and where the answers are."""
        c = self.counts
        return {"online labels": f"{c['queries']} of {self.cfg.budget} queries over {self.round} round(s) "
                                 f"({c['asked']} asked, {c['reused']} from the store, {c['cant_tell']} can't tell)",
                "label store": os.path.abspath(self.store)}

    def close(self) -> None:
        self._close_writer()

    # --- internals ---------------------------------------------------------------------------------------------
    def _offline_labels(self, labeler: str | None) -> tuple[Any, int | None, str | None]:
        """The labeled pairs the reward model was trained on (None when its store or dataset is gone), their
        segment length, and the task sentence they were asked for."""
        if not self.offline_dataset or not os.path.exists(self.offline_dataset):
            self.say("the reward model's offline dataset is not known or gone: retraining on the online labels only")
            return None, None, None
        try:
            data, _, stats = preference_data(self.offline_dataset, self.store, labeler)
        except (FileNotFoundError, ValueError) as e:
            self.say(f"no offline labels to retrain on ({e}); retraining on the online labels only")
            return None, None, None
        with Dataset(self.offline_dataset) as ds:
            task_text = ds.task_text
        self.say(f"{stats['used']} offline labels of {self.offline_dataset} in {self.store}")
        return data, int(np.shape(data.first_states)[1]), task_text

    def _finish(self, slot: int) -> None:
        rows = {k: np.stack(v) for k, v in self._rows[slot].items()}
        self._rows[slot] = {}
        rewards = rows["rewards"]
        if len(rows.get("sim_states", rewards)) != len(rewards):  # a backend that gave some steps' sim state only
            rows.pop("sim_states")
        labels = {}
        if np.isfinite(rewards).all():
            labels[GROUND_TRUTH] = (rewards.copy(), {"labeler": GROUND_TRUTH, "source": self.spec.name})
        episode = Episode(states=rows["states"], actions=rows["actions"], rewards=rewards,
                          next_states=rows["next_states"], terminals=rows["terminals"], dones=rows["dones"],
                          successes=rows.get("successes"), sim_states=rows.get("sim_states"), reward_labels=labels,
                          attrs={"env_step": self.env_steps, "slot": slot})
        if self._writer is None:
            self._writer = DatasetWriter(self.rollouts, self.spec, source=f"finetune online rollouts of "
                                         f"{self.spec.name}", task_text=self.task_text, resume=True)
        self.episodes.append(self._writer.add_episode(episode))

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _retrain(self, row: dict[str, Any]) -> bool:
        from robot_rl.rewards.model import PreferenceData, RewardModelError, train_reward_model

        if all(v is None for v in self.values):
            return False
        data = PreferenceData.from_segments(self.pairs, self.values)
        if self.offline is not None:
            data = _concat(self.offline, data)
        model = self.source.model
        config = dataclasses.replace(model.config, steps=self.cfg.reward_steps or model.config.steps,
                                     seed=model.config.seed + self.round)
        try:
            new, metrics = train_reward_model(data, config, device=model.device, init=model)
        except RewardModelError as e:
            self.say(f"round {self.round}: reward not retrained ({e})")
            return False
        new.precision = model.precision
        path = self.run_dir / REWARD_DIR / MODEL_FILE
        new.save(path)
        (path.parent / REWARD_CONFIG_FILE).write_text(yaml.safe_dump({
            "dataset": self.offline_dataset, "store": os.path.abspath(self.store), "online_rollouts":
            str(self.rollouts.resolve()), "warm_start": self.source.path, "round": self.round,
            "online_labels": len(self.pairs)}, sort_keys=False))
        self.source.model = new
        row.update({k: metrics[k] for k in ("valid_accuracy", "train_accuracy", "loss", "train_pairs")
                    if k in metrics})
        return True


def _concat(a: Any, b: Any) -> Any:
    """Two ``PreferenceData`` as one (fields missing from either are dropped)."""
    out = {}
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        out[f.name] = None if x is None or y is None else np.concatenate([np.asarray(x), np.asarray(y)])
    return type(a)(**out)
