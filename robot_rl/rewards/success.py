"""Success classifier: P(task achieved | observation), the sparse reward of online and reset-free fine-tuning
(RoboFuME, SERL), trained from a dataset without ground truth unless the user asks for it.

Training examples are observations (``state`` before step k of an episode, and/or the camera frame rendered from
its sim state), each labeled success (1) or not (0), from these sources:

- ``first``: the first ``first_frames`` observations of every episode are negatives (episodes start from a reset,
  not from a finished task; the one assumption made without a label).
- ``final``: the last ``final_frames`` observations of an episode whose outcome is *marked*: positives if it ended
  in success, negatives if not. Marks come from ``labels_from``:
  ``"dataset"`` (default): the episode's recorded success flag (``successes[-1]``, else attr ``success``) where a
  person or robot recorded it, i.e. episodes without sim states (a ROS recording with ``~/mark_success``, an
  import). In data recorded in a simulator that flag is the simulator's ground truth, which is used only with
  ``"ground_truth"`` (then recorded as such in the provenance). If no episode is marked successful, unmarked flags
  mean "not marked", not "failed", and are ignored. ``"none"``: no marks.
- ``labeler:<name>``: per-frame yes/no answers of a success labeler in the success label store
  (``<dataset>.success-labels.sqlite``): ``ScriptedSuccessTeacher`` (simulator ground truth with a mistake rate,
  sim only) or ``VLMSuccessLabeler`` (one image, one yes/no question, prompt ``prompts/success/success-v1.yaml``).
  They live in their own store file, not in the preference store, because ``train-reward`` reads every row of
  the store it is given as a preference pair.
- ``preference`` (opt-in, ``preference_negatives``): from the preference label store, the last frame of the segment
  that *lost* a strict preference is a down-weighted negative. The reasoning: had both segments ended in success
  the labeler should have answered "equal" or "can't tell". The winner is never used as a positive: "better than
  the other one" says nothing about "done". Measured noise of this rule where ground truth exists is in the
  metrics (``sources.preference.true_success_rate``).

Held-out examples are whole episodes (``valid_fraction``); the threshold (unless fixed) maximizes F1 on them
(ties: closest to 0.5; 0.5 when they lack either class). Ground-truth success, where the simulator recorded it,
is used for evaluation only (``truth_*`` metrics), never for training unless ``labels_from="ground_truth"`` or the
scripted teacher was chosen.

Ground truth of observation k (the state before step k) is ``successes[k - 1]`` (success after the previous step);
unknown for k = 0.

```
metrics = train_success("d.h5", "runs/success", SuccessConfig(obs="state"), labels_from="ground_truth")
success = ClassifierSuccess("runs/success")          # name, threshold, __call__(obs) -> p [N]
p = success({"state": next_obs["state"]})
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from robot_rl.core import SuccessSignal
from robot_rl.data import Dataset, Episode
from robot_rl.nn.networks import random_shift
from robot_rl.rewards.base import Query, Segment, SegmentRef
from robot_rl.rewards.model import RewardModel, RewardModelConfig, error_line, load_payload, plain
from robot_rl.rewards.success_labels import (
    FAILURE,
    SUCCESS,
    SuccessError,
    default_success_store,
    end_mark,
    frame_truth,
    is_sim,
    one_step_segment,
)

MODEL_FILE = "success_classifier.pt"
CONFIG_FILE = "success_config.yaml"
METRICS_FILE = "success_metrics.json"
PLOT_FILE = "success_calibration.png"
FORMAT = "robot_rl.success_classifier"
FORMAT_VERSION = 1
LABELS_FROM = ("dataset", "ground_truth", "none")


# -- config and network -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuccessConfig:
    obs: Literal["state", "image", "both"] = "state"
    """What the classifier reads: the state, a camera frame, or both."""
    camera: str | None = None
    """Image modes: the camera (default: the task's first)."""
    image_size: int = 64
    members: int = 3
    """Ensemble size; the probability is the members' mean."""
    hidden: tuple[int, ...] = (256, 256)
    """State mode: hidden layers. Image modes: hidden layers after the conv features (+ state)."""
    conv_channels: tuple[int, ...] = (16, 32, 64, 128)
    conv_kernels: tuple[int, ...] = (5, 3, 3, 3)
    conv_strides: tuple[int, ...] = (3, 2, 2, 2)
    shift_pad: int = 4
    """Random-shift augmentation of frames in training (pixels); 0: off."""
    lr: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 128
    steps: int = 1000
    valid_fraction: float = 0.2
    """Share of episodes held out (their examples are never trained on)."""
    first_frames: int = 3
    """Negatives per episode from its start."""
    final_frames: int = 3
    """Examples per marked episode from its end."""
    preference_negatives: bool = False
    preference_weight: float = 0.5
    threshold: float | None = None
    """Fixed decision threshold; None: max F1 on the held-out examples."""
    eval_frames: int = 16
    """Image modes: frames per held-out episode scored against ground truth (state mode scores every step)."""
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "conv_channels", "conv_kernels", "conv_strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        problems = []
        if self.obs not in ("state", "image", "both"):
            problems.append(f"obs must be state, image or both, got {self.obs!r}")
        if self.members < 1 or self.batch_size < 1 or self.steps < 1 or self.log_every < 1:
            problems.append("members, batch_size, steps and log_every must be >= 1")
        if not 0.0 <= self.valid_fraction < 1.0:
            problems.append(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.first_frames < 0 or self.final_frames < 0:
            problems.append("first_frames and final_frames must be >= 0")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if problems:
            raise SuccessError("SuccessConfig: " + "; ".join(problems))
        if self.uses_image:
            self.network_config().conv_output_size()  # a frame size too small for the convs fails here, not later

    @property
    def uses_state(self) -> bool:
        return self.obs in ("state", "both")

    @property
    def uses_image(self) -> bool:
        return self.obs in ("image", "both")

    def network_config(self) -> RewardModelConfig:
        """The ensemble network (``RewardModel``'s vectorized MLP / RL-VLM-F CNN) with a linear output (logits).
        In ``both`` mode the normalized state rides in the network's per-step vector input (its "actions")."""
        image = self.uses_image
        return RewardModelConfig(
            members=self.members, hidden=self.hidden, activation="relu", output="linear", obs="image" if image else
            "state", use_actions=self.obs == "both", image_size=self.image_size, conv_channels=self.conv_channels,
            conv_kernels=self.conv_kernels, conv_strides=self.conv_strides, image_hidden=self.hidden if image else (),
            shift_pad=self.shift_pad, seed=self.seed)


class SuccessClassifier(nn.Module):
    """An ensemble of binary classifiers ``p(success | obs)`` with its input normalization, camera and threshold.

    ``probability(obs)`` reads ``obs["state"]`` float ``[N, D]`` and/or ``obs["image/<camera>"]`` uint8
    ``[N, H, W, 3]`` (H = W = ``config.image_size``) and returns ``[N]`` in [0, 1] on the model's device.
    """

    state_mean: torch.Tensor
    state_std: torch.Tensor

    def __init__(self, config: SuccessConfig, state_dim: int, camera: str | None = None,
                 state_mean: np.ndarray | torch.Tensor | None = None,
                 state_std: np.ndarray | torch.Tensor | None = None, threshold: float = 0.5) -> None:
        super().__init__()
        if config.uses_image and not camera:
            raise SuccessError(f"SuccessClassifier: obs '{config.obs}' needs a camera")
        self.config = config
        self.state_dim = int(state_dim)
        self.camera = camera if config.uses_image else None
        self.threshold = float(threshold)
        self.metrics: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        self.source_path: str | None = None
        mean = torch.zeros(state_dim) if state_mean is None else torch.as_tensor(state_mean, dtype=torch.float32)
        std = torch.ones(state_dim) if state_std is None else torch.as_tensor(state_std, dtype=torch.float32)
        self.register_buffer("state_mean", mean.reshape(state_dim).clone())
        self.register_buffer("state_std", std.reshape(state_dim).clone())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.net = RewardModel(config.network_config(), state_dim, state_dim if config.obs == "both" else 0)

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    @property
    def image_key(self) -> str | None:
        return None if self.camera is None else f"image/{self.camera}"

    def _where(self) -> str:
        return f"success classifier {self.source_path}" if self.source_path else "success classifier"

    def inputs(self, obs: Mapping[str, torch.Tensor | np.ndarray]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Checked ``(normalized states [N, D] or None, frames uint8 [N, H, W, 3] or None)`` on the model's device."""
        states = frames = None
        n = None
        if self.config.uses_state:
            if "state" not in obs:
                raise SuccessError(f"{self._where()} needs obs['state'] (float [N, {self.state_dim}]); got keys "
                                   f"{sorted(obs)}")
            s = torch.as_tensor(obs["state"], device=self.device, dtype=torch.float32)
            if s.dim() != 2 or s.shape[1] != self.state_dim:
                raise SuccessError(f"{self._where()}: obs['state'] must be [N, {self.state_dim}] (the classifier's "
                                   f"state dim), got {list(s.shape)}")
            if not bool(torch.isfinite(s).all()):
                row = int((~torch.isfinite(s)).any(1).nonzero()[0])
                raise SuccessError(f"{self._where()}: obs['state'] has NaN or inf values (first at row {row})")
            states, n = (s - self.state_mean) / self.state_std, s.shape[0]
        if self.config.uses_image:
            key, size = f"image/{self.camera}", self.config.image_size
            how = f"make the env with make_env(..., cameras=('{self.camera}',), image_size=({size}, {size}))"
            if key not in obs:
                raise SuccessError(f"{self._where()} needs observation '{key}' (uint8 [N, {size}, {size}, 3]), "
                                   f"which is missing: {how}")
            f = torch.as_tensor(obs[key], device=self.device)
            if f.dtype != torch.uint8 or f.dim() != 4 or tuple(f.shape[1:]) != (size, size, 3):
                raise SuccessError(f"{self._where()}: obs['{key}'] must be uint8 [N, {size}, {size}, 3], got "
                                   f"{str(f.dtype).removeprefix('torch.')} {list(f.shape)}: {how}")
            if n is not None and f.shape[0] != n:
                raise SuccessError(f"{self._where()}: obs['state'] has {n} rows but obs['{key}'] has {f.shape[0]}")
            frames = f
        return states, frames

    def member_logits(self, states: torch.Tensor | None, frames: torch.Tensor | None) -> torch.Tensor:
        """Logits ``[E, N]`` of checked inputs (from ``inputs``), or per-member inputs ``[E, N, ...]``."""
        e = self.config.members
        per_member = (states if states is not None else frames)
        assert per_member is not None
        lead = 3 if states is not None else 5
        if per_member.dim() < lead:  # shared by all members
            states = None if states is None else states.unsqueeze(0).expand(e, -1, -1)
            frames = None if frames is None else frames.unsqueeze(0).expand(e, -1, -1, -1, -1)
        return self.net.member_rewards(states, frames)

    @torch.no_grad()
    def probability(self, obs: Mapping[str, torch.Tensor | np.ndarray], chunk: int = 1024) -> torch.Tensor:
        """P(success) ``[N]`` in [0, 1] (ensemble mean), on the model's device; no gradients."""
        states, frames = self.inputs(obs)
        ref = states if states is not None else frames
        assert ref is not None
        out = []
        for lo in range(0, ref.shape[0], chunk):
            sl = slice(lo, lo + chunk)
            logits = self.member_logits(None if states is None else states[sl], None if frames is None else frames[sl])
            out.append(torch.sigmoid(logits).mean(0))
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write config, dims, camera, threshold, normalization, weights, metrics and provenance atomically."""
        from robot_rl.nn.checkpoint import atomic_torch_save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "version": FORMAT_VERSION, "config": dataclasses.asdict(self.config),
                   "state_dim": self.state_dim, "camera": self.camera, "threshold": self.threshold,
                   "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                   "metrics": json.loads(json.dumps(plain(self.metrics, json_safe=True))),
                   "provenance": json.loads(json.dumps(plain(self.provenance, json_safe=True)))}
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SuccessClassifier:
        """A classifier written by ``save`` (``path`` may be its run folder). ``SuccessError`` (one line, naming the
        file) when missing, unreadable, not a success classifier, or inconsistent."""
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        payload = load_payload(path, FORMAT, FORMAT_VERSION, "success classifier", SuccessError,
                               " (train one with robot-rl train-success)")
        try:
            model = cls(SuccessConfig(**payload["config"]), int(payload["state_dim"]), payload.get("camera"),
                        threshold=float(payload["threshold"]))
            model.load_state_dict(payload["state_dict"])
        except Exception as e:
            raise SuccessError(f"{path}: success classifier file does not match its config ({error_line(e)})") from e
        model.metrics = dict(payload.get("metrics") or {})
        model.provenance = dict(payload.get("provenance") or {})
        model.source_path = str(path)
        return model.to(device).eval()


# -- the success signal the fine-tuning loops use ---------------------------------------------------------------


def _batch_size(obs: Mapping[str, torch.Tensor], who: str) -> tuple[int, torch.device]:
    for value in obs.values():
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            return int(value.shape[0]), value.device
    raise SuccessError(f"{who}: obs has no tensor with a batch dimension (keys {sorted(obs)})")


class ClassifierSuccess:
    """A trained ``SuccessClassifier`` as a success signal: ``p [N]`` on the device of ``obs["state"]`` (or the
    image). ``threshold`` defaults to the classifier's own (chosen on held-out data)."""

    name = "success_classifier"

    def __init__(self, classifier: SuccessClassifier | str | os.PathLike[str], device: str | torch.device = "cpu",
                 threshold: float | None = None) -> None:
        self.classifier = classifier if isinstance(classifier, SuccessClassifier) \
            else SuccessClassifier.load(classifier, device)
        self.threshold = float(self.classifier.threshold if threshold is None else threshold)
        self.path = self.classifier.source_path

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        _, device = _batch_size(obs, self.classifier._where())
        return self.classifier.probability(obs).to(device)


class ConstantSuccess:
    """A success signal that says ``p`` for every observation: ``ConstantSuccess(1.0)`` claims success always,
    ``ConstantSuccess(0.0)`` never (a classifier that is always right or always wrong, depending on the truth)."""

    name = "constant"

    def __init__(self, p: float, threshold: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise SuccessError(f"ConstantSuccess: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.threshold = float(threshold)

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        n, device = _batch_size(obs, "ConstantSuccess")
        return torch.full((n,), self.p, device=device)


class FlippedSuccess:
    """``1 - p`` of another signal: turns a good classifier into one that is always wrong (for tests of the loop)."""

    def __init__(self, inner: SuccessSignal) -> None:
        self.inner = inner
        self.name = f"flipped:{inner.name}"
        self.threshold = inner.threshold

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return 1.0 - self.inner(obs)


@dataclass
class SuccessExamples:
    """Labeled observations: ``(episode, step)`` with label 0/1, weight, source and ground truth (NaN: unknown)."""

    episodes: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    truth: list[float] = field(default_factory=list)

    def add(self, episode: str, step: int, label: float, weight: float, source: str, truth: float) -> None:
        self.episodes.append(episode)
        self.steps.append(step)
        self.labels.append(label)
        self.weights.append(weight)
        self.sources.append(source)
        self.truth.append(truth)

    def __len__(self) -> int:
        return len(self.labels)


def collect_examples(ds: Dataset, config: SuccessConfig, labels_from: str = "dataset",
                     success_store: str | None = None, preference_store: str | None = None,
                     ) -> tuple[SuccessExamples, dict[str, Any]]:
    """The training examples of ``ds`` from every source the arguments enable (module docstring), and a record of
    what each source gave (its counts, notes), which becomes part of the classifier's provenance."""
    if labels_from not in LABELS_FROM:
        raise SuccessError(f"--labels-from must be one of {', '.join(LABELS_FROM)}, got '{labels_from}'")
    ex = SuccessExamples()
    record: dict[str, Any] = {"labels_from": labels_from, "notes": []}
    episodes = {n: ds.load_episode(n) for n in ds.episode_names}
    truths = {n: frame_truth(ep) for n, ep in episodes.items()}
    sim = any(is_sim(ep) for ep in episodes.values())
    for name, ep in episodes.items():
        for k in range(min(config.first_frames, ep.length)):
            ex.add(name, k, FAILURE, 1.0, "first", float(truths[name][k]))
    marks = _episode_marks(ds, episodes, labels_from, sim, record["notes"])
    for name, success in marks.items():
        ep = episodes[name]
        for k in range(max(ep.length - config.final_frames, 0), ep.length):
            ex.add(name, k, SUCCESS if success else FAILURE, 1.0, "final", float(truths[name][k]))
    record["marked_episodes"] = {"success": sum(marks.values()), "failure": len(marks) - sum(marks.values())}
    store_path = success_store or default_success_store(ds.path)
    record["success_store"] = os.path.abspath(store_path) if os.path.exists(store_path) else None
    if os.path.exists(store_path):
        _from_success_store(ds, store_path, episodes, truths, ex, record)
    if config.preference_negatives:
        _from_preferences(ds, preference_store, episodes, truths, config.preference_weight, ex, record)
    counts = Counter(zip(ex.sources, ex.labels, strict=True))
    record["sources"] = {src: {"positives": counts[(src, SUCCESS)], "negatives": counts[(src, FAILURE)],
                               **record.get("sources", {}).get(src, {})}
                         for src in dict.fromkeys(ex.sources)}
    for src, info in record["sources"].items():
        t = np.array([tr for s, tr in zip(ex.sources, ex.truth, strict=True) if s == src], np.float64)
        lab = np.array([lb for s, lb in zip(ex.sources, ex.labels, strict=True) if s == src], np.float64)
        known = np.isfinite(t)
        if known.any():
            info["agreement_with_truth"] = float(((t[known] > 0.5) == (lab[known] > 0.5)).mean())
            info["true_success_rate"] = float((t[known] > 0.5).mean())
    if SUCCESS not in ex.labels:
        raise SuccessError(f"{ds.path}: no positive (success) examples: label frames (robot-rl train-success "
                           "--labeler scripted|vlm), mark successful episodes, or, in simulation, pass "
                           "--labels-from ground_truth")
    if FAILURE not in ex.labels:
        raise SuccessError(f"{ds.path}: no negative examples (first_frames is 0 and no label says 'not done')")
    return ex, record


def _episode_marks(ds: Dataset, episodes: dict[str, Episode], labels_from: str, sim: bool,
                   notes: list[str]) -> dict[str, bool]:
    """Episode name -> ended in success, for the episodes whose outcome ``labels_from`` lets us use."""
    marks: dict[str, bool] = {}
    if labels_from == "ground_truth":
        if not sim or not any(ep.successes is not None for ep in episodes.values()):
            raise SuccessError(f"{ds.path}: --labels-from ground_truth needs data recorded in simulation with "
                               "per-step successes; this dataset has none")
        marks = {n: end_mark(ep) for n, ep in episodes.items()}
        notes.append("episode outcomes from the simulator's ground truth (--labels-from ground_truth)")
    elif labels_from == "dataset":
        if sim:
            notes.append("episode success flags are simulator ground truth: not used (pass --labels-from "
                         "ground_truth to use them)")
        else:
            marks = {n: end_mark(ep) for n, ep in episodes.items()}
            if not any(marks.values()):
                marks = {}
                notes.append("no episode is marked successful: success flags ignored")
    return marks


def _from_success_store(ds: Dataset, store_path: str, episodes: dict[str, Episode], truths: dict[str, np.ndarray],
                        ex: SuccessExamples, record: dict[str, Any]) -> None:
    from robot_rl.rewards.store import LabelStore

    with LabelStore(store_path) as store:
        rows = [r for r in store.labels(dataset=ds.path) if r.identity.get("query") == "success"]
    stats: dict[str, dict[str, int]] = {}
    identities: dict[str, dict[str, Any]] = {}
    for row in rows:
        s = stats.setdefault(row.labeler, {"stored": 0, "cant_tell": 0, "changed": 0})
        identities[row.labeler] = row.identity
        s["stored"] += 1
        ep = episodes.get(row.first.episode)
        k = row.first.start
        if ep is None or not 0 <= k < ep.length:
            s["changed"] += 1
            continue
        if not _digest_matches(row.digest, one_step_segment(row.first.episode, ep, k), ds.task_text):
            s["changed"] += 1
            continue
        if row.label.value is None:
            s["cant_tell"] += 1
            continue
        ex.add(row.first.episode, k, SUCCESS if row.label.value > 0.5 else FAILURE, 1.0, f"labeler:{row.labeler}",
               float(truths[row.first.episode][k]))
    record["labelers"] = identities
    record.setdefault("sources", {}).update({f"labeler:{k}": v for k, v in stats.items()})


def _digest_matches(digest: str, seg: Segment, task_text: str) -> bool:
    q = Query(seg, seg, task_text)
    return digest in (q.digest(False), q.digest(True))


def _from_preferences(ds: Dataset, store: str | None, episodes: dict[str, Episode], truths: dict[str, np.ndarray],
                      weight: float, ex: SuccessExamples, record: dict[str, Any]) -> None:
    from robot_rl.rewards.store import LabelStore, default_store_path

    path = store or default_store_path(ds.path)
    if not os.path.exists(path):
        raise SuccessError(f"{path}: no preference label store (preference negatives were asked for)")
    with LabelStore(path) as label_store:
        rows = [r for r in label_store.labels(dataset=ds.path) if r.identity.get("query") != "success"]
    used = 0
    for row in rows:
        if row.label.value not in (0.0, 1.0):
            continue
        loser = row.second if row.label.value == 0.0 else row.first
        ep = episodes.get(loser.episode)
        k = loser.start + loser.length - 1
        if ep is None or not 0 <= k < ep.length:
            continue
        ex.add(loser.episode, k, FAILURE, weight, "preference", float(truths[loser.episode][k]))
        used += 1
    record["preference_store"] = os.path.abspath(path)
    record.setdefault("sources", {})["preference"] = {"pairs": len(rows), "weight": weight}


# -- training ---------------------------------------------------------------------------------------------------

Progress = Callable[[str, int, int, dict[str, float]], None]
"""``(phase, done, total, info)``; phase ``"frames"`` (rendering) or ``"train"``."""


def _frames_for(fs: Any, name: str, ep: Episode, steps: Sequence[int]) -> np.ndarray:
    seg = Segment(SegmentRef(name, 0, ep.length), ep.states, ep.actions, ep.rewards, ep.sim_states)
    return np.asarray(fs.frames(seg, list(steps)))


def _gather(ds: Dataset, fs: Any, items: Sequence[tuple[str, int]], episodes: dict[str, Episode],
            progress: Progress | None, done0: int = 0, total: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """States ``[N, D]`` and (with a frame source) frames ``[N, H, W, 3]`` of ``(episode, step)`` items."""
    states = np.stack([episodes[n].states[k] for n, k in items]).astype(np.float32) if items \
        else np.zeros((0, ds.spec.state_dim), np.float32)
    if fs is None:
        return states, None
    frames = np.empty((len(items), *fs.size, 3), np.uint8)
    by_episode: dict[str, list[int]] = {}
    for i, (n, _) in enumerate(items):
        by_episode.setdefault(n, []).append(i)
    done = done0
    for n, idx in by_episode.items():
        frames[idx] = _frames_for(fs, n, episodes[n], [items[i][1] for i in idx])
        done += len(idx)
        if progress is not None:
            progress("frames", done, total or len(items), {})
    return states, frames


def _pick_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """Max-F1 threshold on held-out ``(p, y)`` (ties: closest to 0.5); 0.5 when either class is absent."""
    if len(y) == 0 or y.min() == y.max():
        return 0.5, "0.5 (held-out examples lack a class)"
    best, best_f1 = 0.5, -1.0
    sorted_p = np.unique(p)
    for t in np.concatenate([[0.5], (sorted_p[1:] + sorted_p[:-1]) / 2]):
        f1 = _scores(p, y, float(t))["f1"]
        if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_f1 = float(t), f1
    return min(max(best, 1e-6), 1 - 1e-6), "max F1 on held-out examples"


def _scores(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    pred, pos = p >= threshold, y > 0.5
    tp, fp = float((pred & pos).sum()), float((pred & ~pos).sum())
    fn, tn = float((~pred & pos).sum()), float((~pred & ~pos).sum())
    n = max(len(y), 1)
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    specificity = tn / (tn + fp) if tn + fp else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    parts = [v for v in (recall, specificity) if math.isfinite(v)]
    return {"accuracy": (tp + tn) / n, "precision": precision, "recall": recall, "f1": f1 if f1 == f1 else 0.0,
            "balanced_accuracy": float(np.mean(parts)) if parts else math.nan, "count": float(len(y)),
            "positives": float(pos.sum())}


def calibration_bins(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability of ``p`` against outcomes ``y``: per equal-width bin the mean p, the outcome frequency and the
    count; ECE (count-weighted |frequency - mean p|) and the Brier score."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    mean_p, freq, count = [], [], []
    for b in range(bins):
        m = which == b
        count.append(int(m.sum()))
        mean_p.append(float(p[m].mean()) if m.any() else math.nan)
        freq.append(float(y[m].mean()) if m.any() else math.nan)
    ece = sum(c * abs(f - mp) for c, f, mp in zip(count, freq, mean_p, strict=True) if c) / max(len(p), 1)
    brier = float(np.mean((p - y) ** 2)) if len(p) else math.nan
    return {"mean_p": mean_p, "frequency": freq, "count": count, "ece": float(ece), "brier": brier}


def plot_calibration(path: Path, held_out: tuple[np.ndarray, np.ndarray],
                     truth: tuple[np.ndarray, np.ndarray] | None, threshold: float, title: str) -> None:
    """Reliability diagram (held-out labels, and ground truth where known) and histograms of p per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    curves = [("held-out labels", held_out, "tab:blue")]
    if truth is not None and len(truth[0]):
        curves.append(("ground-truth success (eval only)", truth, "tab:orange"))
    for label, (p, y), color in curves:
        cal = calibration_bins(p, y)
        mp, fr, cnt = (np.array(cal[k], np.float64) for k in ("mean_p", "frequency", "count"))
        ok = cnt > 0
        ax.plot(mp[ok], fr[ok], marker="o", color=color, label=f"{label} (ECE {cal['ece']:.3f}, n={len(p)})")
    ax.axvline(threshold, color="tab:red", linewidth=1, label=f"threshold {threshold:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(success)", ylabel="observed success frequency",
           title="reliability")
    ax.legend(fontsize=7, loc="upper left")
    p, y = held_out
    bins = np.linspace(0, 1, 21)
    hx.hist(p[y > 0.5], bins=bins, alpha=0.6, color="tab:green", label="labeled success")
    hx.hist(p[y <= 0.5], bins=bins, alpha=0.6, color="tab:gray", label="labeled not success")
    hx.axvline(threshold, color="tab:red", linewidth=1)
    hx.set(xlabel="predicted P(success)", ylabel="held-out examples", title="held-out predictions")
    hx.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fit_classifier(config: SuccessConfig, state_dim: int, camera: str | None, states: np.ndarray,
                   frames: np.ndarray | None, labels: np.ndarray, weights: np.ndarray, device: str | torch.device,
                   progress: Progress | None = None) -> tuple[SuccessClassifier, dict[str, float]]:
    """Train with BCE: each member draws its own minibatch from a class-balanced distribution (each class holds half
    the sampling mass, examples within a class in proportion to their ``weights``); frames get random shifts."""
    dev = torch.device(device)
    mean = states.astype(np.float64).mean(0)
    std = np.maximum(states.astype(np.float64).std(0), 1e-3)
    model = SuccessClassifier(config, state_dim, camera, mean, std).to(dev)
    y = torch.as_tensor(labels, dtype=torch.float32, device=dev)
    w = torch.as_tensor(weights, dtype=torch.float64, device=dev)
    pos = y > 0.5
    mass = torch.where(pos, w / w[pos].sum(), w / w[~pos].sum()) * 0.5
    s_norm = None
    if config.uses_state:
        s_norm = (torch.as_tensor(states, device=dev) - model.state_mean) / model.state_std
    f_all = None if frames is None else torch.as_tensor(frames, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator(device=dev)
    gen.manual_seed(config.seed)
    e, b = config.members, config.batch_size
    model.train()
    window = torch.zeros(2, device=dev)
    last = {"loss": math.nan, "accuracy": math.nan}
    for step in range(1, config.steps + 1):
        idx = torch.multinomial(mass, e * b, replacement=True, generator=gen).reshape(e, b)
        sv = None if s_norm is None else s_norm[idx]
        fv = None
        if f_all is not None:
            fv = f_all[idx]
            if config.shift_pad > 0:
                fv = random_shift(fv.flatten(0, 1), config.shift_pad, gen).reshape(fv.shape)
        logits = model.member_logits(sv, fv)
        target = y[idx]
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="mean") * e
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            window += torch.stack([loss.detach() / e, ((logits > 0) == (target > 0.5)).float().mean()])
        if step % config.log_every == 0 or step == config.steps:
            n = config.log_every if step % config.log_every == 0 else step % config.log_every
            loss_v, acc_v = (window / n).tolist()
            last = {"loss": loss_v, "accuracy": acc_v}
            window.zero_()
            if progress is not None:
                progress("train", step, config.steps, last)
    model.eval()
    return model, last


def train_success(dataset: str, out: str | Path, config: SuccessConfig | None = None, *,
                  labels_from: str = "dataset", success_store: str | None = None,
                  preference_store: str | None = None, device: str = "cpu",
                  progress: Progress | None = None) -> dict[str, Any]:
    """Train a success classifier on ``dataset`` into ``out``: ``success_classifier.pt``, ``success_config.yaml``,
    ``success_metrics.json``, ``success_calibration.png``. Returns the metrics (held-out accuracy, precision,
    recall, F1, calibration; ``truth_*`` against simulator ground truth where the data has it)."""
    config = config or SuccessConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with Dataset(dataset) as ds:
        ex, record = collect_examples(ds, config, labels_from, success_store, preference_store)
        fs = None
        camera = None
        if config.uses_image:
            from robot_rl.rewards.frames import FrameSource

            fs = FrameSource(ds, config.camera, (config.image_size, config.image_size))
            camera = fs.camera
        try:
            names = sorted(set(ex.episodes), key=ds.episode_names.index)
            order = np.random.default_rng(config.seed).permutation(len(names))
            n_valid = min(int(round(config.valid_fraction * len(names))), max(len(names) - 1, 0))
            if config.valid_fraction > 0 and len(names) >= 2:
                n_valid = max(n_valid, 1)
            valid_eps = {names[i] for i in order[:n_valid]}
            is_valid = np.array([n in valid_eps for n in ex.episodes], bool)
            episodes = {n: ds.load_episode(n) for n in names}
            eval_items: list[tuple[str, int]] = []
            rng = np.random.default_rng(config.seed + 1)
            for n in sorted(valid_eps, key=names.index):
                truth = frame_truth(episodes[n])
                known = np.flatnonzero(np.isfinite(truth))
                if config.uses_image and len(known) > config.eval_frames:
                    known = np.sort(rng.choice(known, config.eval_frames, replace=False))
                eval_items += [(n, int(k)) for k in known]
            items = list(zip(ex.episodes, ex.steps, strict=True))
            total = len(items) + (len(eval_items) if fs is not None else 0)
            t_frames = time.perf_counter()
            states, frames = _gather(ds, fs, items, episodes, progress, 0, total)
            eval_states, eval_frames = _gather(ds, fs, eval_items, episodes, progress, len(items), total)
            frames_s = time.perf_counter() - t_frames
        finally:
            if fs is not None:
                fs.close()
        spec_name, task_text, state_dim = ds.spec.name, ds.task_text, ds.spec.state_dim
    labels = np.asarray(ex.labels, np.float32)
    weights = np.asarray(ex.weights, np.float32)
    train = ~is_valid
    if not (labels[train] > 0.5).any() or not (labels[train] <= 0.5).any():
        raise SuccessError(f"{dataset}: the training episodes lack positive or negative examples "
                           f"({int((labels[train] > 0.5).sum())} / {int((labels[train] <= 0.5).sum())}); "
                           "label more frames or lower valid_fraction")
    t_train = time.perf_counter()
    model, last = fit_classifier(config, state_dim, camera, states[train],
                                 None if frames is None else frames[train], labels[train], weights[train], device,
                                 progress)
    train_s = time.perf_counter() - t_train

    def prob(s: np.ndarray, f: np.ndarray | None) -> np.ndarray:
        obs: dict[str, Any] = {"state": torch.as_tensor(s)}
        if f is not None and camera is not None:
            obs[f"image/{camera}"] = torch.as_tensor(f)
        if len(s) == 0:
            return np.zeros(0, np.float32)
        return model.probability(obs).cpu().numpy()

    p_all = prob(states, frames)
    p_valid, y_valid = p_all[is_valid], labels[is_valid]
    if config.threshold is not None:
        threshold, how = float(config.threshold), "fixed"
    else:
        threshold, how = _pick_threshold(p_valid, y_valid)
    model.threshold = threshold
    metrics: dict[str, Any] = {
        "obs": config.obs, "camera": camera, "threshold": threshold, "threshold_rule": how,
        "examples": len(ex), "train_examples": int(train.sum()), "valid_examples": int(is_valid.sum()),
        "train_episodes": len(names) - len(valid_eps), "valid_episodes": len(valid_eps),
        "train_loss": last["loss"], "train_accuracy": _scores(p_all[train], labels[train], threshold)["accuracy"],
        "valid": _scores(p_valid, y_valid, threshold), "valid_calibration": calibration_bins(p_valid, y_valid),
        "sources": record["sources"], "notes": record["notes"], "train_seconds": train_s, "frames_seconds": frames_s,
        "total_seconds": time.perf_counter() - t_start}
    truth_pair = None
    if eval_items:
        truth_y = np.array([frame_truth(episodes[n])[k] for n, k in eval_items], np.float32)
        p_truth = prob(eval_states, eval_frames)
        truth_pair = (p_truth, truth_y)
        metrics["truth"] = _scores(p_truth, truth_y, threshold)
        metrics["truth_calibration"] = calibration_bins(p_truth, truth_y)
        metrics["truth_note"] = ("simulator ground truth on held-out episodes, evaluation only: "
                                 + ("every step" if not config.uses_image else f"{config.eval_frames} frames each"))
    provenance = {"dataset": os.path.abspath(dataset), "env": spec_name, "task_text": task_text,
                  "time": datetime.now(UTC).isoformat(timespec="seconds"), **record}
    model.metrics, model.provenance = metrics, provenance
    model.save(out / MODEL_FILE)
    settings = {"dataset": os.path.abspath(dataset), "camera": camera, "threshold": threshold,
                "labels_from": labels_from, **dataclasses.asdict(config)}
    (out / CONFIG_FILE).write_text(yaml.safe_dump(plain(settings, json_safe=True), sort_keys=False))
    (out / METRICS_FILE).write_text(json.dumps(plain({**metrics, "provenance": provenance}, json_safe=True),
                                               indent=2))
    plot_calibration(out / PLOT_FILE, (p_valid, y_valid), truth_pair, threshold,
                     f"success classifier ({config.obs}) on {os.path.basename(dataset)}: held-out accuracy "
                     f"{metrics['valid']['accuracy']:.1%}")
    return metrics
