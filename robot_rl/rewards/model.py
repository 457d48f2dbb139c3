"""Bradley-Terry reward-model ensemble (PEBBLE / B-Pref over states, RL-VLM-F over images).

A segment's predicted return is the sum of per-step rewards r(s, a) in [-1, 1] (tanh output);
P(second > first) = sigmoid(R(second) - R(first)); the loss is the cross-entropy against the labels (0 first
better, 1 second better, 0.5 equal: a soft target). Every member is trained on its own bootstrap minibatch, and
all members run as one vectorized computation per step: state members as one batched matmul per layer
(``EnsembleLinear``), image members as one grouped convolution per layer (``groups = members``; on the CPU, E convs
on slices of the same weights, which oneDNN runs 2x faster). The per-member losses are summed, so one backward and
one Adam step over all parameters equal E independent trainings (``RewardTrainer``).

Speed (``benchmarks/reward_model_speed.md``): on a GPU the vectorized step is 1.8x (L = 50) to 2.9x (L <= 10)
faster than a per-member loop; on the CPU both are bound by the same matrix products and run at the same speed.

Shapes: E members, P pairs, L steps per segment, D state dim, A action dim, H = W = ``image_size``.

```
model, metrics = train_reward_model(PreferenceData(...), RewardModelConfig(steps=2000), device="cuda")
rewards = model.reward(states, actions)             # [T] ensemble mean: what relabeling writes
probs = model.preference_probs(s0, a0, s1, a1)      # [E, P] P(second better) per member: query selection
model.save("runs/x/reward_model.pt"); RewardModel.load("runs/x/reward_model.pt", "cpu")
```
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.nn.networks import EnsembleLinear, random_shift
from robot_rl.rewards.base import Segment
from robot_rl.rewards.model_eval import plot_reward_vs_truth, reward_correlation

__all__ = [
    "MemberNet", "PreferenceData", "RewardModel", "RewardModelConfig", "RewardModelError", "RewardTrainer",
    "pair_logits", "plot_reward_vs_truth", "reward_correlation", "train_reward_model",
]

FORMAT = "robot_rl.reward_model"
FORMAT_VERSION = 1
ArrayLike = np.ndarray | torch.Tensor


class RewardModelError(ValueError):
    """Bad preference data or an unusable reward-model file; the message is one line and names the culprit."""


@dataclass(frozen=True)
class RewardModelConfig:
    """Reward-model ensemble and its training; defaults are PEBBLE / B-Pref's (state) and RL-VLM-F's (image CNN)."""

    members: int = 3
    """Ensemble size E."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layers of each state member's MLP."""
    activation: Literal["leaky_relu", "relu"] = "leaky_relu"
    """Hidden activation (LeakyReLU with slope 0.01, as ``nn.LeakyReLU()``)."""
    output: Literal["tanh", "linear"] = "tanh"
    """Per-step reward squashing: tanh keeps r in [-1, 1]."""
    lr: float = 3e-4
    batch_size: int = 128
    """Pairs per member per step."""
    steps: int = 200
    """Gradient steps: ~50 epochs over ~450 training pairs at batch 128, PEBBLE / B-Pref's ``reward_update`` of 50
    epochs (one step at L = 50 is ~32 GFLOP: ~0.6 s on a CPU core, so the default takes ~2 min there)."""
    weight_decay: float = 0.0
    """Decoupled (AdamW) weight decay; 0 is PEBBLE's plain Adam."""
    valid_fraction: float = 0.1
    """Share of the labeled pairs held out for the accuracy metrics (never trained on)."""
    use_actions: bool = True
    """r(s, a) (PEBBLE) when true, else r(s). Image models append the actions to the conv features when true; set
    it false for RL-VLM-F's r(o)."""
    obs: Literal["state", "image"] = "state"
    """What a member reads: normalized states (+ actions), or frames (+ actions)."""
    image_size: int = 64
    """Frames are uint8 [H, W, 3] with H = W = image_size."""
    conv_channels: tuple[int, ...] = (16, 32, 64, 128)
    """Image members: channels of each conv layer (RL-VLM-F's CNN, no padding)."""
    conv_kernels: tuple[int, ...] = (5, 3, 3, 3)
    conv_strides: tuple[int, ...] = (3, 2, 2, 2)
    image_hidden: tuple[int, ...] = ()
    """Image members: hidden layers between the flattened conv features (+ actions) and the output (RL-VLM-F: none)."""
    shift_pad: int = 4
    """Image members: random-shift augmentation in training (pixels of replicated padding); 0: off."""
    log_every: int = 100
    """Steps between ``progress`` calls (the only host syncs of the loop)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "conv_channels", "conv_kernels", "conv_strides", "image_hidden"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))  # YAML gives lists
        problems = []
        if self.members < 1:
            problems.append(f"members must be >= 1, got {self.members}")
        if self.obs not in ("state", "image"):
            problems.append(f"obs must be 'state' or 'image', got {self.obs!r}")
        if self.activation not in ("leaky_relu", "relu"):
            problems.append(f"activation must be 'leaky_relu' or 'relu', got {self.activation!r}")
        if self.output not in ("tanh", "linear"):
            problems.append(f"output must be 'tanh' or 'linear', got {self.output!r}")
        if self.batch_size < 1 or self.steps < 0 or self.log_every < 1:
            problems.append("batch_size and log_every must be >= 1 and steps >= 0")
        if not 0.0 <= self.valid_fraction < 1.0:
            problems.append(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if not len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides):
            problems.append("conv_channels, conv_kernels and conv_strides must have the same length")
        if problems:
            raise RewardModelError("RewardModelConfig: " + "; ".join(problems))

    def conv_output_size(self) -> int:
        """Side of the last conv layer's feature map for ``image_size`` frames (no padding)."""
        size = self.image_size
        for k, s in zip(self.conv_kernels, self.conv_strides, strict=True):
            size = (size - k) // s + 1
            if size < 1:
                raise RewardModelError(
                    f"RewardModelConfig: image_size {self.image_size} is too small for conv kernels "
                    f"{self.conv_kernels} with strides {self.conv_strides}")
        return size


