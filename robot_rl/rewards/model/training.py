"""Training of the Bradley-Terry reward-model ensemble (``network.py``): the labeled pairs
(``PreferenceData``), the vectorized trainer (``RewardTrainer``: all members in one step) and
``train_reward_model``.

```
model, metrics = train_reward_model(PreferenceData(...), RewardModelConfig(steps=2000), device="cuda")
```
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robot_rl.nn.cuda_graph import STEPS_PER_REPLAY, StepGraphs
from robot_rl.nn.device import resolve_device
from robot_rl.nn.networks import random_shift
from robot_rl.rewards.base import Segment
from robot_rl.rewards.model.network import (
    CPU_CHUNK_BYTES,
    ArrayLike,
    RewardModel,
    RewardModelConfig,
    RewardModelError,
    _as_tensor,
)

__all__ = ["PreferenceData", "RewardTrainer", "pair_logits", "train_reward_model"]


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


def _warm_start(init: RewardModel, config: RewardModelConfig, state_dim: int, action_dim: int) -> RewardModel:
    """A copy of ``init`` (weights and normalization) that trains with ``config``'s settings; its architecture must
    be ``init``'s (``RewardModelError`` otherwise)."""
    if (init.state_dim, init.action_dim) != (state_dim, action_dim):
        raise RewardModelError(f"warm start: the model takes {init.state_dim} state and {init.action_dim} action "
                               f"features, the pairs have {state_dim} and {action_dim}")
    fields = ("members", "hidden", "activation", "obs", "use_actions", "image_size")
    changed = [f for f in fields if hasattr(config, f) and getattr(config, f) != getattr(init.config, f)]
    if changed:
        raise RewardModelError(f"warm start: config changes the model's architecture ({', '.join(changed)})")
    model = RewardModel(config, state_dim, action_dim).to(init.device)
    model.load_state_dict(init.state_dict())
    return model


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


def preference_loss(logits: torch.Tensor, target: torch.Tensor, noise: float = 0.0,
                    kind: str = "flip") -> torch.Tensor:
    """Summed Bradley-Terry loss of pair logits z = R(second) - R(first) against labels y in {0, 0.5, 1}.

    ``noise`` ε > 0 assumes that share of the labels is wrong: ``flip`` maximizes the likelihood of labels flipped
    with probability ε, P(y=1) = (1 - ε)σ(z) + εσ(-z), in log space (finite for any z); ``smoothing`` trains on the
    targets y(1 - ε) + (1 - y)ε. Both equal the plain loss at ε = 0."""
    if noise <= 0.0:
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    if kind == "smoothing":
        return F.binary_cross_entropy_with_logits(logits, target * (1 - 2 * noise) + noise, reduction="sum")
    keep, flip = math.log1p(-noise), math.log(noise)
    up, down = F.logsigmoid(logits), F.logsigmoid(-logits)
    log_p1 = torch.logaddexp(keep + up, flip + down)
    log_p0 = torch.logaddexp(flip + up, keep + down)
    return -(target * log_p1 + (1 - target) * log_p0).sum()


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
        self._graphs: StepGraphs | None = None

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
            loss = preference_loss(logits, target, cfg.label_noise, cfg.noise_loss) / b
            loss.backward()
            with torch.no_grad():  # masks multiplied, not indexed: no host sync, so the step can be graphed
                clear = target != 0.5
                stats.append(torch.stack([loss.detach(), (((logits > 0) == (target > 0.5)) & clear).sum(),
                                          clear.sum()]).float())
        self.optimizer.step()
        return torch.stack(stats).sum(0) if len(stats) > 1 else stats[0]

    @property
    def path(self) -> str:
        """``"cuda-graph"`` (CUDA, ``config.cuda_graphs``) or ``"eager"``."""
        return "cuda-graph" if self.model.device.type == "cuda" and self.config.cuda_graphs else "eager"

    def run(self, n: int) -> torch.Tensor:
        """``n`` steps; the sum of their ``step()`` outputs. On the CUDA-graph path, 16 steps per replay."""
        if self.path == "eager":
            total = self.step()
            for _ in range(n - 1):
                total = total + self.step()
            return total
        if self._graphs is None:
            self._graphs = StepGraphs(self.step, [self.model], self.optimizer, [self.generator], STEPS_PER_REPLAY)
        return self._graphs.run(n)


def train_reward_model(data: PreferenceData, config: RewardModelConfig | None = None,
                       device: str | torch.device = "cpu",
                       progress: Callable[[int, dict[str, float]], None] | None = None,
                       init: RewardModel | None = None) -> tuple[RewardModel, dict[str, Any]]:
    """Fit a Bradley-Terry ensemble to ``data``; returns the model (eval mode, on ``device``) and its metrics.

    ``init``: warm start, a copy of this model (its architecture, input normalization and weights; ``init`` itself
    is left untouched) trained further with ``config``'s training settings (steps, lr, batch, seed...), as the
    online preference loop retrains its ensemble on all labels so far.

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
    dev = resolve_device(device)
    p = data.num_pairs
    order = np.random.default_rng(config.seed).permutation(p)
    n_valid = min(int(round(config.valid_fraction * p)), p - 1)
    valid_idx, train_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    states = np.concatenate([_numpy(data.first_states)[train_idx], _numpy(data.second_states)[train_idx]])
    states = states.reshape(-1, states.shape[-1]).astype(np.float64)
    if init is None:
        mean, std = states.mean(0), np.maximum(states.std(0), 1e-3)
        model = _build_model(config, states.shape[-1], int(np.shape(data.first_actions)[-1]), mean, std).to(dev)
    else:
        model = _warm_start(init, config, states.shape[-1], int(np.shape(data.first_actions)[-1])).to(dev)

    everything = _to_device(data, image, dev)
    train = everything.subset(torch.as_tensor(train_idx, device=dev))
    valid = everything.subset(torch.as_tensor(valid_idx, device=dev))
    trainer = RewardTrainer(model, train.states, train.actions, train.labels, train.frames)
    e = config.members
    window = torch.zeros(3, device=dev)  # loss sum, correct, clearly labeled: summed on the device
    window_steps = 0
    last: dict[str, float] = {"loss": float("nan"), "accuracy": float("nan")}
    start = time.perf_counter()
    step = 0
    while step < config.steps:
        per_call = STEPS_PER_REPLAY if trainer.path == "cuda-graph" else 1
        n = min(per_call, config.steps - step, config.log_every - step % config.log_every)
        window += trainer.run(n)
        window_steps += n
        step += n
        if step % config.log_every == 0 or step == config.steps:
            loss_sum, correct, count = window.tolist()
            last = {"loss": loss_sum / (e * window_steps), "accuracy": correct / max(count, 1.0)}
            if progress is not None:
                progress(step, last)
            window.zero_()
            window_steps = 0
    elapsed = time.perf_counter() - start
    model.eval()
    metrics: dict[str, Any] = {"steps": config.steps, "path": trainer.path, "loss": last["loss"],
                               "train_pairs": len(train_idx),
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
