"""Bradley-Terry reward-model ensemble (PEBBLE / B-Pref over states, RL-VLM-F over images).

A segment's predicted return is the sum of per-step rewards r(s, a) in [-1, 1] (tanh output);
P(second > first) = sigmoid(R(second) - R(first)); the loss is the cross-entropy against the labels (0 first
better, 1 second better, 0.5 equal: a soft target). Every member is trained on its own bootstrap minibatch, and
all members run as one vectorized computation per step: state members as one batched matmul per layer
(``EnsembleLinear``), image members as one grouped convolution per layer (``groups = members``; on the CPU, E convs
on slices of the same weights, which oneDNN runs 2x faster). The per-member losses are summed, so one backward and
one Adam step over all parameters equal E independent trainings (``RewardTrainer``, in ``training.py`` with
``PreferenceData`` and ``train_reward_model``).

Speed (``benchmarks/reward_model_speed.md``): on a GPU the vectorized step is 1.8x (L = 50) to 2.9x (L <= 10)
faster than a per-member loop; on the CPU both are bound by the same matrix products and run at the same speed.

Inference precision (``RewardModel.precision``; ``robot_rl.rewards.precision``): ``reward``,
``member_rewards_chunked`` and ``preference_probs`` run in ``fp32``, ``tf32`` or ``bf16`` (autocast, outputs cast
back to float32); ``None``, the default, is ``tf32`` on CUDA and ``fp32`` elsewhere. Training (``forward``) is
untouched.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.core.config_check import bounded, check_fields
from robot_rl.nn.networks import EnsembleLinear
from robot_rl.nn.payload import error_line, load_payload, plain
from robot_rl.rewards.model.evaluation import plot_reward_vs_truth, reward_correlation
from robot_rl.rewards.precision import Precision, precision_context, resolve_precision

__all__ = [
    "MemberNet", "RewardModel", "RewardModelConfig", "RewardModelError", "plot_reward_vs_truth", "reward_correlation",
]

FORMAT = "robot_rl.reward_model"
FORMAT_VERSION = 1
ArrayLike = np.ndarray | torch.Tensor
CPU_CHUNK_BYTES = 16 << 20
"""On the CPU, a training step runs its minibatch in chunks whose widest activation stays under this size: glibc
serves blocks above 32 MiB with fresh ``mmap``s, and page-faulting a new 40 MB block for every activation and
gradient of every step costs ~30% of the step (see ``benchmarks/reward_model_speed.md``). Same math: the chunks'
gradients add up before the one optimizer step."""
CUDA_DEFAULT_PRECISION: Precision = "tf32"
"""Inference precision on CUDA unless set (tiny MLPs / CNNs: TF32 is plenty; ``fp32`` elsewhere)."""


class RewardModelError(ValueError):
    """Bad preference data or an unusable reward-model file; the message is one line and names the culprit."""


@dataclass(frozen=True)
class RewardModelConfig:
    """Reward-model ensemble and its training; defaults are PEBBLE / B-Pref's (state) and RL-VLM-F's (image CNN)."""

    members: int = bounded(3, ge=1)
    """Ensemble size E."""
    hidden: tuple[int, ...] = bounded((256, 256, 256), ge=1)
    """Hidden layers of each state member's MLP."""
    activation: Literal["leaky_relu", "relu"] = "leaky_relu"
    """Hidden activation (LeakyReLU with slope 0.01, as ``nn.LeakyReLU()``)."""
    output: Literal["tanh", "linear"] = "tanh"
    """Per-step reward squashing: tanh keeps r in [-1, 1]."""
    lr: float = bounded(3e-4, gt=0)
    batch_size: int = bounded(128, ge=1)
    """Pairs per member per step."""
    steps: int = bounded(200, ge=1)
    """Gradient steps: ~50 epochs over ~450 training pairs at batch 128, PEBBLE / B-Pref's ``reward_update`` of 50
    epochs (one step at L = 50 is ~32 GFLOP: ~0.6 s on a CPU core, so the default takes ~2 min there)."""
    weight_decay: float = bounded(0.0, ge=0)
    """Decoupled (AdamW) weight decay; 0 is PEBBLE's plain Adam."""
    label_noise: float = bounded(0.0, ge=0, lt=0.5)
    """ε in [0, 0.5): the share of labels assumed wrong (a noisy teacher or VLM). 0: plain Bradley-Terry."""
    noise_loss: Literal["flip", "smoothing"] = "flip"
    """How ``label_noise`` enters the loss. ``flip``: the likelihood of a label flipped with probability ε,
    P(y=1) = ε + (1 - 2ε)·σ(z) (a noise-aware Bradley-Terry loss); ``smoothing``: targets y(1 - ε) + (1 - y)ε."""
    valid_fraction: float = bounded(0.1, ge=0, lt=1)
    """Share of the labeled pairs held out for the accuracy metrics (never trained on)."""
    use_actions: bool = True
    """r(s, a) (PEBBLE) when true, else r(s). Image models append the actions to the conv features when true; set
    it false for RL-VLM-F's r(o)."""
    obs: Literal["state", "image"] = "state"
    """What a member reads: normalized states (+ actions), or frames (+ actions)."""
    image_size: int = bounded(64, ge=1)
    """Frames are uint8 [H, W, 3] with H = W = image_size."""
    conv_channels: tuple[int, ...] = bounded((16, 32, 64, 128), ge=1)
    """Image members: channels of each conv layer (RL-VLM-F's CNN, no padding)."""
    conv_kernels: tuple[int, ...] = bounded((5, 3, 3, 3), ge=1)
    conv_strides: tuple[int, ...] = bounded((3, 2, 2, 2), ge=1)
    image_hidden: tuple[int, ...] = bounded((), ge=1)
    """Image members: hidden layers between the flattened conv features (+ actions) and the output (RL-VLM-F: none)."""
    shift_pad: int = bounded(4, ge=0)
    """Image members: random-shift augmentation in training (pixels of replicated padding); 0: off."""
    log_every: int = bounded(100, ge=1)
    """Steps between ``progress`` calls (the only host syncs of the loop)."""
    cuda_graphs: bool = True
    """On CUDA, run training steps as CUDA-graph replays (``nn/cuda_graph.py``, 16 steps per replay)."""
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        # types, literals and ranges (steps >= 1: 0 steps would save an untrained model as if it were a result);
        # YAML lists become tuples
        check_fields(self, RewardModelError)
        problems = []
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
        self._precision: str | None = None
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

    @property
    def precision(self) -> str | None:
        """Inference precision (``fp32``, ``tf32``, ``bf16``; ``None``: ``tf32`` on CUDA, ``fp32`` elsewhere) of
        ``reward``, ``member_rewards_chunked`` and ``preference_probs``; not saved with the model."""
        return self._precision

    @precision.setter
    def precision(self, value: str | None) -> None:
        resolve_precision(value, "cpu", CUDA_DEFAULT_PRECISION)  # refuses unknown names now
        self._precision = None if value == "auto" else value

    @property
    def inference_precision(self) -> Precision:
        """``precision`` resolved for the model's current device."""
        return resolve_precision(self.precision, self.device, CUDA_DEFAULT_PRECISION)

    def _checked(self, x: ArrayLike | None, width: int, missing: str, unit: str, what: str = "states"
                 ) -> torch.Tensor:
        """``x`` as a float tensor on the model's device, its last dimension checked against ``width``."""
        if x is None:
            raise RewardModelError(f"RewardModel: {missing}")
        t = _as_tensor(x, self.device)
        if t.shape[-1] != width:
            raise RewardModelError(f"RewardModel: {what} have {t.shape[-1]} {unit}, the model takes {width}")
        return t

    def vector_inputs(self, states: ArrayLike | None, actions: ArrayLike | None) -> torch.Tensor | None:
        """The MLP part's per-step input ``[..., D (+ A)]`` (normalized states, then actions) for a state model,
        ``[..., A]`` (actions) for an image model, ``None`` for an image model without actions."""
        parts = []
        if self.config.obs == "state":
            s = self._checked(states, self.state_dim, "a state reward model needs states", "features")
            parts.append((s - self.state_mean) / self.state_std)
        if self.config.use_actions:
            parts.append(self._checked(actions, self.action_dim, "this reward model is r(s, a) and needs actions",
                                       "dims", what="actions"))
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
        """``forward`` without gradients, in chunks of ``chunk`` steps (bounded memory for whole datasets), at the
        model's ``inference_precision``; float32 out."""
        vec = self.vector_inputs(states, actions)
        f = self._check_frames(frames) if self.config.obs == "image" else None
        lead = tuple(f.shape[:-3]) if f is not None else tuple(vec.shape[:-1]) if vec is not None else ()
        n = math.prod(lead)
        budget = CPU_CHUNK_BYTES if self.device.type == "cpu" else 256 << 20
        chunk = chunk or max(64, budget // (4 * self.members * self.widest_activation))
        flat_v = None if vec is None else vec.reshape(n, -1)
        flat_f = None if f is None else f.reshape(n, *f.shape[-3:])
        out = torch.empty(self.members, n, device=self.device)
        with precision_context(self.inference_precision, self.device):
            for lo in range(0, n, chunk):
                sl = slice(lo, min(lo + chunk, n))
                v = None if flat_v is None else flat_v[sl].unsqueeze(0).expand(self.members, -1, -1)
                fr = None if flat_f is None else flat_f[sl].unsqueeze(0).expand(self.members, -1, -1, -1, -1)
                out[:, sl] = self.member_rewards(v, fr).float()
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