@dataclass
class PreferenceData:
    """P labeled pairs of L-step segments (numpy or torch; pairs labeled "can't tell" are left out before)."""

    first_states: ArrayLike
    """float ``[P, L, D]``."""
    first_actions: ArrayLike
    """float ``[P, L, A]``."""
    second_states: ArrayLike
    second_actions: ArrayLike
    labels: ArrayLike
    """float ``[P]``: 0 first better, 1 second better, 0.5 equally good."""
    first_frames: ArrayLike | None = None
    """uint8 ``[P, L, H, W, 3]``: image models only."""
    second_frames: ArrayLike | None = None
    first_true: ArrayLike | None = None
    """float ``[P, L]`` ground-truth rewards (NaN where unknown): evaluation only, never trained on."""
    second_true: ArrayLike | None = None

    @property
    def num_pairs(self) -> int:
        return int(np.shape(self.labels)[0]) if np.ndim(self.labels) else 0

    @staticmethod
    def from_segments(pairs: Sequence[tuple[Segment, Segment]], labels: Sequence[float | None]) -> PreferenceData:
        """From ``(first, second)`` segments and their label values; "can't tell" (``None``) pairs are dropped.
        Frames, if needed, are attached afterwards (``dataclasses.replace(data, first_frames=...)``)."""
        if len(pairs) != len(labels):
            raise RewardModelError(f"PreferenceData: {len(pairs)} pairs but {len(labels)} labels")
        keep = [(p, float(v)) for p, v in zip(pairs, labels, strict=True) if v is not None]
        if not keep:
            raise RewardModelError("PreferenceData: no labeled pairs (all were can't-tell or none were given)")

        def stack(pick: Callable[[tuple[Segment, Segment]], np.ndarray]) -> np.ndarray:
            return np.stack([np.asarray(pick(p), np.float32) for p, _ in keep])

        return PreferenceData(
            first_states=stack(lambda p: p[0].states), first_actions=stack(lambda p: p[0].actions),
            second_states=stack(lambda p: p[1].states), second_actions=stack(lambda p: p[1].actions),
            labels=np.asarray([v for _, v in keep], np.float32),
            first_true=stack(lambda p: p[0].true_rewards), second_true=stack(lambda p: p[1].true_rewards))

    def validate(self, image: bool = False) -> None:
        """Shapes agree, values are finite, labels are 0 / 0.5 / 1, at least 2 pairs; ``RewardModelError`` if not."""
        p = self.num_pairs
        if np.ndim(self.labels) != 1 or p < 2:
            raise RewardModelError(f"PreferenceData: need at least 2 labeled pairs to train a reward model, got {p}")
        labels = _numpy(self.labels)
        bad = ~np.isin(labels, (0.0, 0.5, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RewardModelError(f"PreferenceData: labels must be 0, 0.5 or 1; pair {i} has {labels[i]}")
        s = np.shape(self.first_states)
        if len(s) != 3 or s[0] != p:
            raise RewardModelError(f"PreferenceData: first_states must be [P={p}, L, D], got {list(s)}")
        a = np.shape(self.first_actions)
        if len(a) != 3 or tuple(a[:2]) != tuple(s[:2]):
            raise RewardModelError(f"PreferenceData: first_actions must be [P={p}, L={s[1]}, A], got {list(a)}")
        for name, want in (("second_states", s), ("second_actions", a)):
            got = tuple(np.shape(getattr(self, name)))
            if got != tuple(want):
                raise RewardModelError(f"PreferenceData: {name} must have the shape of the first segments "
                                       f"{list(want)}, got {list(got)}")
        for name in ("first_states", "first_actions", "second_states", "second_actions"):
            _check_finite(name, _numpy(getattr(self, name)))
        for name in ("first_true", "second_true"):
            value = getattr(self, name)
            if value is not None and tuple(np.shape(value)) != tuple(s[:2]):
                raise RewardModelError(f"PreferenceData: {name} must be [P={p}, L={s[1]}], got {list(np.shape(value))}")
        if image:
            self._validate_frames(tuple(s[:2]))

    def _validate_frames(self, lead: tuple[int, ...]) -> None:
        for name in ("first_frames", "second_frames"):
            frames = getattr(self, name)
            if frames is None:
                raise RewardModelError(f"PreferenceData: an image reward model needs {name} (uint8 [P, L, H, W, 3])")
            shape = tuple(np.shape(frames))
            if len(shape) != 5 or shape[:2] != lead or shape[4] != 3:
                raise RewardModelError(f"PreferenceData: {name} must be uint8 [P={lead[0]}, L={lead[1]}, H, W, 3], "
                                       f"got {list(shape)}")
            dtype = frames.dtype
            if dtype not in (np.uint8, torch.uint8):
                raise RewardModelError(f"PreferenceData: {name} must be uint8, got {dtype}")


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_finite(name: str, x: np.ndarray) -> None:
    finite = np.isfinite(x)
    if not finite.all():
        pair = int(np.flatnonzero(~finite.reshape(len(x), -1).all(1))[0])
        raise RewardModelError(f"PreferenceData: {name} has NaN or inf values (first at pair {pair})")


def _relu_(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x, inplace=True)


def _leaky_relu_(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, inplace=True)


def _activation(config: RewardModelConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """In place: applied to fresh layer outputs (which no backward needs), it saves one allocation per layer."""
    return _relu_ if config.activation == "relu" else _leaky_relu_


def _act_module(config: RewardModelConfig) -> nn.Module:
    return nn.ReLU() if config.activation == "relu" else nn.LeakyReLU()


def _as_tensor(x: ArrayLike, device: torch.device, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
    t = torch.as_tensor(x, device=device)
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


class RewardModel(nn.Module):
    """Ensemble of E reward functions ``r(s, a)`` (or ``r(frame, a)``) with the input normalization it was trained
    with (state mean/std, buffers that travel with ``state_dict``).

    Args:
        config: architecture (and the training settings, kept for the record).
        state_dim, action_dim: D and A.
        state_mean, state_std: ``[D]`` normalization (default 0 / 1); ``train_reward_model`` fits them.
    """

    state_mean: torch.Tensor
    state_std: torch.Tensor

    def __init__(self, config: RewardModelConfig, state_dim: int, action_dim: int,
                 state_mean: ArrayLike | None = None, state_std: ArrayLike | None = None) -> None:
        super().__init__()
        self.config = config
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.members = config.members
        self.metrics: dict[str, Any] = {}
        """Training metrics (``train_reward_model`` fills them; saved with the model)."""
        mean = torch.zeros(state_dim) if state_mean is None else torch.as_tensor(state_mean, dtype=torch.float32)
        std = torch.ones(state_dim) if state_std is None else torch.as_tensor(state_std, dtype=torch.float32)
        self.register_buffer("state_mean", mean.reshape(state_dim).clone())
        self.register_buffer("state_std", std.reshape(state_dim).clone())
        self._act = _activation(config)
        e = config.members
        extra = action_dim if config.use_actions else 0
        self.convs = nn.ModuleList()
        self.grouped_convs: bool | None = None
        """How image members run their convs: one grouped conv per layer (``groups = E``: True), or E convs on
        slices of the same weights (False); ``None`` picks grouped on CUDA and sliced elsewhere (oneDNN's grouped
        conv ran 2x slower than E separate convs on the CPU: ``benchmarks/reward_model_speed.md``)."""
        if config.obs == "image":
            side = config.conv_output_size()
            cin = 3
            for cout, k, s in zip(config.conv_channels, config.conv_kernels, config.conv_strides, strict=True):
                # one grouped conv = E independent convs: group e reads channels [e*cin, (e+1)*cin)
                self.convs.append(nn.Conv2d(e * cin, e * cout, k, s, groups=e))
                cin = cout
            in_dim, hidden = cin * side * side + extra, config.image_hidden
        else:
            in_dim, hidden = state_dim + extra, config.hidden
        dims = (in_dim, *hidden, 1)
        self.layers = nn.ModuleList(EnsembleLinear(e, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))

    @property
    def widest_activation(self) -> int:
        """Floats per step and member in the widest activation (the training step sizes its chunks by it)."""
        cfg = self.config
        widths = [layer.weight.shape[1] for layer in self.layers if isinstance(layer, EnsembleLinear)]
        widths += [layer.weight.shape[2] for layer in self.layers if isinstance(layer, EnsembleLinear)]
        if cfg.obs == "image":
            size = cfg.image_size
            widths.append(3 * size * size)
            for c, k, st in zip(cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides, strict=True):
                size = (size - k) // st + 1
                widths.append(c * size * size)
        return max(widths)

    # --- inputs -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    def vector_inputs(self, states: ArrayLike | None, actions: ArrayLike | None) -> torch.Tensor | None:
        """The MLP part's per-step input ``[..., D (+ A)]`` (normalized states, then actions) for a state model,
        ``[..., A]`` (actions) for an image model, ``None`` for an image model without actions."""
        dev = self.device
        parts = []
        if self.config.obs == "state":
            if states is None:
                raise RewardModelError("RewardModel: a state reward model needs states")
            s = _as_tensor(states, dev)
            if s.shape[-1] != self.state_dim:
                raise RewardModelError(f"RewardModel: states have {s.shape[-1]} features, the model takes "
                                       f"{self.state_dim}")
            parts.append((s - self.state_mean) / self.state_std)
        if self.config.use_actions:
            if actions is None:
                raise RewardModelError("RewardModel: this reward model is r(s, a) and needs actions")
            a = _as_tensor(actions, dev)
            if a.shape[-1] != self.action_dim:
                raise RewardModelError(f"RewardModel: actions have {a.shape[-1]} dims, the model takes "
                                       f"{self.action_dim}")
            parts.append(a)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def _check_frames(self, frames: ArrayLike | None) -> torch.Tensor:
        if frames is None:
            raise RewardModelError("RewardModel: an image reward model needs frames (uint8 [..., H, W, 3])")
        f = _as_tensor(frames, self.device, dtype=None)
        size = self.config.image_size
        if f.dim() < 3 or tuple(f.shape[-3:]) != (size, size, 3):
            raise RewardModelError(f"RewardModel: frames must be [..., {size}, {size}, 3] (the model's image_size), "
                                   f"got {list(f.shape)}")
        return f

    # --- the vectorized members -----------------------------------------------------------------------------
    def member_rewards(self, vector: torch.Tensor | None, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Per-member rewards ``[E, N]`` from per-member inputs: ``vector [E, N, in]`` (from ``vector_inputs``),
        and for an image model ``frames`` uint8 ``[E, N, H, W, 3]``. Member e reads only row e of each."""
        x = vector
        if self.config.obs == "image":
            assert frames is not None
            feats = self._conv_features(frames)  # [E, N, C*h*w]
            x = feats if vector is None else torch.cat([feats, vector], dim=-1)
        assert x is not None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self._act(x)
        x = x.squeeze(-1)
        return torch.tanh(x) if self.config.output == "tanh" else x

    def _conv_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[E, N, H, W, 3]`` -> flattened conv features ``[E, N, F]``, member e reading row e."""
        e, n, height, width = frames.shape[:4]
        x = frames.permute(0, 1, 4, 2, 3).float().div_(255.0).sub_(0.5)  # [E, N, 3, H, W]
        grouped = self.grouped_convs if self.grouped_convs is not None else x.is_cuda
        if grouped:  # channels [e*C, (e+1)*C) of each layer belong to member e
            h = x.transpose(0, 1).reshape(n, e * 3, height, width)
            for conv in self.convs:
                h = self._act(conv(h))
            return h.reshape(n, e, -1).transpose(0, 1)
        features = []
        for i in range(e):  # the same weights, sliced per member
            h = x[i]
            for conv in self.convs:
                assert isinstance(conv, nn.Conv2d) and conv.bias is not None
                c = conv.out_channels // e
                h = self._act(F.conv2d(h, conv.weight[i * c:(i + 1) * c], conv.bias[i * c:(i + 1) * c], conv.stride))
            features.append(h.reshape(n, -1))
        return torch.stack(features)

    def forward(self, states: ArrayLike | None, actions: ArrayLike | None = None,
                frames: ArrayLike | None = None) -> torch.Tensor:
        """Per-member rewards ``[E, ...]`` of steps ``states [..., D]``, ``actions [..., A]`` (and, for an image
        model, ``frames`` uint8 ``[..., H, W, 3]``; its states may be ``None``). Differentiable; no chunking."""
        vec = self.vector_inputs(states, actions)
        e = self.members
        if self.config.obs == "image":
            f = self._check_frames(frames)
            lead = tuple(f.shape[:-3])
            flat_f = f.reshape(1, -1, *f.shape[-3:]).expand(e, -1, -1, -1, -1)
        else:
            assert vec is not None
            lead, flat_f = tuple(vec.shape[:-1]), None
        flat_v = None if vec is None else vec.reshape(1, -1, vec.shape[-1]).expand(e, -1, -1)
        return self.member_rewards(flat_v, flat_f).reshape(e, *lead)

    @torch.no_grad()
    def member_rewards_chunked(self, states: ArrayLike | None, actions: ArrayLike | None = None,
                               frames: ArrayLike | None = None, chunk: int | None = None) -> torch.Tensor:
        """``forward`` without gradients, in chunks of ``chunk`` steps (bounded memory for whole datasets)."""
        vec = self.vector_inputs(states, actions)
        f = self._check_frames(frames) if self.config.obs == "image" else None
        lead = tuple(f.shape[:-3]) if f is not None else tuple(vec.shape[:-1]) if vec is not None else ()
        n = math.prod(lead)
        budget = CPU_CHUNK_BYTES if self.device.type == "cpu" else 256 << 20
        chunk = chunk or max(64, budget // (4 * self.members * self.widest_activation))
        flat_v = None if vec is None else vec.reshape(n, -1)
        flat_f = None if f is None else f.reshape(n, *f.shape[-3:])
        out = torch.empty(self.members, n, device=self.device)
        for lo in range(0, n, chunk):
            sl = slice(lo, min(lo + chunk, n))
            v = None if flat_v is None else flat_v[sl].unsqueeze(0).expand(self.members, -1, -1)
            fr = None if flat_f is None else flat_f[sl].unsqueeze(0).expand(self.members, -1, -1, -1, -1)
            out[:, sl] = self.member_rewards(v, fr)
        return out.reshape(self.members, *lead)

    @torch.no_grad()
    def reward(self, states: ArrayLike | None, actions: ArrayLike | None = None,
               frames: ArrayLike | None = None) -> torch.Tensor:
        """Ensemble-mean reward ``[...]`` of steps ``states [..., D]``, ``actions [..., A]`` (image model:
        ``frames [..., H, W, 3]``): what relabeling writes. On the model's device, no gradients, chunked."""
        return self.member_rewards_chunked(states, actions, frames).mean(0)

    @torch.no_grad()
    def preference_probs(self, first_states: ArrayLike | None, first_actions: ArrayLike | None,
                         second_states: ArrayLike | None, second_actions: ArrayLike | None,
                         first_frames: ArrayLike | None = None, second_frames: ArrayLike | None = None) -> torch.Tensor:
        """P(second segment better) per member ``[E, P]`` for P pairs of segments ``[P, L, ...]``
        (Bradley-Terry on the summed rewards). Disagreement = its std over members; entropy from its mean."""
        r0 = self.member_rewards_chunked(first_states, first_actions, first_frames)  # [E, P, L]
        r1 = self.member_rewards_chunked(second_states, second_actions, second_frames)
        if r0.dim() != 3 or r0.shape != r1.shape:
            raise RewardModelError(f"RewardModel: both segments of each pair must be [P, L, ...] with the same P and "
                                   f"L, got rewards of shape {list(r0.shape[1:])} and {list(r1.shape[1:])}")
        return torch.sigmoid(r1.sum(-1) - r0.sum(-1))

    # --- one member alone -------------------------------------------------------------------------------------
    @torch.no_grad()
    def member(self, index: int) -> MemberNet:
        """Member ``index`` as a standalone plain network (``nn.Linear`` / ``nn.Conv2d``), with copies of its
        weights and of the normalization: same outputs as row ``index`` of ``forward``."""
        if not 0 <= index < self.members:
            raise IndexError(f"member {index} out of range for an ensemble of {self.members}")
        net = MemberNet(self.config, self.state_dim, self.action_dim).to(self.device)
        net.state_mean.copy_(self.state_mean)
        net.state_std.copy_(self.state_std)
        for conv, single in zip(self.convs, net.convs, strict=True):
            assert isinstance(conv, nn.Conv2d) and isinstance(single, nn.Conv2d) and conv.bias is not None
            c = single.out_channels
            single.weight.copy_(conv.weight[index * c:(index + 1) * c])
            assert single.bias is not None
            single.bias.copy_(conv.bias[index * c:(index + 1) * c])
        for layer, linear in zip(self.layers, net.linears, strict=True):
            assert isinstance(layer, EnsembleLinear) and isinstance(linear, nn.Linear)
            linear.weight.copy_(layer.weight[index].T)
            linear.bias.copy_(layer.bias[index, 0])
        return net

    # --- files -----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model (config, dims, normalization, weights, metrics) atomically: a temporary file in the
        same folder, fsynced, then renamed over ``path``; a crash leaves the old file or the new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT, "version": FORMAT_VERSION, "config": dataclasses.asdict(self.config),
            "spec": {"state_dim": self.state_dim, "action_dim": self.action_dim},
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "metrics": plain(self.metrics),
        }
        from robot_rl.nn.checkpoint import atomic_torch_save

        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> RewardModel:
        """A model written by ``save``, on ``device``. ``RewardModelError`` (one line, naming the file) when the
        file is missing, unreadable, not a reward model, or does not match its own config."""
        path = Path(path)
        payload = load_payload(path, FORMAT, FORMAT_VERSION, "reward model", RewardModelError)
        try:
            config = RewardModelConfig(**payload["config"])
            spec = payload["spec"]
            model = cls(config, int(spec["state_dim"]), int(spec["action_dim"]))
            model.load_state_dict(payload["state_dict"])
        except Exception as e:
            raise RewardModelError(f"{path}: reward model file does not match its config ({error_line(e)})") from e
        model.metrics = dict(payload.get("metrics") or {})
        return model.to(device).eval()


class MemberNet(nn.Module):
    """One member as a plain network: ``(states [..., D], actions [..., A], frames) -> rewards [...]``.
    ``RewardModel.member(e)`` fills one with member e's weights; the benchmark trains E of them in a loop."""

    state_mean: torch.Tensor
    state_std: torch.Tensor

    def __init__(self, config: RewardModelConfig, state_dim: int, action_dim: int) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        extra = action_dim if config.use_actions else 0
        self.convs = nn.ModuleList()
        if config.obs == "image":
            side, cin = config.conv_output_size(), 3
            for cout, k, s in zip(config.conv_channels, config.conv_kernels, config.conv_strides, strict=True):
                self.convs.append(nn.Conv2d(cin, cout, k, s))
                cin = cout
            dims = (cin * side * side + extra, *config.image_hidden, 1)
        else:
            dims = (state_dim + extra, *config.hidden, 1)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.act = _act_module(config)

    def forward(self, states: torch.Tensor | None, actions: torch.Tensor | None = None,
                frames: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        if self.config.obs == "image":
            assert frames is not None
            lead = frames.shape[:-3]
            h = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0 - 0.5
            for conv in self.convs:
                h = self.act(conv(h))
            parts.append(h.flatten(1).reshape(*lead, -1))
        else:
            assert states is not None
            parts.append((states - self.state_mean) / self.state_std)
        if self.config.use_actions:
            assert actions is not None
            parts.append(actions)
        x = torch.cat(parts, dim=-1)
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < len(self.linears) - 1:
                x = self.act(x)
        x = x.squeeze(-1)
        return torch.tanh(x) if self.config.output == "tanh" else x


def plain(value: Any, json_safe: bool = False) -> Any:
    """Plain Python values (dicts, lists, numbers) from numpy / torch scalars, as ``torch.load(weights_only=True)``
    reads them back; ``json_safe``: non-finite floats become ``None``."""
    if isinstance(value, dict):
        return {str(k): plain(v, json_safe) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, json_safe) for v in value]
    if isinstance(value, np.generic | torch.Tensor):
        return plain(value.item(), json_safe)
    if json_safe and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- training ------------------------------------------------------------------------------------------------

@dataclass
class _Tensors:
    """The pairs on the training device, first and second stacked: ``[P, 2, L, ...]``."""

    states: torch.Tensor
    actions: torch.Tensor
    labels: torch.Tensor
    frames: torch.Tensor | None
    true_returns: torch.Tensor | None
    """``[P, 2]`` (NaN where any step's truth is unknown)."""

    def subset(self, index: torch.Tensor) -> _Tensors:
        return _Tensors(self.states[index], self.actions[index], self.labels[index],
                        None if self.frames is None else self.frames[index],
                        None if self.true_returns is None else self.true_returns[index])


def _to_device(data: PreferenceData, image: bool, device: torch.device) -> _Tensors:
    def pair(a: ArrayLike, b: ArrayLike, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        return torch.stack([_as_tensor(a, device, dtype), _as_tensor(b, device, dtype)], dim=1)

    frames = None
    if image:
        assert data.first_frames is not None and data.second_frames is not None
        frames = pair(data.first_frames, data.second_frames, dtype=None)
    truth = None
    if data.first_true is not None and data.second_true is not None:
        truth = pair(data.first_true, data.second_true).sum(-1)  # NaN if any step is unknown
    return _Tensors(pair(data.first_states, data.second_states), pair(data.first_actions, data.second_actions),
                    _as_tensor(data.labels, device), frames, truth)


def _build_model(config: RewardModelConfig, state_dim: int, action_dim: int, mean: np.ndarray,
                 std: np.ndarray) -> RewardModel:
    """Initialize from ``config.seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return RewardModel(config, state_dim, action_dim, mean, std)


def pair_logits(model: RewardModel, vector: torch.Tensor | None, frames: torch.Tensor | None, index: torch.Tensor,
                shift_pad: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bradley-Terry logits R(second) - R(first) ``[E, B]`` of the pairs ``index [E, B]`` (each member its own
    rows) of ``vector [P, 2, L, in]`` (from ``model.vector_inputs``) and ``frames`` uint8 ``[P, 2, L, H, W, 3]``;
    frames get random shifts when ``shift_pad`` > 0."""
    e, b = index.shape
    v = None if vector is None else vector[index].reshape(e, -1, vector.shape[-1])  # [E, B*2*L, in]
    f = None
    if frames is not None:
        f = frames[index]  # [E, B, 2, L, H, W, 3]
        f = f.reshape(e, -1, *f.shape[-3:])
        if shift_pad > 0:
            f = random_shift(f.flatten(0, 1), shift_pad, generator).reshape(f.shape)
    ref = vector if vector is not None else frames
    assert ref is not None
    returns = model.member_rewards(v, f).reshape(e, b, 2, ref.shape[2]).sum(-1)  # [E, B, 2]
    return returns[..., 1] - returns[..., 0]


CPU_CHUNK_BYTES = 16 << 20
"""On the CPU, a training step runs its minibatch in chunks whose widest activation stays under this size: glibc
serves blocks above 32 MiB with fresh ``mmap``s, and page-faulting a new 40 MB block for every activation and
gradient of every step costs ~30% of the step (see ``benchmarks/reward_model_speed.md``). Same math: the chunks'
gradients add up before the one optimizer step."""


class RewardTrainer:
    """The training step: every member draws its own bootstrap minibatch of pair indices; all members run in one
    vectorized forward and backward (in chunks of pairs on the CPU, see ``CPU_CHUNK_BYTES``); one AdamW step
    updates all members' parameters. ``train_reward_model`` runs it; the benchmark times it.

    Args:
        model: the ensemble (its normalization already fitted), on the training device.
        states, actions: the training pairs ``[P, 2, L, D]`` / ``[P, 2, L, A]`` (first, second), on that device.
        labels: ``[P]`` in {0, 0.5, 1}.
        frames: uint8 ``[P, 2, L, H, W, 3]`` for an image model.
    """

    def __init__(self, model: RewardModel, states: torch.Tensor, actions: torch.Tensor, labels: torch.Tensor,
                 frames: torch.Tensor | None = None) -> None:
        config = model.config
        dev = model.device
        self.model = model
        self.config = config
        self.vector = model.vector_inputs(states, actions)  # [P, 2, L, in], normalized once
        self.frames = frames
        self.labels = labels
        self.pairs = len(labels)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           fused=dev.type in ("cpu", "cuda"))
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(config.seed)
        per_pair = 2 * states.shape[2] * model.members * model.widest_activation * 4  # bytes
        fit = max(1, CPU_CHUNK_BYTES // per_pair) if dev.type == "cpu" else config.batch_size
        self.chunks = -(-config.batch_size // fit)

    def step(self) -> torch.Tensor:
        """One optimizer step; returns ``[3]`` on the device: the members' summed loss, and the correct and the
        clearly labeled (not 0.5) pair decisions of all members (no host sync)."""
        cfg, e, b = self.config, self.model.members, self.config.batch_size
        self.model.train()
        index = torch.randint(self.pairs, (e, b), device=self.labels.device, generator=self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        stats = []
        for part in index.chunk(self.chunks, dim=1):
            logits = pair_logits(self.model, self.vector, self.frames, part,
                                 cfg.shift_pad if self.frames is not None else 0, self.generator)
            target = self.labels[part]
            # sum over members of each member's mean over its b pairs
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / b
            loss.backward()
            with torch.no_grad():
                clear = target != 0.5
                stats.append(torch.stack([loss.detach(), ((logits > 0) == (target > 0.5))[clear].sum(),
                                          clear.sum()]))
        self.optimizer.step()
        return torch.stack(stats).sum(0) if len(stats) > 1 else stats[0]


def train_reward_model(data: PreferenceData, config: RewardModelConfig | None = None,
                       device: str | torch.device = "cpu",
                       progress: Callable[[int, dict[str, float]], None] | None = None,
                       ) -> tuple[RewardModel, dict[str, Any]]:
    """Fit a Bradley-Terry ensemble to ``data``; returns the model (eval mode, on ``device``) and its metrics.

    ``config.valid_fraction`` of the pairs (a seeded permutation) is held out. Each step every member draws its
    own bootstrap minibatch of ``batch_size`` training pairs; all members run in one vectorized forward and
    backward and one Adam step. ``progress(step, {"loss", "accuracy"})`` is called every ``log_every`` steps (the
    only host syncs of the loop). Same seed and data on the CPU give the same model.

    Metrics: ``loss`` (mean per-member loss over the last ``log_every`` steps), ``train_accuracy`` and
    ``valid_accuracy`` (ensemble-mean P vs the labels, equal-labeled pairs excluded; NaN if none),
    ``valid_member_accuracy`` (per member), ``train_true_agreement`` / ``valid_true_agreement`` (vs which segment
    has the higher ground-truth return, where ``first_true`` / ``second_true`` are given and finite), counts, time.
    """
    config = config or RewardModelConfig()
    image = config.obs == "image"
    data.validate(image=image)
    dev = torch.device(device)
    p = data.num_pairs
    order = np.random.default_rng(config.seed).permutation(p)
    n_valid = min(int(round(config.valid_fraction * p)), p - 1)
    valid_idx, train_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    states = np.concatenate([_numpy(data.first_states)[train_idx], _numpy(data.second_states)[train_idx]])
    states = states.reshape(-1, states.shape[-1]).astype(np.float64)
    mean, std = states.mean(0), np.maximum(states.std(0), 1e-3)
    model = _build_model(config, states.shape[-1], int(np.shape(data.first_actions)[-1]), mean, std).to(dev)

    everything = _to_device(data, image, dev)
    train = everything.subset(torch.as_tensor(train_idx, device=dev))
    valid = everything.subset(torch.as_tensor(valid_idx, device=dev))
    trainer = RewardTrainer(model, train.states, train.actions, train.labels, train.frames)
    e = config.members
    window = torch.zeros(3, device=dev)  # loss sum, correct, clearly labeled: summed on the device
    window_steps = 0
    last: dict[str, float] = {"loss": float("nan"), "accuracy": float("nan")}
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        window += trainer.step()
        window_steps += 1
        if step % config.log_every == 0 or step == config.steps:
            loss_sum, correct, count = window.tolist()
            last = {"loss": loss_sum / (e * window_steps), "accuracy": correct / max(count, 1.0)}
            if progress is not None:
                progress(step, last)
            window.zero_()
            window_steps = 0
    elapsed = time.perf_counter() - start
    model.eval()
    metrics: dict[str, Any] = {"steps": config.steps, "loss": last["loss"], "train_pairs": len(train_idx),
                               "valid_pairs": len(valid_idx), "time_s": elapsed,
                               "steps_per_s": config.steps / elapsed if elapsed > 0 else float("nan")}
    for name, split in (("train", train), ("valid", valid)):
        probs = _split_probs(model, split)  # [E, P]
        metrics[f"{name}_accuracy"] = _accuracy(probs.mean(0), split.labels)
        if name == "valid":
            metrics["valid_member_accuracy"] = [_accuracy(probs[i], split.labels) for i in range(e)]
        if split.true_returns is not None:
            metrics[f"{name}_true_agreement"], metrics[f"{name}_true_pairs"] = _agreement(probs.mean(0),
                                                                                          split.true_returns)
    model.metrics = dict(metrics)
    return model, metrics


def _split_probs(model: RewardModel, split: _Tensors, chunk: int = 512) -> torch.Tensor:
    probs = []
    for lo in range(0, len(split.labels), chunk):
        sl = slice(lo, lo + chunk)
        f = None if split.frames is None else split.frames[sl]
        probs.append(model.preference_probs(split.states[sl, 0], split.actions[sl, 0], split.states[sl, 1],
                                            split.actions[sl, 1], None if f is None else f[:, 0],
                                            None if f is None else f[:, 1]))
    return torch.cat(probs, dim=1) if probs else torch.empty(model.members, 0, device=model.device)


def _accuracy(prob: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of clearly labeled pairs (label 0 or 1) where ``prob`` (of the second being better) sides with it."""
    clear = labels != 0.5
    if not bool(clear.any()):
        return float("nan")
    return float(((prob[clear] > 0.5) == (labels[clear] > 0.5)).float().mean())


def _agreement(prob: torch.Tensor, true_returns: torch.Tensor) -> tuple[float, int]:
    """Share of pairs with finite, different true returns where ``prob`` sides with the higher one; and their count."""
    r0, r1 = true_returns[:, 0], true_returns[:, 1]
    ok = torch.isfinite(r0) & torch.isfinite(r1) & (r0 != r1)
    n = int(ok.sum())
    if n == 0:
        return float("nan"), 0
    return float(((prob[ok] > 0.5) == (r1[ok] > r0[ok])).float().mean()), n


def error_line(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters of it), for one-line errors."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"


def load_payload(path: Path, fmt: str, version: int, what: str, error: type[Exception],
                 hint: str = "") -> dict[str, Any]:
    """The dict a ``save`` of this package wrote to ``path`` (``format`` ``fmt``, ``version``), read on the CPU with
    ``weights_only``; ``error`` (one line naming the file and ``what`` it should be) when it is missing, unreadable,
    something else, or another version."""
    if not path.is_file():
        raise error(f"{path}: no such {what} file{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise error(f"{path}: not a readable {what} file ({error_line(e)})") from e
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise error(f"{path}: not a robot_rl {what} file")
    if payload.get("version") != version:
        raise error(f"{path}: {what} format version {payload.get('version')}, this code reads {version}")
    return payload
