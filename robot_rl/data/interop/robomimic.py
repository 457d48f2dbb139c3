"""robomimic HDF5 in and out (robomimic, MimicGen, Isaac Lab's recorder write it).

The layout (robomimic's "Dataset Structure" docs)::

    data                attrs: total, env_args (JSON: env_name, type, env_kwargs)
    data/demo_<i>       attrs: num_samples, model_file (robosuite XML, optional)
        obs/<key> [T, ...], next_obs/<key> [T, ...] (optional), actions [T, A], rewards [T], dones [T],
        states [T, S] (simulator states, optional)
    mask/<name>         demo names as bytes (train, valid, 20_percent, ...)

Import: every low-dimensional ``obs/<key>`` (numeric, ``[T, ...]``; in name order, or as ``obs_keys`` says)
becomes a named slice of the state; ``uint8 [T, H, W, 3]`` keys become cameras; other keys (depth) are skipped
with a note. ``next_obs`` is used where every state key has one; else the next state is the following step's
state (the last step repeats its state; episode attr ``next_obs_from_shift``). ``dones`` are the terminals
(``dones`` of the imported episode also hold its last step); ``rewards`` are the active rewards and the
``ground_truth`` label; ``states`` are the ``sim_state``; masks are kept. Actions outside ``[-1, 1]`` are
normalized per dimension from their range, with ``scale``/``offset`` in the ``ActionSpec`` (export undoes it).

Export writes the same layout from a robot_rl dataset: the state split at its slices (or one key ``state``),
``next_obs/<camera>`` the following step's frame (the last step repeats its own: the layout keeps no frame
after it), the active rewards (NaN where unlabeled), ``dones`` = terminals, every reward label under
``reward_labels/<id>``, the ``EnvSpec`` in ``data`` attr ``robot_rl_env_spec`` and the active label's
provenance in ``reward_provenance``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import h5py
import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.episode import Episode
from robot_rl.data.interop.common import (
    SPEC_ATTR,
    ConvertReport,
    InteropError,
    StateKey,
    action_scaling,
    build_spec,
    flatten,
    json_attr,
    keys_of_spec,
    normalize,
    physical,
    require_new,
    require_path,
    spec_from_attr,
    state_keys,
    with_task,
)
from robot_rl.data.interop.inplace import PROVENANCE_ATTR
from robot_rl.data.labels import active_label
from robot_rl.data.layout import GROUND_TRUTH, LABEL_GROUP, demo_index, open_hdf5, plain, provenance_json
from robot_rl.data.reader import Dataset
from robot_rl.data.writer import DatasetWriter

SCHEME = "robomimic"
GYM_TYPE = 2
"""robomimic's ``EnvType.GYM_TYPE``: the ``env_args`` type an export of a non-robosuite dataset declares."""
_SKIP_ATTRS = frozenset({"num_samples", "success", "seed"})


def import_dataset(target: str, out: str, *, obs_keys: Sequence[str] | None = None, task_text: str = "",
                   image_compression: str | None = "gzip",
                   on_progress: Callable[[int, int], None] | None = None) -> ConvertReport:
    """Import the robomimic file ``target`` into a new robot_rl dataset ``out``."""
    path = require_path(target, "robomimic HDF5 file")
    require_new(out)
    report = ConvertReport(f"{SCHEME}:{path}", out, on_progress=on_progress)
    with open_hdf5(path, "r") as f:
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            raise InteropError(f"{path}: no /data group (not a robomimic HDF5 file)")
        demos = sorted((n for n in data if demo_index(n) is not None and isinstance(data[n], h5py.Group)),
                       key=lambda n: demo_index(n) or 0)
        if not demos:
            raise InteropError(f"{path}: /data holds no demo_<i> groups (not a robomimic HDF5 file)")
        for name in demos:
            for key in ("actions", "obs"):
                if key not in data[name]:
                    raise InteropError(f"{path}: data/{name}: no '{key}' (not a robomimic HDF5 file)")
        report.total = len(demos)
        spec, keys, cameras = _import_spec(path, data, demos, obs_keys, task_text, report)
        masks = _read_masks(f)
        renamed: dict[str, str] = {}
        spec = with_task(spec, task_text)
        report.task_text = spec.task_text
        own_rewards = _own_rewards(data)
        with DatasetWriter(out, spec, source=report.source, task_text=spec.task_text,
                           image_compression=image_compression) as writer:
            for name in demos:
                episode = _episode(path, data[name], name, spec, keys, cameras, report, own_rewards)
                renamed[name] = writer.add_episode(episode)
                report.count(episode.length)
            if "train" in masks and "valid" in masks:
                writer.set_masks({m: [renamed[n] for n in names if n in renamed] for m, names in masks.items()})
            elif masks:
                report.notes.append(f"masks {', '.join(sorted(masks))} kept out: no train/valid pair")
    return report


