"""Minari datasets (D4RL's successor) in and out, through the ``minari`` package: ``minari:DATASET_ID`` names a
dataset as Minari does (``namespace/name-v0``), found under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``).

Import: a ``Box`` observation is one state slice ``observation``; a ``Dict`` observation (AntMaze's
``observation``/``achieved_goal``/``desired_goal``) one slice per key (nested keys joined with ``.``), RGB ``Box``
entries (uint8 ``[H, W, 3]``) cameras. Minari keeps T + 1 observations per episode, so the next states are exact.
Actions are normalized from the declared ``Box`` bounds (from their range where a bound is infinite); discrete
actions are refused. ``rewards`` are the active rewards and the ``ground_truth`` label; ``terminations`` the
terminals, ``terminations | truncations`` the dones; ``infos["success"]`` (where recorded) the successes.

Export creates a Minari dataset with ``minari.create_dataset_from_buffers``: observations (the states and the
last next state, split back into a ``Dict`` where the import found one), actions in the source's units, the active
rewards, terminations and truncations; the active label's provenance goes into the dataset's ``description`` and,
with the ``EnvSpec``, into ``robot_rl.json`` beside Minari's own ``data/`` folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.episode import Episode
from robot_rl.data.interop.common import (
    ConvertReport,
    InteropError,
    StateKey,
    action_scaling,
    build_spec,
    json_attr,
    keys_of_spec,
    normalize,
    physical,
    require_new,
    state_keys,
    with_task,
)
from robot_rl.data.interop.inplace import PROVENANCE_ATTR
from robot_rl.data.labels import active_label
from robot_rl.data.layout import GROUND_TRUTH, LABEL_GROUP, one_line
from robot_rl.data.reader import Dataset
from robot_rl.data.writer import DatasetWriter

SCHEME = "minari"
META = "robot_rl.json"


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        raise InteropError("Minari datasets need the minari package: pip install 'robot_rl[interop]'") from None
    return minari


def datasets_root() -> str:
    return os.environ.get("MINARI_DATASETS_PATH") or os.path.join(os.path.expanduser("~"), ".minari", "datasets")


def _load(minari: Any, dataset_id: str) -> Any:
    try:
        local = sorted(minari.list_local_datasets())
    except Exception as e:  # a malformed folder under the root makes minari's listing fail
        raise InteropError(f"MINARI_DATASETS_PATH={datasets_root()}: minari cannot list it ({one_line(e)})") from None
    if dataset_id not in local:
        near = ", ".join(local[:5]) + (", ..." if len(local) > 5 else "") if local else "none"
        raise InteropError(f"minari:{dataset_id}: no such dataset under MINARI_DATASETS_PATH={datasets_root()} "
                           f"(local datasets: {near})")
    try:
        return minari.load_dataset(dataset_id)
    except Exception as e:  # minari raises ValueError/FileNotFoundError/KeyError for damaged datasets
        raise InteropError(f"minari:{dataset_id}: cannot load ({one_line(e)})") from None


def _layout(space: Any, prefix: str = "") -> tuple[list[tuple[str, tuple[int, ...]]], list[str]]:
    """(low-dimensional keys with shapes, camera keys) of an observation space, in the space's order."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        keys: list[tuple[str, tuple[int, ...]]] = []
        cams: list[str] = []
        for k, sub in space.spaces.items():
            a, b = _layout(sub, f"{prefix}{k}.")
            keys += a
            cams += b
        return keys, cams
    name = prefix.rstrip(".") or "observation"
    if isinstance(space, spaces.Box):
        if space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3:
            return [], [name]
        return [(name, tuple(int(x) for x in space.shape))], []
    raise InteropError(f"observation space {type(space).__name__} at '{name}': only Box and Dict are supported")


def _get(obs: Any, name: str, root: bool) -> np.ndarray:
    """The array of key ``name`` (``a.b`` for nested ``Dict`` entries) of an episode's observations."""
    if root and name == "observation" and not isinstance(obs, dict):
        return np.asarray(obs)
    value = obs
    for part in name.split("."):
        value = value[part]
    return np.asarray(value)


