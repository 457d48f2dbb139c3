"""What the importers and exporters of foreign dataset formats share: the error, the report, the mapping of named
observation keys onto state slices of an ``EnvSpec``, and action normalization."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.core.specs import ActionMode, ActionSpec, ArraySpec, EnvSpec, StateSlice
from robot_rl.data.errors import DatasetError

ACTION_SLACK = 1e-3
"""Actions within ``[-1 - ACTION_SLACK, 1 + ACTION_SLACK]`` are taken as already normalized."""
SPEC_ATTR = "robot_rl_env_spec"
"""Attr (or metadata key) in which an export keeps the full ``EnvSpec`` JSON, so that importing it back is exact."""


class InteropError(DatasetError):
    """A foreign dataset cannot be imported or exported; the message is one line naming the file and the key."""


@dataclass
class ConvertReport:
    """What an import or an export did."""

    source: str
    out: str
    episodes: int = 0
    steps: int = 0
    notes: list[str] = field(default_factory=list)
    """Things the user should know (keys skipped, actions rescaled, ...)."""
    total: int = 0
    """Episodes to convert, once known."""
    task_text: str = ""
    """The task sentence the imported dataset got."""
    on_progress: Callable[[int, int], None] | None = field(default=None, repr=False)
    """``on_progress(episodes_done, episodes_total)`` after each episode."""

    def count(self, steps: int) -> None:
        """One more episode of ``steps`` steps converted."""
        self.episodes += 1
        self.steps += steps
        if self.on_progress is not None:
            self.on_progress(self.episodes, self.total)

    def summary(self) -> str:
        return f"{self.source}: {self.episodes} episodes, {self.steps} steps -> {self.out}"


def require_path(path: str, what: str, *, directory: bool = False) -> str:
    """The absolute path, or a one-line ``InteropError`` if it is missing or of the wrong kind."""
    if not path:
        raise InteropError(f"{what}: empty path")
    if not os.path.exists(path):
        raise InteropError(f"{path}: no such {'directory' if directory else 'file'}")
    if directory and not os.path.isdir(path):
        raise InteropError(f"{path}: not a directory ({what})")
    if not directory and os.path.isdir(path):
        raise InteropError(f"{path}: is a directory, not a file ({what})")
    return os.path.abspath(path)


def require_new(out: str) -> None:
    if os.path.exists(out):
        raise InteropError(f"{out}: already exists; choose a new output path")


@dataclass
class StateKey:
    """One named observation key of a foreign format, flattened into ``state[start:stop]``."""

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]


def state_keys(shapes: Sequence[tuple[str, tuple[int, ...]]]) -> list[StateKey]:
    """Lay out keys (name, per-step shape) one after another in the state vector."""
    out, start = [], 0
    for name, shape in shapes:
        size = int(np.prod(shape)) if shape else 1
        out.append(StateKey(name, start, start + size, tuple(shape)))
        start += size
    return out


def keys_of_spec(spec: EnvSpec) -> list[StateKey]:
    """The named keys an export splits the state into: the spec's slices where they cover the state exactly,
    in order and without overlap (an imported spec's do), else one key ``state``."""
    slices = sorted(spec.state_slices, key=lambda s: s.start)
    pos = 0
    for s in slices:
        if s.start != pos:
            break
        pos = s.stop
    shapes = spec.extras.get("state_key_shapes", {})
    if slices and pos == spec.state_dim and len({s.name for s in slices}) == len(slices):
        return [StateKey(s.name, s.start, s.stop, tuple(shapes.get(s.name, (s.size,)))) for s in slices]
    return [StateKey("state", 0, spec.state_dim, (spec.state_dim,))]


def flatten(values: np.ndarray, length: int) -> np.ndarray:
    """``[T, ...]`` -> float32 ``[T, prod(...)]``."""
    return np.asarray(values, dtype=np.float32).reshape(length, -1)


def action_scaling(actions: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(scale, offset, rescaled)`` so that ``(actions - offset) / scale`` lies in ``[-1, 1]``: identity when the
    actions already do, else per-dimension from their range (a constant dimension keeps scale 1)."""
    if actions.size and not np.all(np.isfinite(actions)):
        raise InteropError(f"{where}: actions hold NaN or inf")
    dim = actions.shape[1]
    if not actions.size or (actions.min() >= -1 - ACTION_SLACK and actions.max() <= 1 + ACTION_SLACK):
        return np.ones(dim), np.zeros(dim), False
    low, high = actions.min(axis=0).astype(np.float64), actions.max(axis=0).astype(np.float64)
    scale = (high - low) / 2
    offset = (high + low) / 2
    const = scale == 0
    scale[const] = 1.0
    offset[const] = np.where(np.abs(low[const]) <= 1, 0.0, low[const])
    return scale, offset, True


def normalize(actions: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return ((np.asarray(actions, dtype=np.float64) - offset) / scale).astype(np.float32)


def physical(actions: np.ndarray, spec: EnvSpec) -> np.ndarray:
    """Normalized actions back in the units the source stored (``a * scale + offset``)."""
    scale = np.asarray(spec.action.scale, dtype=np.float64)
    offset = np.asarray(spec.action.offset, dtype=np.float64)
    if np.all(scale == 1) and np.all(offset == 0):
        return np.asarray(actions, dtype=np.float32)
    return (np.asarray(actions, dtype=np.float64) * scale + offset).astype(np.float32)


def build_spec(name: str, keys: Sequence[StateKey], action_dim: int, scale: np.ndarray, offset: np.ndarray, *,
               action_names: Sequence[str] = (), control_hz: float = 0.0, task_text: str = "",
               max_episode_steps: int = 500, sim_state_dim: int = 0, cameras: Sequence[str] = (),
               image_shapes: dict[str, tuple[int, ...]] | None = None, extras: dict[str, Any] | None = None,
               description: str = "", mode: ActionMode = "joint_position") -> EnvSpec:
    """An ``EnvSpec`` whose state is the keys laid end to end, one named slice each."""
    dim = keys[-1].stop if keys else 0
    if dim == 0:
        raise InteropError(f"{name}: no low-dimensional observation keys to make a state from")
    observations = {"state": ArraySpec((dim,), description=description or "imported observation keys")}
    for cam, shape in (image_shapes or {}).items():
        observations[f"image/{cam}"] = ArraySpec(tuple(shape), dtype="uint8")
    extras = dict(extras or {})
    extras["state_key_shapes"] = {k.name: list(k.shape) for k in keys}
    names = tuple(action_names) if len(action_names) == action_dim else ()
    return EnvSpec(
        name=name, observations=observations,
        action=ActionSpec(action_dim, mode, tuple(float(x) for x in scale),
                          tuple(float(x) for x in offset), names=names),
        state_slices=tuple(StateSlice(k.name, k.start, k.stop) for k in keys),
        max_episode_steps=max(1, int(max_episode_steps)), control_hz=float(control_hz), task_text=task_text,
        sim_state_dim=int(sim_state_dim), cameras=tuple(cameras), extras=extras,
    )


def with_task(spec: EnvSpec, task_text: str | None) -> EnvSpec:
    """``spec`` with the user's task sentence, where one was given."""
    return dataclasses.replace(spec, task_text=task_text) if task_text else spec


def spec_from_attr(text: Any, where: str) -> EnvSpec | None:
    """The ``EnvSpec`` an earlier export stored (``SPEC_ATTR``), or ``None``."""
    if text is None:
        return None
    try:
        return EnvSpec.from_json(text.decode() if isinstance(text, bytes) else str(text))
    except Exception as e:  # KeyError/TypeError/ValueError from a foreign or damaged attr
        raise InteropError(f"{where}: {SPEC_ATTR}: not a valid EnvSpec JSON ({' '.join(str(e).split())})") from None


def json_attr(value: Any, where: str) -> Any:
    try:
        return json.loads(value.decode() if isinstance(value, bytes) else str(value))
    except ValueError as e:
        raise InteropError(f"{where}: not valid JSON ({e})") from None
