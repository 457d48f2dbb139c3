"""Reward sources: one registry, one parser, one class per kind.

A source is named ``KIND`` or ``KIND:ARGUMENT`` (``reward-model:runs/reward``, ``code:reward.py``, ``dataset``).
Each kind is one class that gives both what ``robot-rl relabel`` needs, an *episode rewarder* (``default_id``,
``identity()``, ``rewards(ds, name, episode) -> [T]``, ``close()``), and what online fine-tuning needs, a
``robot_rl.core.RewardSource`` (``name``, ``__call__(obs, action, next_obs, env_reward) -> [N]``). Online,
a source gives rewards in the units of the offline dataset's active reward; the simulator's ground truth is used
only when asked for, or when the dataset's active reward *is* the simulator's ground truth.

Adding a kind is one class with ``kind``, ``argument`` (``""``: takes none), ``help``, ``relabels``, ``online`` and
``open(arg, context)``, and one line in ``SOURCES``. ``make_rewarder`` (relabel) and ``resolve_reward_source``
(fine-tuning) parse names with ``parse_source``; the CLI's ``--source`` / ``--reward`` help comes from
``source_help``.

Success signals (reset-free fine-tuning: ``classifier:RUN_DIR``, ``constant:P``, ``ground_truth``) are a second
small table, ``robot_rl.rewards.signals.SIGNALS``, read by the same parser (``parse_kind``).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from robot_rl.core import EnvSpec, RewardSource, SuccessSignal
from robot_rl.data import GROUND_TRUTH, Dataset, Episode, active_label
from robot_rl.rewards.frames import EpisodeFrames, FrameSource, camera_frames, online_camera

if TYPE_CHECKING:
    from robot_rl.rewards.success import SuccessClassifier


class EpisodeRewarder(Protocol):
    """What ``relabel`` runs over every episode of a dataset."""

    default_id: str

    def identity(self) -> dict[str, Any]:
        """JSON-serializable description of the source (becomes the labels' provenance)."""
        ...

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        """float32 ``[T]`` rewards of one episode."""
        ...

    def close(self) -> None: ...


@dataclass
class SourceContext:
    """Where a source is opened: the dataset it relabels, or the offline dataset of the run it fine-tunes."""

    dataset: str
    """Path of that dataset."""
    ds: Dataset | None = None
    """The dataset, when the caller has it open (relabel)."""
    device: str | torch.device = "cpu"
    online: bool = False
    """Opened to label new transitions (fine-tuning) rather than to relabel episodes."""
    options: dict[str, Any] = field(default_factory=dict)
    """Kind-specific options (``clip``: model, baseline, alpha, camera, size, precision; ``reward-model``:
    precision, see ``robot_rl.rewards.precision``)."""


class SourceKind(Protocol):
    """A row of ``SOURCES`` (a class: these are its class attributes and its ``open``)."""

    kind: str
    argument: str
    """What follows ``kind:`` (e.g. ``RUN_DIR``); ``""``: the kind takes no argument."""
    help: str
    relabels: bool
    """It can write rewards into a dataset (``robot-rl relabel --source``)."""
    online: bool
    """It can label new transitions (``robot-rl finetune --reward``)."""

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> Any: ...


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _run_file(run_dir: str, file: str) -> str:
    return os.path.abspath(os.path.join(run_dir, file) if os.path.isdir(run_dir) else run_dir)


class GroundTruthReward:
    """The simulator's own reward (NaN on a real robot, which this source then refuses)."""

    kind = "ground_truth"
    argument = ""
    help = "the simulator's reward (sim only)"
    relabels = False
    online = True
    name = "ground_truth"

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> GroundTruthReward:
        return cls()

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(env_reward).all()):
            raise ValueError("reward source 'ground_truth': the backend gave no finite reward (a real robot?); "
                             "use a learned reward source")
        return env_reward


