"""Device-resident samplers: the data moves to the device once; each batch is drawn there, with no host sync.

- ``TransitionSampler``: uniform minibatches of transitions ``[B, ...]`` for IQL / BC.
- ``SegmentSampler``: segments of L consecutive steps inside one episode ``[B, L, ...]``, alone or in pairs,
  for preference labeling and reward-model training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from robot_rl.data.reader import Dataset

Arrays = Mapping[str, np.ndarray | torch.Tensor]


class TransitionSampler:
    """Uniform minibatches of rows of ``transitions``.

    Args:
        transitions: name -> array ``[N, ...]``, every array with the same N (e.g. ``Dataset.transitions()``:
            states ``[N, D]``, actions ``[N, A]``, rewards ``[N]``, next_states ``[N, D]``, terminals ``[N]``, ...).
        device: where the data lives and batches are drawn.
        seed: seeds the sampler's own generator (same seed, same data, same device -> same batches).
    """

    def __init__(self, transitions: Arrays, device: torch.device | str = "cpu", seed: int = 0) -> None:
        self.device = torch.device(device)
        tensors = {k: torch.as_tensor(v) for k, v in transitions.items()}
        sizes = {k: len(v) for k, v in tensors.items()}
        if not sizes or len(set(sizes.values())) != 1 or min(sizes.values()) < 1:
            raise ValueError(f"transitions must be non-empty arrays with one common length, got lengths {sizes}")
        self.size = next(iter(sizes.values()))
        # Arrays of one dtype are packed side by side into one [N, F] tensor, so a batch is one gather per dtype
        # (on a GPU each gather is a kernel launch); ``data`` holds views of the packed columns.
        self._packed: list[tuple[torch.Tensor, list[tuple[str, int, int, tuple[int, ...]]]]] = []
        self.data: dict[str, torch.Tensor] = {}
        for dtype in dict.fromkeys(t.dtype for t in tensors.values()):
            names = [k for k, t in tensors.items() if t.dtype == dtype]
            flat = [tensors[k].reshape(self.size, -1) for k in names]
            packed = torch.cat(flat, dim=1).to(self.device)
            columns, start = [], 0
            for name, f in zip(names, flat, strict=True):
                shape = tuple(tensors[name].shape[1:])
                columns.append((name, start, f.shape[1], shape))
                self.data[name] = packed[:, start:start + f.shape[1]].reshape(self.size, *shape)
                start += f.shape[1]
            self._packed.append((packed, columns))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``{name: [B, ...]}``: B rows drawn uniformly with replacement."""
        index = torch.randint(self.size, (batch_size,), device=self.device, generator=self.generator)
        batch: dict[str, torch.Tensor] = {}
        for packed, columns in self._packed:
            rows = packed[index]
            for name, start, width, shape in columns:
                batch[name] = rows[:, start:start + width].reshape(batch_size, *shape)
        return batch


@dataclass(frozen=True)
class Segments:
    """B segments of L consecutive steps, each inside one episode."""

    states: torch.Tensor
    """float32 ``[B, L, D]``."""
    actions: torch.Tensor
    """float32 ``[B, L, A]``."""
    rewards: torch.Tensor
    """float32 ``[B, L]`` (NaN where unlabeled)."""
    episode_index: torch.Tensor
    """int64 ``[B]``: the episode (position in the sampler's episode list, see ``SegmentSampler.names``)."""
    start: torch.Tensor
    """int64 ``[B]``: step (within its episode) of the segment's first step."""
    step_index: torch.Tensor
    """int64 ``[B, L]``: step within the episode of every element (``start + arange(L)``): with
    ``episode_index`` it finds stored sim states or images to render."""
    flat_index: torch.Tensor
    """int64 ``[B, L]``: rows of the flat transition arrays, to gather any other per-step array."""