def _import_spec(path: str, data: h5py.Group, demos: list[str], obs_keys: Sequence[str] | None, task_text: str,
                 report: ConvertReport) -> tuple[EnvSpec, list[StateKey], list[str]]:
    first = data[demos[0]]
    stored = spec_from_attr(data.attrs.get(SPEC_ATTR), f"{path}: /data attr")
    if stored is not None:
        keys = keys_of_spec(stored)
        cams = [c for c in stored.cameras if f"obs/{c}" in first]
        for sk in keys:
            if f"obs/{sk.name}" not in first:
                raise InteropError(f"{path}: data/{demos[0]}: obs/{sk.name}: missing (named by {SPEC_ATTR})")
        return stored, keys, cams
    lowdim, cams, skipped = _classify(first["obs"])
    if obs_keys:
        known = {k for k, _ in lowdim}
        for k in obs_keys:
            if k not in known:
                raise InteropError(f"{path}: data/{demos[0]}: obs/{k}: no such low-dimensional key "
                                   f"(known: {', '.join(sorted(known)) or 'none'})")
        shapes = dict(lowdim)
        lowdim = [(k, shapes[k]) for k in obs_keys]
    if skipped:
        report.notes.append(f"skipped obs keys (not low-dimensional or RGB): {', '.join(skipped)}")
    if not lowdim:
        raise InteropError(f"{path}: data/{demos[0]}: no low-dimensional obs keys to make a state from")
    keys = state_keys(lowdim)
    actions = np.concatenate([np.asarray(data[n]["actions"][()]).reshape(len(data[n]["actions"]), -1)
                              for n in demos])
    scale, offset, rescaled = action_scaling(actions, f"{path}: data/*/actions")
    if rescaled:
        report.notes.append("actions outside [-1, 1]: normalized per dimension from their range "
                            "(ActionSpec scale/offset; export restores them)")
    env_args_raw = data.attrs.get("env_args")
    env_args: dict[str, Any] = {}
    if env_args_raw is not None:
        parsed = json_attr(env_args_raw, f"{path}: /data attr 'env_args'")
        env_args = parsed if isinstance(parsed, dict) else {}
    env_name = str(env_args.get("env_name") or os.path.splitext(os.path.basename(path))[0])
    sim_dims = {data[n]["states"].shape[1] for n in demos if _flat_states(data[n])}
    if any(isinstance(data[n].get("states"), h5py.Group) for n in demos):
        report.notes.append("states: a group of scene states (Isaac Lab), not a flat [T, S] array: not imported")
    lengths = [int(data[n]["actions"].shape[0]) for n in demos]
    image_shapes = {c: tuple(first["obs"][c].shape[1:]) for c in cams}
    extras: dict[str, Any] = {"import": {"format": SCHEME, "path": path}}
    if env_args_raw is not None:
        extras["robomimic_env_args"] = plain(env_args_raw)
    spec = build_spec(f"robomimic/{env_name}", keys, actions.shape[1], scale, offset, task_text=task_text,
                      max_episode_steps=max(lengths), sim_state_dim=sim_dims.pop() if len(sim_dims) == 1 else 0,
                      cameras=cams, image_shapes=image_shapes, extras=extras, mode="ee_delta",
                      description="robomimic obs keys, end to end")
    return spec, keys, cams


def _flat_states(group: h5py.Group) -> bool:
    states = group.get("states")
    return isinstance(states, h5py.Dataset) and states.ndim == 2


def _classify(obs: h5py.Group) -> tuple[list[tuple[str, tuple[int, ...]]], list[str], list[str]]:
    """(low-dimensional keys with their per-step shapes, RGB camera keys, skipped keys) of one demo's ``obs``."""
    lowdim, cams, skipped = [], [], []
    for key, ds in obs.items():
        if not isinstance(ds, h5py.Dataset) or ds.ndim < 1 or ds.dtype.kind not in "fiub":
            skipped.append(key)
        elif ds.dtype == np.uint8 and ds.ndim == 4 and ds.shape[-1] == 3:
            cams.append(key)
        elif ds.ndim <= 2:
            lowdim.append((key, tuple(ds.shape[1:])))
        else:
            skipped.append(key)
    return lowdim, cams, skipped


def _read(group: h5py.Group, key: str, where: str, length: int) -> np.ndarray:
    values = np.asarray(group[key][()])
    if values.shape[:1] != (length,):
        raise InteropError(f"{where}: '{key}': {values.shape[0] if values.ndim else 0} rows, actions have {length}")
    return values