class DatasetReward:
    """Whatever produced the dataset's active ``rewards``, read from their provenance (``dataset_reward_source``)."""

    kind = "dataset"
    argument = ""
    help = "the source of the dataset's active reward, e.g. the reward model it was relabeled with"
    relabels = False
    online = True

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> RewardSource:
        return dataset_reward_source(context.dataset)


class LearnedReward:
    """A trained Bradley-Terry reward model's r(s_t, a_t): the ensemble mean, or with ``pessimism`` k > 0 the
    conservative mean - k·std over members (against a policy exploiting where the members disagree). Relabels state
    and image models (image: frames of every step, stored or rendered from sim states); online, image models read
    the frame the environment renders before each step (``camera_input``).
    The pessimism is part of the labels' provenance, so fine-tuning on the dataset's rewards uses the same k."""

    kind = "reward-model"
    argument = "RUN_DIR"
    help = "a reward model (robot-rl train-reward)"
    relabels = True
    online = True
    name = default_id = "reward_model"

    def __init__(self, run_dir: str, device: str | torch.device = "cpu") -> None:
        from robot_rl.rewards.model import RewardModel

        self.path = _run_file(run_dir, "reward_model.pt")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{run_dir}: no reward_model.pt (train one with `robot-rl train-reward`)")
        self.model = RewardModel.load(self.path, device)
        self.device = device
        self.sha256 = _sha256(self.path)
        self.camera: str | None = None
        self.camera_input: tuple[str, int] | None = None
        """Online image model: (camera, size) of the frames the environment renders for it."""
        self.pessimism = 0.0
        self._frames: Any = None
        config_file = os.path.join(os.path.dirname(self.path), "reward_config.yaml")
        if self.model.config.obs == "image" and os.path.isfile(config_file):
            import yaml

            with open(config_file, encoding="utf-8") as f:
                self.camera = (yaml.safe_load(f) or {}).get("camera")

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> LearnedReward:
        source = cls(arg, context.device)
        source.model.precision = context.options.get("precision")
        source.pessimism = pessimism = float(context.options.get("pessimism") or 0.0)
        if not (math.isfinite(pessimism) and pessimism >= 0):
            raise ValueError(f"reward-model pessimism must be a number >= 0, got {pessimism}")
        if pessimism > 0 and source.model.members < 2:
            raise ValueError(f"{source.path}: pessimism needs an ensemble of >= 2 members, the model has "
                             f"{source.model.members}")
        if context.online and source.model.config.obs == "image":  # frames of the env's camera, rendered per step
            source.camera_input = (online_camera(context, source.camera), source.model.config.image_size)
        return source

    def identity(self) -> dict[str, Any]:
        identity = {"labeler": "reward_model", "source": f"reward-model:{os.path.dirname(self.path)}",
                    "model": self.path, "sha256": self.sha256, "precision": self.model.inference_precision}
        return {**identity, "pessimism": self.pessimism} if self.pessimism else identity

    def score(self, states: torch.Tensor, actions: torch.Tensor, frames: Any = None) -> torch.Tensor:
        """The ensemble mean, minus ``pessimism`` times the members' std where set."""
        if not self.pessimism:
            return self.model.reward(states, actions, frames)
        members = self.model.member_rewards_chunked(states, actions, frames)
        return members.mean(0) - self.pessimism * members.std(0)

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        frames = None
        if self.model.config.obs == "image":  # frames of every step, stored or rendered from sim states
            if self._frames is None:
                self._frames = EpisodeFrames(self.camera, self.model.config.image_size)
            frames = self._frames.of(ds, name, episode)
        with torch.no_grad():
            r = self.score(torch.as_tensor(episode.states, device=self.device),
                           torch.as_tensor(episode.actions, device=self.device), frames)
        return np.asarray(r.float().cpu().numpy(), np.float32)

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        device = self.model.device
        frames = None
        if self.camera_input is not None:  # the frame before the step, as relabeling reads it
            frames = camera_frames(obs, self.camera_input).to(device)
        with torch.no_grad():
            return self.score(obs["state"].to(device), action.to(device), frames).to(action.device)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()