def import_dataset(target: str, out: str, *, obs_keys: Sequence[str] | None = None, task_text: str | None = None,
                   image_compression: str | None = "gzip",
                   on_progress: Callable[[int, int], None] | None = None) -> ConvertReport:
    """Import the local Minari dataset ``target`` (a dataset id) into a new robot_rl dataset ``out``."""
    minari = _minari()
    require_new(out)
    src = _load(minari, target)
    report = ConvertReport(f"{SCHEME}:{target}", out, on_progress=on_progress)
    from gymnasium import spaces

    action_space = src.action_space
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise InteropError(f"minari:{target}: action space {action_space}: only 1-D Box actions are supported")
    lowdim, cams = _layout(src.observation_space)
    is_dict = isinstance(src.observation_space, spaces.Dict)
    if obs_keys:
        known = dict(lowdim)
        for k in obs_keys:
            if k not in known:
                raise InteropError(f"minari:{target}: observation key '{k}': no such key (known: "
                                   f"{', '.join(known) or 'none'})")
        lowdim = [(k, known[k]) for k in obs_keys]
    if not lowdim:
        raise InteropError(f"minari:{target}: no low-dimensional observation to make a state from")
    keys = state_keys(lowdim)
    report.total = int(src.total_episodes)
    stored = _stored(target)
    spec = stored or _spec(target, src, keys, cams, action_space, task_text, report)
    spec = with_task(spec, task_text)
    report.task_text = spec.task_text
    with DatasetWriter(out, spec, source=report.source, task_text=spec.task_text,
                       image_compression=image_compression) as writer, _StoredLabels(src, target) as stored_labels:
        for ep in src.iterate_episodes():  # one episode in memory at a time
            episode = _episode(ep, keys, cams, is_dict, spec, target, stored_labels)
            writer.add_episode(episode)
            report.count(episode.length)
    return report


class _StoredLabels:
    """Reward labels an in-place relabel wrote into the episodes of Minari's ``main_data.hdf5``
    (``episode_<i>/reward_labels/<id>``), and whether its ``rewards`` are its own (``reward_provenance``)."""

    def __init__(self, src: Any, target: str) -> None:
        self.file: h5py.File | None = None
        self.own_rewards = True
        self.target = target
        path = Path(src.storage.data_path) / MAIN_FILE
        if src.storage.metadata.get("data_format", "hdf5") == "hdf5" and path.is_file():
            self.file = h5py.File(path, "r")
            raw = self.file.attrs.get(PROVENANCE_ATTR)
            label = json_attr(raw, f"{path}: attr '{PROVENANCE_ATTR}'") if raw is not None else None
            self.own_rewards = not isinstance(label, dict) or label.get("label") in (None, GROUND_TRUTH)

    def __enter__(self) -> _StoredLabels:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def of(self, episode_id: int, length: int) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        group = self.file.get(f"episode_{episode_id}/{LABEL_GROUP}") if self.file is not None else None
        if not isinstance(group, h5py.Group):
            return {}
        where = f"minari:{self.target}: episode {episode_id}: {LABEL_GROUP}"
        out = {}
        for lid, ds in group.items():
            values = np.asarray(ds[()], np.float32).reshape(-1)
            if len(values) != length:
                raise InteropError(f"{where}/{lid}: {len(values)} values, the episode has {length} steps")
            out[lid] = (values, json_attr(ds.attrs.get("provenance", "{}"), f"{where}/{lid} provenance"))
        return out


def _stored(target: str) -> EnvSpec | None:
    path = Path(datasets_root()) / target / META
    if not path.is_file():
        return None
    try:
        return EnvSpec.from_json(json.loads(path.read_text())["env_spec"])
    except Exception as e:  # a damaged robot_rl.json
        raise InteropError(f"{path}: env_spec: not a valid EnvSpec JSON ({one_line(e)})") from None