def _own_rewards(data: h5py.Group) -> bool:
    """Whether the demos' ``rewards`` are the file's own (not a label an export or an in-place relabel put there,
    which ``data`` attr ``reward_provenance`` names)."""
    raw = data.attrs.get(PROVENANCE_ATTR)
    if raw is None:
        return True
    label = json_attr(raw, "/data attr 'reward_provenance'")
    return not isinstance(label, dict) or label.get("label") in (None, GROUND_TRUTH)


def _episode(path: str, group: h5py.Group, name: str, spec: EnvSpec, keys: list[StateKey], cams: list[str],
             report: ConvertReport, own_rewards: bool = True) -> Episode:
    where = f"{path}: data/{name}"
    t = int(group["actions"].shape[0])
    if t < 1:
        raise InteropError(f"{where}: 'actions': empty episode")
    obs = group["obs"]
    parts = []
    for k in keys:
        if k.name not in obs:
            raise InteropError(f"{where}: obs/{k.name}: missing (other demos have it)")
        parts.append(flatten(_read(obs, k.name, where, t), t))
    states = np.concatenate(parts, axis=1)
    if states.shape[1] != spec.state_dim:
        raise InteropError(f"{where}: obs keys give a state of size {states.shape[1]}, "
                           f"the first demo's {spec.state_dim}")
    attrs: dict[str, Any] = {k: plain(v) for k, v in group.attrs.items() if k not in _SKIP_ATTRS}
    if "success" in group.attrs:  # Isaac Lab's recorder marks each demo
        attrs["success"] = bool(plain(group.attrs["success"]))
    attrs["source_demo"] = name
    nxt = group.get("next_obs")
    if isinstance(nxt, h5py.Group) and all(k.name in nxt for k in keys):
        next_states = np.concatenate([flatten(_read(nxt, k.name, where + "/next_obs", t), t) for k in keys], axis=1)
    else:
        next_states = np.concatenate([states[1:], states[-1:]], axis=0)
        attrs["next_obs_from_shift"] = True
        if "next_obs: from the following step" not in report.notes:
            report.notes.append("next_obs: from the following step (some demos have none; the last step repeats)")
    actions = normalize(flatten(_read(group, "actions", where, t), t), np.asarray(spec.action.scale),
                        np.asarray(spec.action.offset))
    terminals = np.zeros(t, dtype=bool)
    if "dones" in group:
        terminals = _read(group, "dones", where, t).reshape(t).astype(bool)
    dones = terminals.copy()
    dones[-1] = True
    labels: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    rewards = np.full(t, np.nan, dtype=np.float32)
    if "rewards" in group:
        rewards = _read(group, "rewards", where, t).reshape(t).astype(np.float32)
        if own_rewards:  # else the stored reward_labels say what they are (ground_truth among them, if kept)
            labels[GROUND_TRUTH] = (rewards.copy(), {"labeler": "ground_truth", "source": f"{SCHEME}:{path}"})
    stored = group.get(LABEL_GROUP)
    if isinstance(stored, h5py.Group):
        for lid, ds in stored.items():
            prov = json_attr(ds.attrs.get("provenance", "{}"), f"{where}: {LABEL_GROUP}/{lid} provenance")
            labels[lid] = (_read(stored, lid, where, t).reshape(t).astype(np.float32), prov)
    sim_states = None
    if _flat_states(group):
        sim_states = _read(group, "states", where, t).astype(np.float64)
    images = {c: _read(obs, c, where, t) for c in cams}
    return Episode(states=states, actions=actions, rewards=rewards, next_states=next_states, terminals=terminals,
                   dones=dones, sim_states=sim_states, images=images, reward_labels=labels, attrs=attrs)


def _read_masks(f: h5py.File) -> dict[str, list[str]]:
    group = f.get("mask")
    if not isinstance(group, h5py.Group):
        return {}
    return {m: [plain(n) for n in np.asarray(ds[()]).reshape(-1)] for m, ds in group.items()
            if isinstance(ds, h5py.Dataset)}


# ---- relabel in place (robot_rl.data.interop.inplace) --------------------------------------------------------

PROVENANCE_GROUP = "data"
"""The group whose attr ``reward_provenance`` names the label ``rewards`` hold (as the export writes it)."""


def relabel_file(target: str) -> str:
    """The robomimic HDF5 file ``target`` that ``relabel robomimic:PATH`` writes into, checked to be one."""
    path = require_path(target, "robomimic HDF5 file")
    with open_hdf5(path, "r") as f:
        data = f.get("data")
        if not isinstance(data, h5py.Group) or not any(demo_index(n) is not None for n in data):
            raise InteropError(f"{path}: no /data/demo_<i> groups (not a robomimic HDF5 file)")
    return path


