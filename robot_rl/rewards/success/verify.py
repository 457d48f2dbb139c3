"""Verified success claims for the reset-free loop: a teacher confirms or rejects what the classifier claims.

Online, a success classifier meets states its offline data never showed, and the policy finds those it calls
"done" (measured, ``benchmarks/reset_free.md``: two of three forward claims were false). Asking a teacher about each
claim, and only about claims, is the active-query fix of VICE-RAQ (Singh et al., 2019) and of the success
confirmation in SERL / HIL-SERL: a person watching the robot answers yes or no in the moment, a handful of times
per hour. ``VerifiedSuccess`` wraps a success signal:

- ``check(obs, info, step)`` at a claim asks the teacher (within ``budget`` queries) and returns ``"confirmed"``,
  ``"rejected"``, ``"held"`` (no query: within ``requery_after`` steps of the last rejection, when the state has
  barely moved; the claim counts as rejected) or ``"unverified"`` (the budget is spent: the claim stands, as without
  verification);
- each answer joins the classifier's examples (weight ``label_weight``; its offline examples weigh 1 each), and
  after each rejection a state classifier is trained on, warm, for ``retrain_steps`` steps (its threshold and input
  normalization kept); ``update()`` then says True once, and the loop relabels its data with the new classifier.

Teachers: ``ScriptedClaimTeacher`` reads the simulator's ground truth (``info["success"]``), wrong with probability
``mistake``; ``HumanClaimTeacher`` asks at the terminal (a robot). Every answer is kept in the run's events.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robot_rl.core import SuccessSignal
from robot_rl.core.config_check import bounded, check_fields
from robot_rl.data import Dataset
from robot_rl.rewards.success.classifier import SuccessClassifier
from robot_rl.rewards.success.examples import collect_examples
from robot_rl.rewards.success.labels import SuccessError
from robot_rl.rewards.success.training import _gather, fit_classifier

VERDICTS = ("confirmed", "rejected", "held", "unverified")
"""What ``VerifiedSuccess.check`` can say; the first and the last let the claim stand."""


@dataclass(frozen=True)
class VerifyConfig:
    budget: int = bounded(50, ge=1)
    """Teacher queries per direction (per success signal)."""
    requery_after: int = bounded(10, ge=0)
    """Steps after a rejection during which further claims count as rejected without a query."""
    retrain_steps: int = bounded(200, ge=0)
    """Warm-start classifier steps after each rejection (0: the answers gate the reward, the classifier stays)."""
    label_weight: float = bounded(10.0, gt=0)
    """Sampling weight of each online answer; every offline example weighs 1."""
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        check_fields(self, SuccessError)


class ScriptedClaimTeacher:
    """Answers from the simulator's ground truth (the step's ``info["success"]``), wrong with probability
    ``mistake``."""

    name = "scripted"

    def __init__(self, mistake: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= mistake <= 1.0:
            raise SuccessError(f"scripted claim teacher: mistake must be in [0, 1], got {mistake}")
        self.mistake = float(mistake)
        self.rng = np.random.default_rng(seed)

    def confirm(self, obs: dict[str, torch.Tensor], info: dict[str, Any], task: str) -> bool:
        if "success" not in info:
            raise SuccessError(f"scripted claim teacher ({task}): the step's info has no 'success' (simulator ground "
                               "truth); on a robot use the human teacher (--claim-teacher human)")
        truth = bool(torch.as_tensor(info["success"]).reshape(-1)[0])
        return truth != bool(self.rng.random() < self.mistake)


class HumanClaimTeacher:
    """Asks a person at the terminal whether the task is done (``ask``: ``input`` or a stand-in)."""

    name = "human"

    def __init__(self, ask: Callable[[str], str] = input) -> None:
        self.ask = ask

    def confirm(self, obs: dict[str, torch.Tensor], info: dict[str, Any], task: str) -> bool:
        prompt = f"The policy says '{task}' is done. Is it? [y/n] "
        while True:
            try:
                answer = self.ask(prompt).strip().lower()
            except EOFError as e:
                raise SuccessError(f"claim teacher: the input closed while asking whether '{task}' is done; run with "
                                   "a terminal to answer at (in simulation: --claim-teacher scripted)") from e
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            prompt = "Please answer y or n: "


def make_claim_teacher(kind: str, mistake: float = 0.0, seed: int = 0) -> ScriptedClaimTeacher | HumanClaimTeacher:
    if kind == "scripted":
        return ScriptedClaimTeacher(mistake, seed)
    if kind == "human":
        return HumanClaimTeacher()
    raise SuccessError(f"claim teacher must be 'scripted' or 'human', got '{kind}'")


class VerifiedSuccess:
    """A success signal whose claims a teacher checks (module docstring); ``task`` names it in questions."""

    def __init__(self, signal: SuccessSignal, teacher: Any, config: VerifyConfig, task: str) -> None:
        self.signal, self.teacher, self.config, self.task = signal, teacher, config, task
        self.name = f"verified:{signal.name}"
        self.threshold = signal.threshold
        self.counts = dict.fromkeys(VERDICTS, 0)
        self.retrains = 0
        self._last_rejection = -math.inf
        self._changed = False
        self._states: list[np.ndarray] = []
        self._labels: list[float] = []
        classifier = getattr(signal, "classifier", None)
        self.classifier: SuccessClassifier | None = (
            classifier if isinstance(classifier, SuccessClassifier) and classifier.config.obs == "state"
            and config.retrain_steps > 0 else None)
        self._base: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if self.classifier is not None:  # read now: a missing dataset fails before the run, not at its first "no"
            self._base_examples(self.classifier)

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.signal(obs)

    @property
    def asked(self) -> int:
        return self.counts["confirmed"] + self.counts["rejected"]

    def check(self, obs: dict[str, torch.Tensor], info: dict[str, Any], step: int) -> str:
        """The verdict on a claim at the post-step ``obs`` (its ``info``) of env step ``step``."""
        if step - self._last_rejection <= self.config.requery_after:
            verdict = "held"
        elif self.asked >= self.config.budget:
            verdict = "unverified"
        else:
            done = self.teacher.confirm(obs, info, self.task)
            verdict = "confirmed" if done else "rejected"
            if "state" in obs:
                self._states.append(obs["state"].detach().float().cpu().numpy().reshape(-1))
                self._labels.append(1.0 if done else 0.0)
            if not done:
                self._last_rejection = step
                self._retrain()
        self.counts[verdict] += 1
        return verdict

    def update(self) -> bool:
        """True once after the classifier changed (relabel the data with it now)."""
        changed, self._changed = self._changed, False
        return changed

    def metrics(self) -> dict[str, float]:
        counts = {f"claims_{k}": float(v) for k, v in self.counts.items()}
        return {**counts, "classifier_retrains": float(self.retrains)}

    def _retrain(self) -> None:
        model = self.classifier
        if model is None or not self._states:
            return
        base_states, base_labels, base_weights = self._base_examples(model)
        states = np.concatenate([base_states, np.stack(self._states).astype(np.float32)])
        labels = np.concatenate([base_labels, np.asarray(self._labels, np.float32)])
        weights = np.concatenate([base_weights, np.full(len(self._labels), self.config.label_weight, np.float32)])
        cfg = dataclasses.replace(model.config, steps=self.config.retrain_steps,
                                  seed=self.config.seed * 1000 + self.retrains, log_every=self.config.retrain_steps)
        fit_classifier(cfg, model.state_dim, None, states, None, labels, weights, model.device, model=model)
        self.retrains += 1
        self._changed = True

    def _base_examples(self, model: SuccessClassifier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The classifier's offline examples (its dataset and label stores, from its provenance), read once."""
        if self._base is None:
            prov = model.provenance
            if not prov.get("dataset") or not os.path.exists(prov["dataset"]):
                raise SuccessError(f"{model.source_path}: retraining on the teacher's answers needs the dataset the "
                                   f"classifier was trained on ({prov.get('dataset') or 'not recorded'}), which is not "
                                   "there; put it back at that path")
            with Dataset(prov["dataset"]) as ds:
                ex, _ = collect_examples(ds, model.config, prov.get("labels_from", "dataset"),
                                         prov.get("success_store"))
                episodes = {n: ds.load_episode(n) for n in dict.fromkeys(ex.episodes)}
                states, _ = _gather(ds, None, list(zip(ex.episodes, ex.steps, strict=True)), episodes, None)
            self._base = (states, np.asarray(ex.labels, np.float32),
                          np.asarray(ex.weights, np.float32))
        return self._base