def _spec(target: str, src: Any, keys: list[StateKey], cams: list[str], action_space: Any, task_text: str | None,
          report: ConvertReport) -> EnvSpec:
    low, high = np.asarray(action_space.low, np.float64), np.asarray(action_space.high, np.float64)
    if np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low):
        scale, offset = (high - low) / 2, (high + low) / 2
    else:
        actions = np.concatenate([np.asarray(e.actions, np.float64).reshape(len(e.actions), -1)
                                  for e in src.iterate_episodes()])
        scale, offset, rescaled = action_scaling(actions, f"minari:{target}: actions")
        if rescaled:
            report.notes.append("unbounded action space: actions normalized from their range")
    meta = src.storage.metadata
    env_spec = meta.get("env_spec")
    extras: dict[str, Any] = {
        "import": {"format": SCHEME, "dataset_id": target, "path": str(Path(datasets_root()) / target)},
        "minari": {k: meta.get(k) for k in ("algorithm_name", "author", "code_permalink", "description",
                                            "minari_version", "ref_min_score", "ref_max_score")
                   if isinstance(meta.get(k), str | int | float)},
    }
    if isinstance(env_spec, str):
        extras["gymnasium_env_spec"] = env_spec
    image_shapes = {c: tuple(int(x) for x in _cam_space(src.observation_space, c).shape) for c in cams}
    max_steps = (json.loads(env_spec).get("max_episode_steps") if isinstance(env_spec, str) else None) or 1000
    return build_spec(f"minari/{target}", keys, int(action_space.shape[0]), scale, offset,
                      task_text=task_text or "",
                      max_episode_steps=max_steps, cameras=cams, image_shapes=image_shapes, extras=extras,
                      mode="joint_torque", description="Minari observation, end to end")


def _cam_space(space: Any, name: str) -> Any:
    for part in name.split("."):
        if hasattr(space, "spaces") and isinstance(space.spaces, dict):
            space = space.spaces[part]
    return space


def _episode(ep: Any, keys: list[StateKey], cams: list[str], is_dict: bool, spec: EnvSpec, target: str,
             stored: _StoredLabels) -> Episode:
    t = len(ep.actions)
    where = f"minari:{target}: episode {ep.id}"
    if t < 1:
        raise InteropError(f"{where}: no steps")
    parts = []
    for k in keys:
        values = _get(ep.observations, k.name, not is_dict)
        if values.shape[0] != t + 1:
            raise InteropError(f"{where}: observations '{k.name}': {values.shape[0]} rows, expected {t + 1}")
        parts.append(values.reshape(t + 1, -1).astype(np.float32))
    obs = np.concatenate(parts, axis=1)
    actions = normalize(np.asarray(ep.actions, np.float64).reshape(t, -1), np.asarray(spec.action.scale),
                        np.asarray(spec.action.offset))
    rewards = np.asarray(ep.rewards, np.float32).reshape(t)
    terminals = np.asarray(ep.terminations, bool).reshape(t)
    dones = terminals | np.asarray(ep.truncations, bool).reshape(t)
    dones[-1] = True
    successes = None
    infos = ep.infos if isinstance(ep.infos, dict) else {}
    if "success" in infos:
        flags = np.asarray(infos["success"]).reshape(-1).astype(bool)
        successes = flags[-t:] if len(flags) >= t else None
    images = {c: _get(ep.observations, c, False)[:t].astype(np.uint8) for c in cams}
    labels = {GROUND_TRUTH: (rewards.copy(), {"labeler": GROUND_TRUTH, "source": f"{SCHEME}:{target}"})} \
        if stored.own_rewards else {}
    labels.update(stored.of(int(ep.id), t))
    return Episode(states=obs[:-1], actions=actions, rewards=rewards, next_states=obs[1:], terminals=terminals,
                   dones=dones, successes=successes, images=images, reward_labels=labels,
                   attrs={"source_episode": int(ep.id)})


# ---- relabel in place (robot_rl.data.interop.inplace) --------------------------------------------------------

MAIN_FILE = "main_data.hdf5"
"""Minari's HDF5 storage: one file, one ``episode_<i>`` group per episode (its root holds nothing else: Minari
counts the root's keys as episodes)."""
PROVENANCE_GROUP = "/"


def relabel_file(target: str) -> str:
    """The ``main_data.hdf5`` of the local Minari dataset ``target`` that ``relabel minari:ID`` writes into."""
    src = _load(_minari(), target)
    fmt = src.storage.metadata.get("data_format", "hdf5")
    if fmt != "hdf5":
        raise InteropError(f"minari:{target}: stored as {fmt}; relabel in place needs Minari's hdf5 storage (import "
                           "it, relabel the import, export it back)")
    path = Path(src.storage.data_path) / MAIN_FILE
    if not path.is_file():
        raise InteropError(f"minari:{target}: no {path}")
    return str(path)


