"""Specs shared by every backend: what an observation term, an action and an environment look like.

Shapes in this module are *per environment*: a batched tensor of an observation term with spec
``ArraySpec(shape=(39,))`` has shape ``[num_envs, 39]``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

DType = Literal["float32", "float64", "uint8", "bool", "int64"]
ActionMode = Literal["joint_position", "joint_velocity", "joint_torque", "ee_delta", "twist"]

_TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "int64": torch.int64,
}


@dataclass(frozen=True)
class ArraySpec:
    """One observation term (or any array) of one environment."""

    shape: tuple[int, ...]
    """Per-environment shape, without the leading ``num_envs`` dimension."""
    dtype: DType = "float32"
    """Element type, as a numpy/torch dtype name."""
    low: float | None = None
    """Lower bound of every element, if known (``None``: unbounded)."""
    high: float | None = None
    """Upper bound of every element, if known (``None``: unbounded)."""
    description: str = ""
    """What the term is, in plain words."""

    @property
    def torch_dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self.dtype]

    def check(self, name: str, value: torch.Tensor, num_envs: int) -> None:
        """Raise ``ValueError`` naming the term if ``value`` is not a ``[num_envs, *shape]`` tensor of this dtype."""
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"observation term '{name}': expected a torch.Tensor, got {type(value).__name__}")
        want = (num_envs, *self.shape)
        if tuple(value.shape) != want:
            raise ValueError(f"observation term '{name}': expected shape {list(want)}, got {list(value.shape)}")
        if value.dtype != self.torch_dtype:
            raise ValueError(f"observation term '{name}': expected dtype {self.dtype}, got {value.dtype}")


@dataclass(frozen=True)
class StateSlice:
    """A named range of the ``"state"`` observation, e.g. ``hand_pos`` = 0:3."""

    name: str
    start: int
    stop: int
    unit: str = ""
    """Physical unit, e.g. ``"m"``, ``"rad"``, ``"m/s"``, ``"1"`` for dimensionless."""
    frame: str = ""
    """Reference frame of positions/orientations, e.g. ``"world"``."""
    description: str = ""

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ActionSpec:
    """Actions are float32 ``[N, dim]`` in ``[-1, 1]``; this maps them to physical units.

    ``physical = action * scale + offset`` elementwise.
    """

    dim: int
    mode: ActionMode
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    names: tuple[str, ...] = ()
    """One name per action dimension, e.g. joint names."""
    units: tuple[str, ...] = ()
    """One physical unit per action dimension."""

    def __post_init__(self) -> None:
        for what, seq in (("scale", self.scale), ("offset", self.offset)):
            if len(seq) != self.dim:
                raise ValueError(f"ActionSpec.{what} has {len(seq)} entries, expected dim={self.dim}")
        for what, labels in (("names", self.names), ("units", self.units)):
            if labels and len(labels) != self.dim:
                raise ValueError(f"ActionSpec.{what} has {len(labels)} entries, expected dim={self.dim}")

    def to_physical(self, action: torch.Tensor) -> torch.Tensor:
        """``[N, dim]`` normalized action -> ``[N, dim]`` physical command."""
        scale = torch.as_tensor(self.scale, dtype=action.dtype, device=action.device)
        offset = torch.as_tensor(self.offset, dtype=action.dtype, device=action.device)
        return action * scale + offset

    def from_physical(self, command: torch.Tensor) -> torch.Tensor:
        """``[N, dim]`` physical command -> ``[N, dim]`` normalized action (not clipped)."""
        scale = torch.as_tensor(self.scale, dtype=command.dtype, device=command.device)
        offset = torch.as_tensor(self.offset, dtype=command.dtype, device=command.device)
        return (command - offset) / scale


@dataclass(frozen=True)
class EnvSpec:
    """Everything a policy, a dataset or an LLM needs to know about an environment."""

    name: str
    """Registered name, e.g. ``"metaworld/drawer-open-v3"``."""
    observations: dict[str, ArraySpec]
    """Observation terms: ``"state"``, ``"image/<camera>"``, ``"privileged"``."""
    action: ActionSpec
    state_slices: tuple[StateSlice, ...] = ()
    """Named ranges of ``observations["state"]``."""
    max_episode_steps: int = 500
    """Episodes are truncated after this many steps."""
    control_hz: float = 0.0
    """Control frequency in Hz (``0``: unknown)."""
    task_text: str = ""
    """The task sentence given to a VLM or LLM."""
    sim_state_dim: int = 0
    """Length of ``info["sim_state"]`` rows (``0``: the backend cannot save state)."""
    cameras: tuple[str, ...] = ()
    """Cameras that ``render`` accepts."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Backend facts worth recording (e.g. which ground truth the sim exposes)."""

    def __post_init__(self) -> None:
        if "state" not in self.observations:
            raise ValueError(f"EnvSpec '{self.name}': observations must contain a 'state' term")
        (state_dim,) = self.observations["state"].shape
        for s in self.state_slices:
            if not 0 <= s.start < s.stop <= state_dim:
                raise ValueError(f"EnvSpec '{self.name}': state slice '{s.name}' {s.start}:{s.stop} "
                                 f"is outside the state of size {state_dim}")

    @property
    def state_dim(self) -> int:
        return self.observations["state"].shape[0]

    def state_slice(self, name: str) -> slice:
        for s in self.state_slices:
            if s.name == name:
                return slice(s.start, s.stop)
        known = ", ".join(s.name for s in self.state_slices)
        raise KeyError(f"EnvSpec '{self.name}' has no state slice '{name}' (known: {known})")

    def split_state(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[..., D]`` state -> ``{slice name: [..., size]}``, the form generated reward code receives."""
        return {s.name: state[..., s.start:s.stop] for s in self.state_slices}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> EnvSpec:
        d = json.loads(text)
        obs = {k: ArraySpec(**{**v, "shape": tuple(v["shape"])}) for k, v in d["observations"].items()}
        act = d["action"]
        action = ActionSpec(**{**act, **{k: tuple(act[k]) for k in ("scale", "offset", "names", "units")}})
        slices = tuple(StateSlice(**s) for s in d["state_slices"])
        return EnvSpec(
            name=d["name"], observations=obs, action=action, state_slices=slices,
            max_episode_steps=d["max_episode_steps"], control_hz=d["control_hz"], task_text=d["task_text"],
            sim_state_dim=d["sim_state_dim"], cameras=tuple(d["cameras"]), extras=d.get("extras", {}),
        )

    def compatible_with(self, other: EnvSpec) -> list[str]:
        """Differences that would break a policy or dataset moving between the two specs (empty: compatible)."""
        problems = []
        if self.state_dim != other.state_dim:
            problems.append(f"state dim {self.state_dim} != {other.state_dim}")
        if self.action.dim != other.action.dim:
            problems.append(f"action dim {self.action.dim} != {other.action.dim}")
        if self.action.mode != other.action.mode:
            problems.append(f"action mode {self.action.mode} != {other.action.mode}")
        return problems