class ClipSource:
    """CLIP similarity of the frame after each step (the last step reuses its own frame) to the task sentence."""

    kind = "clip"
    argument = "CHECKPOINT"
    help = "CLIP similarity to the task sentence (open_clip weights)"
    relabels = True
    online = True
    name = default_id = "clip"

    def __init__(self, checkpoint: str, ds: Dataset, model: str = "ViT-B-32", baseline: str | None = None,
                 alpha: float = 0.5, camera: str | None = None, size: int = 224, device: str = "cpu",
                 precision: str | None = None) -> None:
        from robot_rl.rewards.clip import ClipReward

        self.clip = ClipReward(checkpoint, model=model, goal=ds.task_text, baseline=baseline, alpha=alpha,
                               device=device, precision=precision)
        self.camera = FrameSource(ds, camera, (size, size)).camera  # checks the camera now, renders nothing
        self.size = size
        self._frames = EpisodeFrames(self.camera, size)
        self.camera_input = (self.camera, size)
        """Online: the frame after each step, rendered by the environment at this camera and size."""

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> ClipSource:
        if context.ds is None:  # online: the fine-tuned run's dataset gives the task sentence and the camera
            with Dataset(context.dataset) as ds:
                return cls(arg, ds, device=str(context.device), **context.options)
        return cls(arg, context.ds, device=str(context.device), **context.options)

    def identity(self) -> dict[str, Any]:
        return {**self.clip.identity(), "labeler": "clip", "source": f"clip:{self.clip.checkpoint}",
                "camera": self.camera, "size": [self.size, self.size]}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        per_frame = np.asarray(self.clip(self._frames.of(ds, name, episode)), np.float32)
        return np.concatenate([per_frame[1:], per_frame[-1:]])

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        """Similarity of the frame after each step (``next_obs``: the final frame of rows that reset), batched."""
        frames = camera_frames(next_obs, self.camera_input).cpu().numpy()
        return torch.as_tensor(np.asarray(self.clip(frames), np.float32), device=action.device)

    def close(self) -> None:
        self._frames.close()


class CodeSource:
    """Reward code on (state after the step, action), run in its own sandboxed process (``code_reward.py``)."""

    kind = "code"
    argument = "FILE.py"
    help = "reward code (compute_reward), run in the sandbox"
    relabels = True
    online = True
    name = default_id = "code"

    def __init__(self, path: str, spec: EnvSpec) -> None:
        from robot_rl.rewards.code_reward import CodeReward

        self.code = CodeReward(path, spec)

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> CodeSource:
        if context.ds is not None:
            return cls(arg, context.ds.spec)
        with Dataset(context.dataset) as ds:
            return cls(arg, ds.spec)

    def identity(self) -> dict[str, Any]:
        return {**self.code.identity(), "source": f"code:{self.code.path}"}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        reward, _ = self.code(episode.next_states, episode.actions)
        return reward

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        reward, _ = self.code(next_obs["state"].cpu().numpy(), action.cpu().numpy())
        return torch.as_tensor(reward, device=action.device)

    def close(self) -> None:
        self.code.close()