def episode_group(attrs: dict[str, Any]) -> str:
    """The demo group of an imported episode (its ``source_demo`` attr)."""
    return f"data/{attrs['source_demo']}"


# ---- export -----------------------------------------------------------------------------------------------------


def export_dataset(path: str, target: str, *, on_progress: Callable[[int, int], None] | None = None) -> ConvertReport:
    """Write the robot_rl dataset ``path`` as a new robomimic HDF5 file ``target`` (atomically)."""
    out = os.path.abspath(target)
    require_new(out)
    report = ConvertReport(path, f"{SCHEME}:{out}", on_progress=on_progress)
    tmp = out + ".partial"
    try:
        with Dataset(path) as ds, h5py.File(tmp, "w") as f:
            label = active_label(path)
            spec = ds.spec
            keys = keys_of_spec(spec)
            names = _export_names(ds)
            report.total = ds.num_episodes
            data = f.create_group("data")
            for name, new in zip(ds.episode_names, names, strict=True):
                _write_demo(data.create_group(new), ds.load_episode(name, images=True), keys, spec, ds)
                report.count(ds.episode_length(name))
            data.attrs["total"] = np.int64(report.steps)
            env_args = spec.extras.get("robomimic_env_args")
            data.attrs["env_args"] = env_args if isinstance(env_args, str) else json.dumps(
                {"env_name": spec.name, "type": GYM_TYPE, "env_kwargs": {}})
            data.attrs[SPEC_ATTR] = spec.to_json()
            data.attrs["source"] = ds.source
            if label is not None:
                data.attrs["reward_provenance"] = provenance_json({"label": label, **_label_provenance(ds, label)})
            rename = dict(zip(ds.episode_names, names, strict=True))
            masks = {"train": ds.train_names, "valid": ds.valid_names, **_extra_masks(path)}
            for mask, members in masks.items():
                f.create_dataset(f"mask/{mask}", data=np.array([rename[n].encode() for n in members if n in rename],
                                                               dtype="S"))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if keys[0].name == "state" and len(keys) == 1 and spec.state_slices:
        report.notes.append("state slices do not cover the state exactly: exported as one obs key 'state'")
    return report


def _export_names(ds: Dataset) -> list[str]:
    """The source's demo names when an import recorded them (unique, demo_<i>), else the dataset's own."""
    names = [str(ds.episode_attrs(n).get("source_demo", "")) for n in ds.episode_names]
    if all(demo_index(n) is not None for n in names) and len(set(names)) == len(names):
        return names
    return ds.episode_names


def _write_demo(group: h5py.Group, ep: Episode, keys: list[StateKey], spec: EnvSpec, ds: Dataset) -> None:
    t = ep.length
    for k in keys:
        group.create_dataset(f"obs/{k.name}", data=ep.states[:, k.start:k.stop].reshape(t, *k.shape))
        group.create_dataset(f"next_obs/{k.name}", data=ep.next_states[:, k.start:k.stop].reshape(t, *k.shape))
    for cam, frames in ep.images.items():
        every = int(ep.image_every)
        per_step = frames if every == 1 else np.repeat(frames, every, axis=0)[:t]
        group.create_dataset(f"obs/{cam}", data=per_step, chunks=(1, *per_step.shape[1:]), compression="gzip")
        shifted = np.concatenate([per_step[1:], per_step[-1:]], axis=0)  # the frame after the last step is unknown
        group.create_dataset(f"next_obs/{cam}", data=shifted, chunks=(1, *per_step.shape[1:]), compression="gzip")
    group.create_dataset("actions", data=physical(ep.actions, spec))
    group.create_dataset("rewards", data=ep.rewards.astype(np.float32))
    group.create_dataset("dones", data=ep.terminals.astype(np.uint8))
    if ep.sim_states is not None:
        group.create_dataset("states", data=ep.sim_states)
    for lid, (values, prov) in ep.reward_labels.items():
        group.create_dataset(f"{LABEL_GROUP}/{lid}", data=values).attrs["provenance"] = provenance_json(prov)
    for key, value in ep.attrs.items():
        if key not in ("source_demo", "next_obs_from_shift"):
            group.attrs[key] = value
    group.attrs["success"] = np.bool_(ep.success)
    group.attrs["num_samples"] = np.int64(t)


def _label_provenance(ds: Dataset, label: str) -> dict[str, Any]:
    if not ds.episode_names:
        return {}
    ep = ds.load_episode(ds.episode_names[0])
    return dict(ep.reward_labels.get(label, (None, {}))[1])


def _extra_masks(path: str) -> dict[str, list[str]]:
    """Masks other than train/valid (robomimic's ``20_percent`` and such), as an import kept them."""
    with h5py.File(path, "r") as f:
        return {m: v for m, v in _read_masks(f).items() if m not in ("train", "valid")}
