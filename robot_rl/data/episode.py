"""One episode in memory (numpy), as the writer takes it and the reader returns it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.errors import DatasetError
from robot_rl.data.layout import RESERVED_ATTRS, check_name, num_frames, shape_problem

Provenance = dict[str, Any]
"""Where a reward label came from: ``labeler``, ``model``, ``prompt_version``, ``time``, ... (JSON-serializable)."""


@dataclass
class Episode:
    """One episode of T steps. Step t is (states[t], actions[t], rewards[t], next_states[t]).

    Simulator ground truth is put in ``rewards`` *and* in ``reward_labels["ground_truth"]``
    (``layout.GROUND_TRUTH``); on a real robot ``rewards`` is NaN until a labeler fills it.
    """

    states: np.ndarray
    """float32 ``[T, D]``: the ``"state"`` observation before each step."""
    actions: np.ndarray
    """float32 ``[T, A]`` in ``[-1, 1]``."""
    rewards: np.ndarray
    """float32 ``[T]``: the active reward; NaN = unlabeled."""
    next_states: np.ndarray
    """float32 ``[T, D]``: the state after each step (the pre-reset ``final_obs`` at the last step)."""
    terminals: np.ndarray
    """bool ``[T]``: the step terminated the episode (no bootstrapping past it)."""
    dones: np.ndarray
    """bool ``[T]``: terminated or truncated."""
    successes: np.ndarray | None = None
    """bool ``[T]``: per-step task success, where the backend can tell."""
    interventions: np.ndarray | None = None
    """bool ``[T]``: a person's teleop input chose the action at that step (``None``: not recorded, i.e. none)."""
    sim_states: np.ndarray | None = None
    """float64 ``[T, S]``: simulator state before each step, to render images later."""
    privileged: np.ndarray | None = None
    """float32 ``[T, P]``: sim-only ground truth observation."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """camera -> uint8 ``[K, H, W, 3]``, K = ceil(T / image_every); frame j shows step j * image_every."""
    image_every: int = 1
    """Stride in steps between stored image frames."""
    seed: int | None = None
    """Reset seed of the episode, if known."""
    reward_labels: dict[str, tuple[np.ndarray, Provenance]] = field(default_factory=dict)
    """labeler id -> (float32 ``[T]`` rewards, provenance)."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Free-form scalars/strings stored as HDF5 attrs. ``"success"`` may hold the episode's success when
    ``successes`` is absent; ``"num_samples"`` and ``"seed"`` are reserved."""

    @property
    def length(self) -> int:
        """T, the number of steps."""
        return int(np.shape(self.states)[0]) if np.ndim(self.states) else 0

    @property
    def num_interventions(self) -> int:
        """Steps a person's teleop input chose the action (0 where none were recorded)."""
        return int(np.count_nonzero(self.interventions)) if self.interventions is not None else 0

    @property
    def success(self) -> bool:
        """Any step succeeded (from ``successes``; else ``attrs["success"]``; else False)."""
        if self.successes is not None:
            return bool(np.any(self.successes))
        return bool(self.attrs.get("success", False))

    def validate(self, spec: EnvSpec | None = None) -> None:
        """Raise ``DatasetError`` (one line naming the key) unless every array has its dtype and shape,
        lengths agree, and states, actions and next states are finite. With ``spec``, also check the
        state, action, privileged and sim-state sizes against it."""
        t = self.length
        if not isinstance(self.states, np.ndarray) or self.states.ndim != 2 or t < 1:
            got = f"{getattr(self.states, 'dtype', type(self.states).__name__)} {np.shape(self.states)}"
            raise DatasetError(f"key 'states': expected a float32 numpy array [T >= 1, D], got {got}")
        d = spec.state_dim if spec else self.states.shape[1]
        a = spec.action.dim if spec else (np.shape(self.actions)[-1] if np.ndim(self.actions) == 2 else None)
        want: list[tuple[str, Any, str, tuple[int | None, ...]]] = [
            ("states", self.states, "float32", (t, d)),
            ("actions", self.actions, "float32", (t, a)),
            ("rewards", self.rewards, "float32", (t,)),
            ("next_states", self.next_states, "float32", (t, d)),
            ("terminals", self.terminals, "bool", (t,)),
            ("dones", self.dones, "bool", (t,)),
        ]
        want += [(key, flags, "bool", (t,)) for key, flags in (("successes", self.successes),
                                                                 ("interventions", self.interventions))
                 if flags is not None]
        if self.sim_states is not None:
            s = spec.sim_state_dim if spec and spec.sim_state_dim else None
            want.append(("sim_states", self.sim_states, "float64", (t, s)))
        if self.privileged is not None:
            p = spec.observations["privileged"].shape[0] if spec and "privileged" in spec.observations else None
            want.append(("privileged", self.privileged, "float32", (t, p)))
        if not isinstance(self.image_every, int | np.integer) or self.image_every < 1:
            raise DatasetError(f"key 'image_every': expected an int >= 1, got {self.image_every!r}")
        for cam, frames in self.images.items():
            check_name("camera", cam)
            want.append((f"images[{cam}]", frames, "uint8", (num_frames(t, int(self.image_every)), None, None, 3)))
        for lid, label in self.reward_labels.items():
            check_name("reward label id", lid)
            if not (isinstance(label, tuple) and len(label) == 2 and isinstance(label[1], dict)):
                raise DatasetError(f"key 'reward_labels[{lid}]': expected (float32 [T] array, provenance dict)")
            want.append((f"reward_labels[{lid}]", label[0], "float32", (t,)))
        for key, value, dtype, shape in want:
            if not isinstance(value, np.ndarray):
                raise DatasetError(f"key '{key}': expected a numpy array, got {type(value).__name__}")
            problem = shape_problem(key, value.dtype, value.shape, dtype, shape)
            if problem:
                raise DatasetError(problem)
        for key in ("states", "actions", "next_states"):
            finite_problem = nonfinite_problem(key, getattr(self, key))
            if finite_problem:
                raise DatasetError(finite_problem)
        if np.any(self.terminals & ~self.dones):
            step = int(np.argmax(self.terminals & ~self.dones))
            raise DatasetError(f"key 'terminals': step {step} is terminal but not done (dones must include it)")
        self._validate_metadata()

    def _validate_metadata(self) -> None:
        if self.seed is not None and not isinstance(self.seed, int | np.integer):
            raise DatasetError(f"key 'seed': expected an int or None, got {type(self.seed).__name__}")
        for key in self.attrs:
            if key in RESERVED_ATTRS - {"success"}:
                raise DatasetError(f"attr '{key}': reserved (the writer sets it from the episode's fields)")
        for lid, (_, provenance) in self.reward_labels.items():
            try:
                json.dumps(provenance)
            except (TypeError, ValueError) as e:
                raise DatasetError(f"key 'reward_labels[{lid}]': provenance is not JSON-serializable ({e})") from None


def nonfinite_problem(key: str, values: np.ndarray) -> str | None:
    """One-line description of NaN/inf values in a ``[T, ...]`` array (``None`` if all finite)."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    steps = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
    return f"key '{key}': {int(bad.sum())} non-finite values (NaN/inf), first at step {int(steps[0])}"