class SuccessReward:
    """Sparse reward from a success signal: 1.0 where P(success | observation after the step) >= its threshold,
    else 0.0, the same offline (``relabel --source success:RUN_DIR``) and online.

    ``signal`` is anything with ``name``, ``threshold`` and ``__call__(obs) -> p [N]`` (``ClassifierSuccess``,
    ``ConstantSuccess``, ...); relabeling needs a classifier (``from_run``). Online, an image classifier needs
    ``next_obs["image/<camera>"]``: make the env with ``make_env(..., cameras=(camera,))``; a missing camera is a
    one-line error naming it. Offline, image classifiers read the frame after each step, rendered from the next
    step's sim state; the last step reuses its own frame."""

    kind = "success"
    argument = "RUN_DIR"
    help = "a success classifier's sparse 0/1 reward (robot-rl train-success)"
    relabels = True
    online = True
    name = default_id = "success"

    def __init__(self, signal: SuccessSignal, classifier: SuccessClassifier | None = None) -> None:
        self.signal = signal
        self.threshold = float(signal.threshold)
        self.classifier = classifier
        self.path = None if classifier is None else os.path.abspath(str(classifier.source_path))
        self.sha256 = None if self.path is None else _sha256(self.path)
        self._frames: Any = None

    @classmethod
    def from_run(cls, path: str, device: str | torch.device = "cpu") -> SuccessReward:
        from robot_rl.rewards.success import MODEL_FILE, ClassifierSuccess

        signal = ClassifierSuccess(_run_file(path, MODEL_FILE), device)
        return cls(signal, signal.classifier)

    @classmethod
    def open(cls, arg: str, context: SourceContext) -> SuccessReward:
        return cls.from_run(arg, context.device)

    def identity(self) -> dict[str, Any]:
        m = self._classifier()
        return {"labeler": "success", "source": f"success:{os.path.dirname(str(self.path))}", "model": self.path,
                "sha256": self.sha256, "threshold": m.threshold, "obs": m.config.obs, "camera": m.camera,
                "reward": "1 if P(success | observation after the step) >= threshold else 0"}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        m = self._classifier()
        if m.state_dim != ds.spec.state_dim:
            raise ValueError(f"{ds.path}: the success classifier {self.path} takes states of {m.state_dim} "
                             f"features, this dataset has {ds.spec.state_dim}")
        obs: dict[str, Any] = {"state": torch.as_tensor(episode.next_states)}
        if m.config.uses_image:
            if self._frames is None:
                self._frames = EpisodeFrames(m.camera, m.config.image_size)
            frames = self._frames.of(ds, name, episode)
            obs[f"image/{m.camera}"] = torch.as_tensor(np.concatenate([frames[1:], frames[-1:]]))
        p = m.probability(obs).cpu().numpy()
        return (p >= m.threshold).astype(np.float32)

    def probability(self, next_obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.signal(next_obs)

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        p = self.probability(next_obs)
        return (p >= self.threshold).to(torch.float32).to(action.device)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()

    def _classifier(self) -> SuccessClassifier:
        if self.classifier is None:
            raise ValueError(f"reward source 'success' ({self.signal.name}): relabeling needs a success classifier "
                             "(success:RUN_DIR)")
        return self.classifier


SOURCES: dict[str, type[SourceKind]] = {
    cls.kind: cls for cls in (DatasetReward, GroundTruthReward, LearnedReward, ClipSource, CodeSource, SuccessReward)
}
"""Kind -> class. A new kind: one class and one entry here."""


def _name(cls: type[SourceKind]) -> str:
    return f"{cls.kind}:{cls.argument}" if cls.argument else cls.kind


def parse_kind(text: str, table: dict[str, Any]) -> tuple[Any, str] | None:
    """``KIND`` or ``KIND:ARGUMENT`` -> (the table's row, argument); None if it names no row or misses its argument."""
    kind, sep, arg = text.partition(":")
    entry = table.get(kind)
    if entry is None or bool(entry.argument) != bool(sep) or (entry.argument and not arg):
        return None
    return entry, arg


def _kinds(relabels: bool | None, online: bool | None) -> list[type[SourceKind]]:
    return [c for c in SOURCES.values()
            if (relabels is None or c.relabels == relabels) and (online is None or c.online == online)]


def source_names(relabels: bool | None = None, online: bool | None = None) -> list[str]:
    """``KIND`` / ``KIND:ARGUMENT`` of the registered kinds that can relabel and/or label online, in table order."""
    return [_name(c) for c in _kinds(relabels, online)]


def _choices(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def source_help(relabels: bool | None = None, online: bool | None = None) -> str:
    """The usable kinds and what each is, for a CLI option's help."""
    return "; ".join(f"{_name(c)}: {c.help}" for c in _kinds(relabels, online))


def parse_source(text: str, relabels: bool | None = None, online: bool | None = None) -> tuple[type[SourceKind], str]:
    """``"reward-model:runs/r"`` -> ``(LearnedReward, "runs/r")``, among the kinds that can relabel and/or label
    online as asked; ``ValueError`` naming the choices otherwise."""
    found = parse_kind(text, SOURCES)
    if found is None or found[0] not in _kinds(relabels, online):
        raise ValueError(f"unknown reward source '{text}'; choose {_choices(source_names(relabels, online))}")
    return found[0], found[1]


def make_rewarder(source: str, ds: Dataset, device: str = "cpu", **options: Any) -> EpisodeRewarder:
    """The episode rewarder of ``source`` (a kind that ``relabels``) for the open dataset ``ds``; ``options`` go to
    the kind (``clip``: model, baseline, alpha, camera, size, precision; ``reward-model``: precision)."""
    try:
        cls, arg = parse_source(source, relabels=True)
    except ValueError:
        raise ValueError(f"reward source '{source}': expected {_choices(source_names(relabels=True))}") from None
    rewarder: EpisodeRewarder = cls.open(arg, SourceContext(ds.path, ds, device, False, dict(options)))
    return rewarder


def resolve_reward_source(name: str, dataset: str, device: str | torch.device = "cpu",
                          **options: Any) -> RewardSource:
    """The online source ``name`` (a kind that labels ``online``); ``dataset`` is the offline run's dataset;
    ``options`` go to the kind as in ``make_rewarder``."""
    cls, arg = parse_source(name, online=True)
    source: RewardSource = cls.open(arg, SourceContext(dataset, None, device, True, dict(options)))
    return source


def _online_options(kind: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The options that make source ``kind`` label new transitions as it labeled the dataset (its provenance)."""
    if kind == "reward-model":
        return {"pessimism": provenance["pessimism"]} if "pessimism" in provenance else {}
    if kind == "clip":
        size = provenance.get("size") or [224]
        return {"model": provenance.get("model", "ViT-B-32"), "baseline": provenance.get("baseline"),
                "alpha": 0.5 if provenance.get("alpha") is None else float(provenance["alpha"]),
                "camera": provenance.get("camera"), "size": int(size[0]), "precision": provenance.get("precision")}
    return {}


def dataset_reward_source(dataset: str) -> RewardSource:
    """The source that produced the dataset's active ``rewards`` (from the labels' provenance); raises if it cannot
    be reproduced online."""
    active = active_label(dataset)
    with Dataset(dataset) as ds:
        names = ds.episode_names
        if active is not None and active != GROUND_TRUTH and names:
            provenance = ds.load_episode(names[0]).reward_labels[active][1]
            text = str(provenance.get("source", ""))
            found = parse_kind(text, SOURCES)
            if found is not None and found[0].online and found[0].argument:
                cls, arg = found
                if cls.kind in ("reward-model", "success"):  # the file itself, wherever its run folder went
                    arg = str(provenance.get("model", arg))
                options = _online_options(cls.kind, provenance)
                source: RewardSource = cls.open(arg, SourceContext(dataset, ds, "cpu", True, options))
                return source
            raise ValueError(f"{dataset}: the active rewards come from '{active}' ({text or 'unknown source'}), "
                             "which cannot label new transitions; pass --reward ground_truth or "
                             "--reward reward-model:RUN_DIR")
        if GROUND_TRUTH in ds.reward_label_ids():
            same = all(np.array_equal(ep.rewards, ep.reward_labels[GROUND_TRUTH][0], equal_nan=True)
                       for ep in (ds.load_episode(n) for n in names) if GROUND_TRUTH in ep.reward_labels)
            if same:
                return GroundTruthReward()
    raise ValueError(f"{dataset}: the active rewards are not the simulator's ground truth, and their source "
                     "cannot label new transitions yet; pass --reward ground_truth to use the simulator's reward")
