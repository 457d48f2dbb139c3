"""``robot-rl learner``: the training half of learning on the robot (a GPU machine, or the robot PC's CPU).

It continues an offline run (IQL, or RLPD started from it: the ``Agent`` protocol and the ``ALGORITHMS`` registry,
as ``robot-rl finetune``) on the transitions the actors stream over DDS (``robot_rl.ros.dds.learning``), and pushes
the actor's weights back every ``push_every_s``.

- Data: each batch is stored in ``<run>/received`` before it is acked. Steps the gate refused or that only held
  (no weights yet) are kept there but not trained on. The reward of a step is the robot's success signal, scaled
  like the offline rewards.
- Interventions (HIL-SERL): a step a person drove goes to the online buffer *and* to the demonstration side, which
  is the offline data plus every intervention so far, sampled uniformly: ``offline_ratio`` of each batch.
- Updates: ``updates_per_transition`` per trainable transition received, once ``warmup_transitions`` arrived.
- Checkpoints every ``checkpoint_every_s`` (agent, optimizer, schedule, counters): a restarted learner resumes from
  the newest one and reloads every stored batch, so a ``kill -9`` loses only updates since the last checkpoint,
  never data. ``report.md`` lists the episodes (steps, success, interventions) it learned from.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.apps.learning_config import LearnerConfig
from robot_rl.apps.policy_weights import encode_weights
from robot_rl.core import EnvSpec
from robot_rl.data import TransitionSampler
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from robot_rl.rl.agent import sample_rows
from robot_rl.rl.algorithms import algorithm
from robot_rl.rl.finetune import OnlineReplay, finetune_payload, load_for_finetuning
from robot_rl.rl.logger import MetricsLogger
from robot_rl.ros.dds.learning import HOLD, HUMAN, LearnerLink, RowLayout
from robot_rl.ros.dds.participant import Participant


class Learner:
    """See the module docstring. ``step`` is one round: receive, update, push, checkpoint."""

    def __init__(self, checkpoint_dir: Path, run_dir: Path, cfg: LearnerConfig, domain_id: int | None = None,
                 namespace: str = "", log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)):
        self.run_dir, self.cfg, self.log = Path(run_dir), cfg, log
        resume = bool(checkpoint_paths(self.run_dir))
        source = self.run_dir if resume else Path(checkpoint_dir)
        spec = EnvSpec.from_json(load_checkpoint(source)[0]["env_spec"])
        loaded = load_for_finetuning(source, spec, cfg.schedule_updates, None if resume else cfg.algo,
                                     None if resume else cfg.train_overrides)
        self.loaded, self.agent, self.device = loaded, loaded.agent, loaded.device
        state = loaded.payload.get("learner", {}) if resume else {}
        if resume:
            self.agent.optimizer.load_state_dict(loaded.payload["optimizer"])
            self.agent.scheduler.load_state_dict(loaded.payload["scheduler"])
        pushed = self.run_dir / "pushed_version"  # versions only grow, also past pushes after the last checkpoint
        last = int(pushed.read_text()) if pushed.exists() else -1
        self.updates, self.version = int(state.get("updates", 0)), max(int(state.get("version", -1)), last) + 1
        ratio = algorithm(loaded.train_cfg.algo).offline_ratio if cfg.offline_ratio is None else cfg.offline_ratio
        self.cfg = cfg = dataclasses.replace(cfg, algo=loaded.train_cfg.algo, offline_ratio=ratio)
        torch.manual_seed(cfg.seed + self.updates)
        d, a = spec.state_dim, spec.action.dim
        self.offline = TransitionSampler(loaded.offline.arrays, self.device, seed=cfg.seed + self.updates)
        self.online = OnlineReplay(cfg.capacity, d, a, self.device, cfg.seed + 1 + self.updates)
        self.demos = OnlineReplay(cfg.capacity, d, a, self.device, cfg.seed + 2 + self.updates)
        self.batch = self.agent.config.batch_size
        self.parts = sample_rows(self.agent.config) // self.batch
        self.layout = RowLayout(d, a)
        self.participant = Participant(domain_id, None, namespace)
        self.link = LearnerLink(self.participant, self.run_dir / "received", self.layout)
        self.trainable = self.interventions = 0
        self.episodes: list[dict[str, Any]] = []
        self._open: dict[str, dict[str, int]] = {}
        for name, rows in self.link.stored():
            self._add(name, rows)
        self.metrics = MetricsLogger(self.run_dir)
        self._sums: dict[str, float] = {}
        self._last_push = self._last_checkpoint = -float("inf")
        self._pushed_at = -1
        self._logged_updates = self.updates
        how = f"resumed at update {self.updates}" if resume else f"started from {checkpoint_dir}: {loaded.start}"
        self.log(f"learner: {how}; {self.trainable} stored transitions ({self.interventions} intervened); "
                 f"batches {round(self.batch * ratio)}/{self.batch} offline+interventions; on {self.device}")

    # --- data ------------------------------------------------------------------------------------------------------
    def _add(self, name: str, rows: np.ndarray) -> None:
        u = self.layout.unpack(rows)
        sender = name.rpartition("-")[0]
        episode = self._open.setdefault(sender, {"steps": 0, "success": 0, "interventions": 0, "trained": 0})
        keep = (u["commanded"] > 0.5) & (np.rint(u["source"]) != HOLD)
        human = keep & (np.rint(u["source"]) == HUMAN)
        for i in range(len(rows)):
            episode["steps"] += 1
            episode["success"] |= int(u["reward"][i] > 0.5)
            episode["interventions"] += int(np.rint(u["source"][i]) == HUMAN)
            episode["trained"] += int(keep[i])
            if u["done"][i] > 0.5:
                self.episodes.append({"actor": sender, **episode})
                episode = self._open[sender] = {"steps": 0, "success": 0, "interventions": 0, "trained": 0}
        if keep.any():
            norm, scale = self.loaded.normalizer, self.loaded.offline.reward_scale
            batch = {"obs": norm(torch.from_numpy(u["obs"][keep]).to(self.device)),
                     "actions": torch.from_numpy(u["actions"][keep]).to(self.device),
                     "rewards": torch.from_numpy(u["reward"][keep] * scale).to(self.device),
                     "next_obs": norm(torch.from_numpy(u["next_obs"][keep]).to(self.device)),
                     "terminals": torch.from_numpy(u["terminal"][keep] > 0.5).to(self.device)}
            self.online.add(batch)
            if human.any():
                self.demos.add({k: v[torch.from_numpy(human[keep]).to(self.device)] for k, v in batch.items()})
        self.trainable += int(keep.sum())
        self.interventions += int((np.rint(u["source"]) == HUMAN).sum())  # trained on or not (a refused tick)

    def sample(self) -> dict[str, torch.Tensor]:
        """``parts`` minibatches: ``offline_ratio`` from offline data + interventions (uniform over both), the rest
        from everything the actors sent."""
        n_off = int(round(self.batch * float(self.cfg.offline_ratio or 0.0)))
        n_demo = int(round(n_off * self.demos.size / (self.demos.size + len(self.offline)))) if self.demos.size else 0
        parts = self.parts
        sources: list[tuple[Any, int]] = [(self.offline, n_off - n_demo), (self.demos, n_demo),
                                          (self.online, self.batch - n_off)]
        pieces = [src.sample(n * parts) for src, n in sources if n > 0]
        return {k: torch.cat([p[k].unflatten(0, (parts, -1)) for p in pieces], dim=1).flatten(0, 1)
                for k in pieces[0]}

    # --- the loop --------------------------------------------------------------------------------------------------
    def step(self, max_updates: int = 16, wait_s: float = 0.05) -> None:
        for name, rows in self.link.poll(wait_s):
            self._add(name, rows)
        for line in self.link.rejected:
            self.log(f"learner: refused {line}")
        self.link.rejected.clear()
        if self.trainable >= self.cfg.warmup_transitions and self.online.size:
            due = min(int(self.trainable * self.cfg.updates_per_transition) - self.updates, max_updates)
            if self.cfg.max_updates:
                due = min(due, self.cfg.max_updates - self.updates)
            self.agent.train()
            for _ in range(max(due, 0)):
                for k, v in self.agent.update(self.sample()).items():
                    self._sums[k] = self._sums.get(k, 0.0) + float(v)
                self.updates += 1
        now = time.monotonic()
        if now - self._last_push >= self.cfg.push_every_s and self._pushed_at != self.updates:
            self.push()
        if now - self._last_checkpoint >= self.cfg.checkpoint_every_s:
            self.checkpoint()

    def push(self) -> None:
        started = time.perf_counter()
        base = {**self.loaded.payload, "algo": self.loaded.train_cfg.algo, "config": self.loaded.train_cfg.to_dict()}
        self.link.publish_weights(self.version, encode_weights(self.agent, base, self.version, self.updates))
        self.log(f"learner: pushed weights v{self.version} ({self.updates} updates, "
                 f"{(time.perf_counter() - started) * 1e3:.1f} ms)")
        self._pushed_at, self._last_push = self.updates, time.monotonic()
        tmp = self.run_dir / "pushed_version.tmp"
        tmp.write_text(str(self.version))
        tmp.replace(self.run_dir / "pushed_version")
        self.version += 1

    def checkpoint(self) -> None:
        n = max(self.updates - self._logged_updates, 1)
        self._logged_updates = self.updates
        metrics = {k: v / n for k, v in self._sums.items()}
        metrics.update({"updates": float(self.updates), "transitions": float(self.trainable),
                        "interventions": float(self.interventions), "episodes": float(len(self.episodes))})
        self._sums = {}
        self.metrics.log(self.updates, metrics)
        state = {"updates": self.updates, "version": self.version - 1, "transitions": self.trainable,
                 "interventions": self.interventions, "config": dataclasses.asdict(self.cfg)}
        save_checkpoint(self.run_dir, self.updates, finetune_payload(
            self.loaded.payload, self.loaded.train_cfg, self.agent, {"learner": state}, metrics))
        self.write_report()
        self._last_checkpoint = time.monotonic()

    def write_report(self) -> None:
        lines = [f"# learner: {self.run_dir.name}", "",
                 f"updates {self.updates}, weights pushed up to v{self.version - 1}, trainable transitions "
                 f"{self.trainable}, intervened {self.interventions}, episodes {len(self.episodes)}", "",
                 "| # | actor | steps | trained on | success | interventions |",
                 "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {i} | {e['actor']} | {e['steps']} | {e['trained']} | {bool(e['success'])} | "
                  f"{e['interventions']} |" for i, e in enumerate(self.episodes)]
        (self.run_dir / "report.md").write_text("\n".join(lines) + "\n")
        status = {"updates": self.updates, "version": self.version - 1, "transitions": self.trainable,
                  "interventions": self.interventions, "episodes": self.episodes}
        tmp = self.run_dir / "status.json.tmp"
        tmp.write_text(json.dumps(status))
        tmp.replace(self.run_dir / "status.json")

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop() and not (self.cfg.max_updates and self.updates >= self.cfg.max_updates):
            self.step()
        self.checkpoint()

    def close(self) -> None:
        self.metrics.close()
        self.participant.close()