def episode_group(attrs: dict[str, Any]) -> str:
    """The ``episode_<i>`` group of an imported episode (its ``source_episode`` attr)."""
    return f"episode_{int(attrs['source_episode'])}"


# ---- export -----------------------------------------------------------------------------------------------------


def export_dataset(path: str, target: str, *, on_progress: Callable[[int, int], None] | None = None) -> ConvertReport:
    """Write the robot_rl dataset ``path`` as a new local Minari dataset ``target`` (a dataset id)."""
    minari = _minari()
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(target)
    except ValueError as e:
        raise InteropError(f"minari:{target}: {one_line(e)}") from None
    folder = Path(datasets_root()) / target
    if folder.exists():
        raise InteropError(f"minari:{target}: already exists under MINARI_DATASETS_PATH={datasets_root()}")
    report = ConvertReport(path, f"{SCHEME}:{target}", on_progress=on_progress)
    with Dataset(path) as ds:
        spec = ds.spec
        keys = keys_of_spec(spec)
        split = spec.extras.get("import", {}).get("format") == SCHEME and not (
            len(keys) == 1 and keys[0].name == "observation")
        label = active_label(path)
        report.total = ds.num_episodes
        if spec.cameras:
            report.notes.append(f"cameras {', '.join(spec.cameras)} not exported (the Minari dataset holds the state)")
        buffers, provenance = [], {}
        for i, name in enumerate(ds.episode_names):
            ep = ds.load_episode(name)
            if label and label in ep.reward_labels:
                provenance = ep.reward_labels[label][1]
            full = np.concatenate([ep.states, ep.next_states[-1:]], axis=0)
            observations: Any = {k.name: full[:, k.start:k.stop].reshape(len(full), *k.shape) for k in keys} \
                if split else full
            buffers.append(EpisodeBuffer(
                id=i, observations=observations, actions=physical(ep.actions, spec),
                rewards=ep.rewards.astype(np.float64), terminations=ep.terminals.copy(),
                truncations=ep.dones & ~ep.terminals, infos={}))
            report.count(ep.length)
        box = spaces.Box(-np.inf, np.inf, (spec.state_dim,), np.float32)
        obs_space: Any = spaces.Dict({k.name: spaces.Box(-np.inf, np.inf, k.shape, np.float32) for k in keys}) \
            if split else box
        scale, offset = np.asarray(spec.action.scale), np.asarray(spec.action.offset)
        act_space = spaces.Box((offset - np.abs(scale)).astype(np.float32), (offset + np.abs(scale)).astype(np.float32),
                               dtype=np.float32)
        env = _env_spec(spec)
        minari_meta = spec.extras.get("minari", {})
        description = str(minari_meta.get("description") or f"exported by robot_rl from {ds.source}")
        if label:
            description += f"; rewards: robot_rl label '{label}' {json.dumps(provenance, sort_keys=True)}"
        try:
            minari.create_dataset_from_buffers(
                target, buffers, env=env, observation_space=obs_space, action_space=act_space,
                algorithm_name=str(minari_meta.get("algorithm_name") or "robot_rl export"),
                author="robot_rl", author_email="n/a", code_permalink="https://github.com/", description=description)
        except Exception as e:  # minari raises ValueError on a bad id, AssertionError on a bad buffer
            if folder.exists():
                shutil.rmtree(folder)  # a half-written dataset would break minari's listing of all of them
            raise InteropError(f"minari:{target}: cannot create ({one_line(e)})") from None
        (Path(datasets_root()) / target / META).write_text(json.dumps(
            {"env_spec": spec.to_json(), "source": ds.source, "exported_from": ds.path, "reward_label": label,
             "reward_provenance": provenance}, indent=2))
    return report


def _env_spec(spec: EnvSpec) -> Any:
    """The gymnasium EnvSpec an import recorded, if that environment can be made here (else None)."""
    text = spec.extras.get("gymnasium_env_spec")
    if not isinstance(text, str):
        return None
    try:
        import gymnasium as gym
        from gymnasium.envs.registration import EnvSpec as GymSpec

        env_spec = GymSpec.from_json(text)
        gym.make(env_spec).close()
        return env_spec
    except Exception:  # the environment is not installed here: the dataset is written without it
        return None
