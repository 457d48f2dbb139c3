"""Success classifier: P(task achieved | observation), the sparse reward of online and reset-free fine-tuning
(RoboFuME, SERL), trained from a dataset without ground truth unless the user asks for it.

This module: the network (``SuccessConfig``, ``SuccessClassifier``) and the success signals the fine-tuning loops use
(``ClassifierSuccess``, ``ConstantSuccess``, ``FlippedSuccess``). Training examples: ``examples.py``;
training, the threshold and calibration: ``training.py``; per-frame labels: ``labels.py``.

Ground truth of observation k (the state before step k) is ``successes[k - 1]`` (success after the previous step);
unknown for k = 0.

```
metrics = train_success("d.h5", "runs/success", SuccessConfig(obs="state"), labels_from="ground_truth")  # _training
success = ClassifierSuccess("runs/success")          # name, threshold, __call__(obs) -> p [N]
p = success({"state": next_obs["state"]})
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from robot_rl.core import SuccessSignal
from robot_rl.core.config_check import bounded, check_fields
from robot_rl.nn.payload import error_line, load_payload, plain
from robot_rl.rewards.model.network import RewardModel, RewardModelConfig
from robot_rl.rewards.success.labels import SuccessError

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
    """Image modes: the camera (default: the dataset's only stored camera, else the task card's)."""
    image_size: int = bounded(64, ge=1)
    """Image modes: square frame size in pixels."""
    members: int = bounded(3, ge=1)
    """Ensemble size; the probability is the members' mean."""
    hidden: tuple[int, ...] = bounded((256, 256), ge=1)
    """State mode: hidden layers. Image modes: hidden layers after the conv features (+ state)."""
    conv_channels: tuple[int, ...] = bounded((16, 32, 64, 128), ge=1)
    conv_kernels: tuple[int, ...] = bounded((5, 3, 3, 3), ge=1)
    conv_strides: tuple[int, ...] = bounded((3, 2, 2, 2), ge=1)
    shift_pad: int = bounded(4, ge=0)
    """Random-shift augmentation of frames in training (pixels); 0: off."""
    lr: float = bounded(3e-4, gt=0)
    weight_decay: float = bounded(1e-4, ge=0)
    batch_size: int = bounded(128, ge=1)
    steps: int = bounded(1000, ge=1)
    """Gradient steps."""
    valid_fraction: float = bounded(0.2, ge=0, lt=1)
    """Share of episodes held out (their examples are never trained on)."""
    first_frames: int = bounded(3, ge=0)
    """Negatives per episode from its start."""
    final_frames: int = bounded(3, ge=0)
    """Examples per marked episode from its end."""
    preference_negatives: bool = False
    """Use the last frame of each strictly less-preferred segment as a negative, down-weighted by
    ``preference_weight``."""
    preference_weight: float = bounded(0.5, ge=0)
    threshold: float | None = bounded(None, gt=0, lt=1)
    """Fixed decision threshold; None: max F1 on the held-out examples."""
    cuda_graphs: bool = True
    """On CUDA, run training steps as CUDA-graph replays (``nn/cuda_graph.py``)."""
    eval_frames: int = bounded(16, ge=1)
    """Image modes: frames per held-out episode scored against ground truth (state mode scores every step)."""
    log_every: int = bounded(50, ge=1)
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        check_fields(self, SuccessError)  # types, literals and ranges; YAML lists become tuples
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