class SegmentSampler:
    """Draws segments of ``length`` steps that lie fully inside one episode, uniformly over valid start steps
    (an episode of T steps has T - L + 1 of them; episodes shorter than L are never drawn).

    Args:
        source: a ``Dataset``; or flat transitions with ``episode_index`` and ``step_index`` (as from
            ``Dataset.transitions()``); or a sequence of per-episode mappings with ``states`` ``[T, D]``,
            ``actions`` ``[T, A]``, ``rewards`` ``[T]``.
        length: L, steps per segment.
        device: where the data lives and segments are gathered.
        seed: seeds the sampler's own generator.
        reward_key: with a ``Dataset``, which reward to read (``"rewards"`` or a labeler id).
        names: with a ``Dataset``, which episodes (default all); ``episode_index`` indexes this list.
    """

    def __init__(self, source: Dataset | Arrays | Sequence[Arrays], length: int, device: torch.device | str = "cpu",
                 seed: int = 0, reward_key: str = "rewards", names: Sequence[str] | None = None) -> None:
        if length < 1:
            raise ValueError(f"segment length must be >= 1, got {length}")
        self.names: list[str] | None = None
        if isinstance(source, Dataset):
            self.names = source.episode_names if names is None else list(names)
            flat: Mapping[str, np.ndarray | torch.Tensor] = source.transitions(self.names, reward_key)
        elif isinstance(source, Mapping):
            flat = source
        else:
            flat = _concatenate(source)
        self.length = length
        self.device = torch.device(device)
        episode = np.asarray(flat["episode_index"])
        step = np.asarray(flat["step_index"])
        last = np.arange(len(episode) - length + 1) + length - 1
        valid = (episode[last] == episode[last - length + 1]) & (step[last] - step[last - length + 1] == length - 1)
        starts = np.flatnonzero(valid)
        if len(starts) == 0:
            raise ValueError(f"no episode has {length} consecutive steps to draw a segment from")
        self.starts = torch.as_tensor(starts, dtype=torch.int64, device=self.device)
        """int64 ``[S]``: flat rows where a segment may start."""
        self.data = {k: torch.as_tensor(flat[k]).to(self.device)
                     for k in ("states", "actions", "rewards", "episode_index", "step_index")}
        self._offsets = torch.arange(length, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    @property
    def num_starts(self) -> int:
        return len(self.starts)

    def sample(self, batch_size: int) -> Segments:
        """B segments, start steps drawn uniformly with replacement."""
        pick = torch.randint(self.num_starts, (batch_size,), device=self.device, generator=self.generator)
        return self._gather(pick)

    def sample_pairs(self, batch_size: int) -> tuple[Segments, Segments]:
        """B pairs of segments for preference queries; the two segments of a pair never start at the same step
        (they may come from the same episode)."""
        n = self.num_starts
        if n < 2:
            raise ValueError("need at least two possible segments to draw pairs")
        first = torch.randint(n, (batch_size,), device=self.device, generator=self.generator)
        second = torch.randint(n - 1, (batch_size,), device=self.device, generator=self.generator)
        second = second + (second >= first).long()  # uniform over the other n - 1 starts
        return self._gather(first), self._gather(second)

    def _gather(self, pick: torch.Tensor) -> Segments:
        flat_index = self.starts[pick][:, None] + self._offsets  # [B, L]
        step_index = self.data["step_index"][flat_index]
        return Segments(
            states=self.data["states"][flat_index],
            actions=self.data["actions"][flat_index],
            rewards=self.data["rewards"][flat_index],
            episode_index=self.data["episode_index"][flat_index[:, 0]],
            start=step_index[:, 0],
            step_index=step_index,
            flat_index=flat_index,
        )


def _concatenate(episodes: Sequence[Arrays]) -> dict[str, np.ndarray]:
    """Per-episode ``states``/``actions``/``rewards`` -> flat arrays with ``episode_index``/``step_index``."""
    if not episodes:
        raise ValueError("no episodes given")
    flat = {k: np.concatenate([np.asarray(e[k]) for e in episodes]) for k in ("states", "actions", "rewards")}
    lengths = [len(e["states"]) for e in episodes]
    flat["episode_index"] = np.repeat(np.arange(len(episodes), dtype=np.int64), lengths)
    flat["step_index"] = np.concatenate([np.arange(t, dtype=np.int64) for t in lengths])
    return flat
