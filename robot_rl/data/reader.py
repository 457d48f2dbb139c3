"""``Dataset``: open a dataset file, validate it, and read episodes and transitions from it.

Validation on open reads shapes and dtypes of every array from metadata, and reads the low-dimensional
arrays that must be finite (states, next states, actions); images are never read on open.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.episode import Episode, nonfinite_problem
from robot_rl.data.errors import DatasetError, DatasetWarning
from robot_rl.data.journal import CommittedView
from robot_rl.data.layout import (
    ACTIONS,
    COMPLETE_ATTR,
    DATA,
    DONES,
    IMAGE_GROUP,
    INTERVENTIONS,
    LABEL_GROUP,
    MASK,
    NEXT_STATE,
    PRIVILEGED,
    RESERVED_ATTRS,
    REWARDS,
    SIM_STATE,
    STATE,
    SUCCESSES,
    TERMINALS,
    demo_index,
    num_frames,
    one_line,
    open_hdf5,
    plain,
    read_header,
    shape_problem,
)


@dataclass
class _EpisodeMeta:
    length: int
    success: bool
    arrays: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    """file key -> (dtype name, shape)."""
    image_every: dict[str, int] = field(default_factory=dict)
    """camera -> stride."""


class Dataset:
    """A validated, read-only dataset file. Raises ``DatasetError`` (one line) if the file is unusable;
    skips incomplete episodes with a ``DatasetWarning``.

    Keeps the file open, with a shared lock, until ``close()``: a writer cannot start meanwhile, and opening a
    file that a writer holds fails with a one-line "locked" error. If the writer of the file was killed in the
    middle of a commit, reads the last committed state through its journal (see ``journal.py``) and says so in
    ``notes`` and a ``DatasetWarning``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.notes: list[str] = []
        """Things worth showing a user that are not errors (missing masks, skipped episodes)."""
        self._view: CommittedView | None = None
        self._file: h5py.File | None = None
        self._last_group: tuple[str, Any] = ("", None)
        if os.path.isfile(self.path):
            try:
                self._view = CommittedView(self.path)  # holds a shared lock while the dataset is open
            except OSError as e:
                raise DatasetError(f"{self.path}: cannot open ({one_line(e)})") from None
        interrupted = self._view is not None and self._view.interrupted
        if interrupted:
            msg = ("a writer was killed while committing; showing the last committed state "
                   "(DatasetWriter(..., resume=True) restores the file to it)")
            self.notes.append(msg)
            warnings.warn(f"{self.path}: {msg}", DatasetWarning, stacklevel=2)
        try:
            self._file = open_hdf5(self.path, "r", fileobj=self._view if interrupted else None)
            header = read_header(self._file, self.path)
            self.spec: EnvSpec = header.spec
            self.task_text: str = header.task_text
            self.source: str = header.source
            self._meta = self._scan()
            self.train_names, self.valid_names = self._read_masks()
        except DatasetError:
            self.close()
            raise
        except Exception as e:  # a corrupt file can fail anywhere inside h5py
            self.close()
            raise DatasetError(f"{self.path}: cannot read ({one_line(e)})") from None

    # ---- what is in the file -------------------------------------------------------------------------------

    @property
    def episode_names(self) -> list[str]:
        """Complete episodes, sorted by index (``demo_2`` before ``demo_10``)."""
        return list(self._meta)

    @property
    def num_episodes(self) -> int:
        return len(self._meta)

    @property
    def num_transitions(self) -> int:
        return sum(m.length for m in self._meta.values())

    def episode_length(self, name: str) -> int:
        return self._episode_meta(name).length

    def reward_label_ids(self) -> list[str]:
        """Labeler ids found under ``reward_labels/`` in any episode."""
        prefix = LABEL_GROUP + "/"
        return sorted({k[len(prefix):] for m in self._meta.values() for k in m.arrays if k.startswith(prefix)})

    def episode_summaries(self) -> list[tuple[str, int, float, bool]]:
        """``(name, length, return, success)`` per episode; the return (sum of ``rewards``) is NaN if unlabeled."""
        out = []
        for name, meta in self._meta.items():
            rewards = self._read(name, REWARDS)
            out.append((name, meta.length, float(np.sum(rewards, dtype=np.float64)), meta.success))
        return out

    def intervention_counts(self) -> dict[str, int] | None:
        """Per episode, the steps a person's teleop input chose the action (``interventions``); ``None`` when no
        episode records interventions (older files, sim datasets)."""
        names = [name for name, meta in self._meta.items() if INTERVENTIONS in meta.arrays]
        if not names:
            return None
        return {name: int(np.count_nonzero(self._read(name, INTERVENTIONS))) if name in names else 0
                for name in self._meta}

    def episode_attrs(self, name: str) -> dict[str, Any]:
        """The free-form attrs of one episode (e.g. ``behaviour``), without reading its arrays."""
        self._episode_meta(name)
        try:
            group = self._f()[DATA][name]
            return {k: plain(v) for k, v in group.attrs.items() if k not in RESERVED_ATTRS}
        except Exception as e:
            raise DatasetError(f"{self.path}: episode {name}: cannot read attrs ({one_line(e)})") from None

    def episode_seed(self, name: str) -> int | None:
        """The env seed an episode was recorded with (``Episode.seed``; None if unknown), without reading arrays."""
        self._episode_meta(name)
        try:
            seed = int(self._f()[DATA][name].attrs.get("seed", -1))
        except Exception as e:
            raise DatasetError(f"{self.path}: episode {name}: cannot read attrs ({one_line(e)})") from None
        return None if seed < 0 else seed

    def describe(self) -> list[tuple[str, str, str]]:
        """``(key, dtype, shape pattern)`` for every array key, e.g. ``("obs/state", "float32", "[T, 39]")``;
        ``T`` is the episode length. Keys absent from some episodes say in how many they are."""
        found: dict[str, dict[tuple[str, str], int]] = {}
        for meta in self._meta.values():
            for key, (dtype, shape) in meta.arrays.items():
                every = meta.image_every.get(key.rsplit("/", 1)[-1]) if key.startswith(IMAGE_GROUP + "/") else None
                rows = "T" if every is None else ("T" if every == 1 else f"ceil(T/{every})")
                pattern = "[" + ", ".join([rows, *map(str, shape[1:])]) + "]"
                per_key = found.setdefault(key, {})
                per_key[(dtype, pattern)] = per_key.get((dtype, pattern), 0) + 1
        table = []
        for key in sorted(found, key=_key_order):
            variants = found[key]
            count = sum(variants.values())
            (dtype, pattern), _ = max(variants.items(), key=lambda kv: kv[1])
            if len(variants) > 1:
                pattern += f" (varies: {len(variants)} shapes)"
            if count < self.num_episodes:
                pattern += f" (in {count} of {self.num_episodes} episodes)"
            table.append((key, dtype, pattern))
        return table

    # ---- reading -------------------------------------------------------------------------------------------

    def load_episode(self, name: str, images: bool = False) -> Episode:
        """Read one episode; image frames only if ``images``."""
        meta = self._episode_meta(name)
        try:
            return self._load(name, meta, images)
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"{self.path}: episode {name}: cannot read ({one_line(e)})") from None

    def transitions(self, names: Sequence[str] | None = None, reward_key: str = "rewards") -> dict[str, np.ndarray]:
        """Concatenate episodes (default: all) into flat transition arrays (N = total steps):

        ``states`` / ``next_states`` float32 ``[N, D]``, ``actions`` float32 ``[N, A]``, ``rewards`` float32 ``[N]``,
        ``terminals`` / ``dones`` bool ``[N]``, ``episode_index`` int64 ``[N]`` (position in ``names``),
        ``step_index`` int64 ``[N]`` (step within its episode).

        ``reward_key``: ``"rewards"`` (the active reward) or a labeler id (``"ground_truth"`` or
        ``"reward_labels/ground_truth"``).
        """
        names = self.episode_names if names is None else list(names)
        key = reward_key if reward_key == REWARDS or reward_key.startswith(LABEL_GROUP + "/") \
            else f"{LABEL_GROUP}/{reward_key}"
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (
            "states", "actions", "rewards", "next_states", "terminals", "dones", "episode_index", "step_index")}
        for i, name in enumerate(names):
            meta = self._episode_meta(name)
            if key not in meta.arrays:
                raise DatasetError(f"{self.path}: episode {name}: key '{key}': missing (no such reward label)")
            states, actions, rewards, next_states, terminals, dones = (
                self._read(name, k) for k in (STATE, ACTIONS, key, NEXT_STATE, TERMINALS, DONES))
            parts["states"].append(states)
            parts["actions"].append(actions)
            parts["rewards"].append(rewards)
            parts["next_states"].append(next_states)
            parts["terminals"].append(terminals.astype(bool))
            parts["dones"].append(dones.astype(bool))
            parts["episode_index"].append(np.full(meta.length, i, dtype=np.int64))
            parts["step_index"].append(np.arange(meta.length, dtype=np.int64))
        d, a = self.spec.state_dim, self.spec.action.dim
        empty = {"states": (0, d), "actions": (0, a), "next_states": (0, d)}
        dtypes = {"states": np.float32, "actions": np.float32, "rewards": np.float32, "next_states": np.float32,
                  "terminals": np.bool_, "dones": np.bool_, "episode_index": np.int64, "step_index": np.int64}
        return {k: np.concatenate(v) if v else np.zeros(empty.get(k, (0,)), dtype=dtypes[k]) for k, v in parts.items()}

    def close(self) -> None:
        self._last_group = ("", None)
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._view is not None:
            self._view.close()
            self._view = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Dataset({self.path!r}: {self.num_episodes} episodes, {self.num_transitions} transitions)"

    # ---- internals -----------------------------------------------------------------------------------------

    def _f(self) -> h5py.File:
        if self._file is None:
            raise DatasetError(f"{self.path}: dataset is closed")
        return self._file

    def _episode_meta(self, name: str) -> _EpisodeMeta:
        if name not in self._meta:
            names = self.episode_names
            known = f"{names[0]} .. {names[-1]}" if names else "none"
            raise DatasetError(f"{self.path}: no episode {name!r} (episodes: {known})")
        return self._meta[name]

    def _read(self, name: str, key: str) -> np.ndarray:
        """One array of episode ``name`` (low-level API: this runs per episode, and is ~3x faster)."""
        try:
            array = h5py.h5d.open(self._group_id(name), key.encode())
            values = np.empty(array.shape, array.dtype)
            array.read(h5py.h5s.ALL, h5py.h5s.ALL, values)
        except Exception as e:
            raise DatasetError(f"{self.path}: episode {name}: key '{key}': cannot read ({one_line(e)})") from None
        return values

    def _group_id(self, name: str) -> Any:
        if self._last_group[0] != name:
            self._last_group = (name, h5py.h5g.open(self._f()[DATA].id, name.encode()))
        return self._last_group[1]

    def _scan(self) -> dict[str, _EpisodeMeta]:
        data = self._f()[DATA]
        episodes: list[tuple[int, str]] = []
        other: list[str] = []
        for name in data:
            index = demo_index(name)
            if index is None:
                other.append(name)
            else:
                episodes.append((index, name))
        metas: dict[str, _EpisodeMeta] = {}
        incomplete: list[str] = []
        for _, name in sorted(episodes):
            meta = self._check_episode(name, data)
            if meta is None:
                incomplete.append(name)
            else:
                metas[name] = meta
        if incomplete:
            msg = (f"skipped incomplete episode(s) {', '.join(incomplete)} (a writer was interrupted while writing "
                   "them; DatasetWriter(..., resume=True) removes them)")
            self.notes.append(msg)
            warnings.warn(f"{self.path}: {msg}", DatasetWarning, stacklevel=3)
        if other:
            msg = f"ignored /{DATA} members that are not demo_<i>: {', '.join(sorted(other))}"
            self.notes.append(msg)
            warnings.warn(f"{self.path}: {msg}", DatasetWarning, stacklevel=3)
        total = data.attrs.get("total")
        if total is not None and int(total) != sum(m.length for m in metas.values()):
            self.notes.append(f"/{DATA} attr 'total' is {int(total)}, the episodes hold "
                              f"{sum(m.length for m in metas.values())} transitions (the writer did not finish)")
        return metas

    def _check_episode(self, name: str, data: h5py.Group) -> _EpisodeMeta | None:
        """Metadata of one episode, ``None`` if incomplete; ``DatasetError`` naming the key if malformed.

        Uses h5py's low-level API (a few times faster than the high-level one: this runs for every episode)."""
        where = f"{self.path}: episode {name}"
        try:
            group = data.get(name)
            if not isinstance(group, h5py.Group):
                raise DatasetError(f"{where}: expected a group, got a {type(group).__name__}")
            length = _attr(group.id, COMPLETE_ATTR)
            if length is None:
                return None
            if not isinstance(length, int | np.integer) or length < 1:
                raise DatasetError(f"{where}: attr '{COMPLETE_ATTR}': expected an int >= 1, got {plain(length)!r}")
            meta = _EpisodeMeta(length=int(length), success=bool(_attr(group.id, "success")))
            arrays = _arrays(group)
            problem = self._check_arrays(arrays, meta)
            if problem:
                raise DatasetError(f"{where}: {problem}")
            for key in (STATE, ACTIONS, NEXT_STATE):
                values = np.empty(meta.arrays[key][1], np.float32)
                arrays[key].read(h5py.h5s.ALL, h5py.h5s.ALL, values)
                problem = nonfinite_problem(key, values)
                if problem:
                    raise DatasetError(f"{where}: {problem}")
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"{where}: cannot read ({one_line(e)})") from None
        return meta

    def _check_arrays(self, arrays: dict[str, Any], meta: _EpisodeMeta) -> str | None:
        """Check dtype and shape of every array against the spec; fills ``meta.arrays``; returns a problem."""
        t, spec = meta.length, self.spec
        privileged = spec.observations.get("privileged")
        want: list[tuple[str, str, tuple[int | None, ...], bool]] = [  # key, dtype, shape, required
            (STATE, "float32", (t, spec.state_dim), True),
            (NEXT_STATE, "float32", (t, spec.state_dim), True),
            (ACTIONS, "float32", (t, spec.action.dim), True),
            (REWARDS, "float32", (t,), True),
            (DONES, "uint8", (t,), True),
            (TERMINALS, "uint8", (t,), True),
            (SUCCESSES, "uint8", (t,), False),
            (INTERVENTIONS, "uint8", (t,), False),
            (SIM_STATE, "float64", (t, spec.sim_state_dim or None), False),
            (PRIVILEGED, "float32", (t, privileged.shape[0] if privileged else None), False),
        ]
        for key, array in arrays.items():
            if key.startswith(LABEL_GROUP + "/"):
                want.append((key, "float32", (t,), True))
                provenance = _attr(array, "provenance")
                try:
                    if provenance is not None:
                        json.loads(provenance)
                except (TypeError, ValueError) as e:
                    return f"key '{key}': attr 'provenance': not valid JSON ({one_line(e)})"
            elif key.startswith(IMAGE_GROUP + "/"):
                every = _attr(array, "every")
                every = 1 if every is None else every
                if not isinstance(every, int | np.integer) or every < 1:
                    return f"key '{key}': attr 'every': expected an int >= 1, got {plain(every)!r}"
                meta.image_every[key[len(IMAGE_GROUP) + 1:]] = int(every)
                want.append((key, "uint8", (num_frames(t, int(every)), None, None, 3), True))
        for key, dtype, shape, required in want:
            array = arrays.get(key)
            if array is None:
                if required:
                    return f"key '{key}': missing"
                continue
            got_dtype, got_shape = array.dtype, array.shape
            problem = shape_problem(key, got_dtype, got_shape, dtype, shape)
            if problem:
                return problem
            meta.arrays[key] = (str(got_dtype), tuple(got_shape))
        return None

    def _load(self, name: str, meta: _EpisodeMeta, images: bool) -> Episode:
        group = self._f()[DATA][name]

        def optional(key: str) -> np.ndarray | None:
            return self._read(name, key) if key in meta.arrays else None

        everies = set(meta.image_every.values())
        if images and len(everies) > 1:
            raise DatasetError(f"{self.path}: episode {name}: key '{IMAGE_GROUP}': cameras use different strides "
                               f"{sorted(everies)}; Episode holds one image_every")
        frames = {cam: self._read(name, f"{IMAGE_GROUP}/{cam}") for cam in meta.image_every} if images else {}
        labels = {}
        prefix = LABEL_GROUP + "/"
        for key in meta.arrays:
            if key.startswith(prefix):
                provenance = group[key].attrs.get("provenance")
                labels[key[len(prefix):]] = (self._read(name, key),
                                             json.loads(provenance) if provenance is not None else {})
        successes = optional(SUCCESSES)
        attrs = {k: plain(v) for k, v in group.attrs.items() if k not in RESERVED_ATTRS}
        if successes is None:
            attrs["success"] = meta.success
        seed = int(group.attrs.get("seed", -1))
        return Episode(
            states=self._read(name, STATE),
            actions=self._read(name, ACTIONS),
            rewards=self._read(name, REWARDS),
            next_states=self._read(name, NEXT_STATE),
            terminals=self._read(name, TERMINALS).astype(bool),
            dones=self._read(name, DONES).astype(bool),
            successes=None if successes is None else successes.astype(bool),
            interventions=None if (flags := optional(INTERVENTIONS)) is None else flags.astype(bool),
            sim_states=optional(SIM_STATE),
            privileged=optional(PRIVILEGED),
            images=frames,
            image_every=everies.pop() if len(everies) == 1 else 1,
            seed=None if seed < 0 else seed,
            reward_labels=labels,
            attrs=attrs,
        )

    def _read_masks(self) -> tuple[list[str], list[str]]:
        f, names = self._f(), self.episode_names
        if f.get(f"{MASK}/train") is None or f.get(f"{MASK}/valid") is None:
            self.notes.append(f"no /{MASK}/train and /{MASK}/valid (the writer did not finish): "
                              "all episodes count as training")
            return names, []
        known = set(names)
        split = []
        for part in ("train", "valid"):
            listed = [str(plain(n)) for n in np.asarray(f[f"{MASK}/{part}"][()]).reshape(-1)]
            gone = [n for n in listed if n not in known and n not in f[DATA]]  # not merely skipped as incomplete
            if gone:
                raise DatasetError(f"{self.path}: /{MASK}/{part} lists episode(s) {', '.join(gone[:5])}"
                                   f"{' ...' if len(gone) > 5 else ''} that /{DATA} no longer holds (deleted after "
                                   "the masks were written); to go on without them: "
                                   f"python -c \"import robot_rl.data as d; d.rewrite_masks('{self.path}')\"")
            split.append([n for n in listed if n in known])
        masked = set(split[0]) | set(split[1])
        if masked != known:
            self.notes.append(f"{len(known - masked)} episode(s) are in neither /{MASK}/train nor /{MASK}/valid")
        return split[0], split[1]


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Same as ``Dataset(path)``."""
    return Dataset(path)


_KEY_ORDER = [STATE, IMAGE_GROUP, PRIVILEGED, NEXT_STATE, ACTIONS, REWARDS, DONES, TERMINALS, SUCCESSES, INTERVENTIONS,
              SIM_STATE, LABEL_GROUP]


def _arrays(group: h5py.Group) -> dict[str, Any]:
    """Every dataset below ``group``: relative path -> low-level ``DatasetID`` (has ``dtype``, ``shape``, ``read``)."""
    found: dict[str, Any] = {}

    def visit(name: bytes, info: Any) -> None:
        if info.type == h5py.h5o.TYPE_DATASET:
            found[name.decode()] = h5py.h5d.open(group.id, name)

    h5py.h5o.visit(group.id, visit, info=True)
    return found


def _attr(oid: Any, name: str) -> Any:
    """Attribute ``name`` of a low-level object id: numpy scalar, or str (``None`` if absent)."""
    key = name.encode()
    if not h5py.h5a.exists(oid, key):
        return None
    attr = h5py.h5a.open(oid, key)
    if attr.dtype.kind in "biuf" and attr.shape == ():
        value = np.empty((), attr.dtype)
        attr.read(value)
        return value[()]
    owner = h5py.Group(oid) if isinstance(oid, h5py.h5g.GroupID) else h5py.Dataset(oid)
    return plain(owner.attrs[name])


def _key_order(key: str) -> tuple[int, str]:
    for i, prefix in enumerate(_KEY_ORDER):
        if key == prefix or key.startswith(prefix + "/"):
            return i, key
    return len(_KEY_ORDER), key

