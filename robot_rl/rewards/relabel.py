"""Relabel a dataset: write rewards from a source into ``reward_labels/<id>`` of every episode, and optionally make
them the active ``rewards``.

Sources: ``reward-model:RUN_DIR`` (a trained Bradley-Terry model, r(s_t, a_t)), ``clip:CHECKPOINT`` (CLIP
similarity of the frame after each step to the task sentence), ``code:FILE.py`` (reward code run in a separate
process on the state after each step and the action), ``success:RUN_DIR`` (a success classifier's sparse reward
1[P(success | observation after the step) >= threshold]).

Crash safety, in two phases:

1. *compute*: rewards of each episode are appended to a spool file ``<dataset>.relabel-<id>`` (checksummed
   records) as they are computed; a killed run resumes from it, recomputing only missing episodes (the spool is
   dropped if the source changed meanwhile). The dataset is only read.
2. *write*: all labels (and the activation) go into the dataset in one journaled commit (``data/journal.py``):
   a kill at any moment leaves the dataset as it was, readable with its old rewards; the rerun redoes it from the
   spool in seconds. The spool is removed after the commit.

Activation never loses the old active rewards: if they equal no stored label, they are first kept as
``reward_labels/original``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import h5py
import numpy as np

from robot_rl.data import GROUND_TRUTH, Dataset, DatasetError, Episode
from robot_rl.data.journal import JournaledFile
from robot_rl.data.layout import DATA, LABEL_GROUP, REWARDS, check_name, open_hdf5

ORIGINAL = "original"
"""Label id under which activation keeps old active rewards that no other label holds."""
ACTIVE_ATTR = "active_reward"
"""``/data`` attr: the label id whose values are the active ``rewards`` (absent: as collected)."""

Progress = Callable[[str, int, int], None]
"""``(phase, done, total)``; phase is ``"compute"`` or ``"write"``."""


class EpisodeRewarder(Protocol):
    default_id: str

    def identity(self) -> dict[str, Any]:
        """JSON-serializable description of the source (becomes the labels' provenance)."""
        ...

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        """float32 ``[T]`` rewards of one episode."""
        ...

    def close(self) -> None: ...


class ModelRewarder:
    """r(s_t, a_t) from a trained reward model (ensemble mean)."""

    default_id = "reward_model"

    def __init__(self, run_dir: str, device: str = "cpu") -> None:
        from robot_rl.rewards.model import RewardModel

        self.path = os.path.abspath(os.path.join(run_dir, "reward_model.pt") if os.path.isdir(run_dir) else run_dir)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{run_dir}: no reward_model.pt (train one with `robot-rl train-reward`)")
        self.model = RewardModel.load(self.path, device)
        self.device = device
        with open(self.path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        self.camera: str | None = None
        self._frames: Any = None
        config_file = os.path.join(os.path.dirname(self.path), "reward_config.yaml")
        if self.model.config.obs == "image" and os.path.isfile(config_file):
            import yaml

            with open(config_file, encoding="utf-8") as f:
                self.camera = (yaml.safe_load(f) or {}).get("camera")

    def identity(self) -> dict[str, Any]:
        return {"labeler": "reward_model", "source": f"reward-model:{os.path.dirname(self.path)}",
                "model": self.path, "sha256": self.sha256}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        import torch

        frames = None
        if self.model.config.obs == "image":  # frames of every step, stored or rendered from sim states
            if self._frames is None or self._frames.dataset is not ds:
                from robot_rl.rewards.frames import FrameSource

                size = self.model.config.image_size
                self._frames = FrameSource(ds, self.camera, (size, size))
            frames = self._frames.episode_frames(name, episode)
        with torch.no_grad():
            r = self.model.reward(torch.as_tensor(episode.states, device=self.device),
                                  torch.as_tensor(episode.actions, device=self.device), frames)
        return np.asarray(r.float().cpu().numpy(), np.float32)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()


class ClipRewarder:
    """CLIP similarity of the frame after each step (the last step reuses its own frame) to the task sentence."""

    default_id = "clip"

    def __init__(self, checkpoint: str, ds: Dataset, model: str = "ViT-B-32", baseline: str | None = None,
                 alpha: float = 0.5, camera: str | None = None, size: int = 224, device: str = "cpu") -> None:
        from robot_rl.rewards.clip import ClipReward
        from robot_rl.rewards.frames import FrameSource

        self.clip = ClipReward(checkpoint, model=model, goal=ds.task_text, baseline=baseline, alpha=alpha,
                               device=device)
        self.camera = FrameSource(ds, camera, (size, size)).camera  # checks the camera now, renders nothing
        self.size = size
        self._frames: Any = None

    def identity(self) -> dict[str, Any]:
        return {**self.clip.identity(), "labeler": "clip", "camera": self.camera, "size": [self.size, self.size]}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        from robot_rl.rewards.frames import FrameSource

        if self._frames is None or self._frames.dataset is not ds:
            self._frames = FrameSource(ds, self.camera, (self.size, self.size))
        per_frame = np.asarray(self.clip(self._frames.episode_frames(name, episode)), np.float32)
        return np.concatenate([per_frame[1:], per_frame[-1:]])

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()


class CodeRewarder:
    """Reward code on (state after the step, action), in a separate process (``code_reward.py``)."""

    default_id = "code"

    def __init__(self, path: str, ds: Dataset) -> None:
        from robot_rl.rewards.code_reward import CodeReward

        self.code = CodeReward(path, ds.spec)

    def identity(self) -> dict[str, Any]:
        return {**self.code.identity(), "source": f"code:{self.code.path}"}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        reward, _ = self.code(episode.next_states, episode.actions)
        return reward

    def close(self) -> None:
        self.code.close()


class SuccessRewarder:
    """A success classifier's sparse reward: 1.0 where P(success) of the observation after the step reaches the
    classifier's threshold, else 0.0 (what ``SuccessReward`` gives online). Image classifiers read the frame after
    each step, rendered from the next step's sim state; the last step reuses its own frame."""

    default_id = "success"

    def __init__(self, run_dir: str, device: str = "cpu") -> None:
        from robot_rl.rewards.success import MODEL_FILE, SuccessClassifier

        self.path = os.path.abspath(os.path.join(run_dir, MODEL_FILE) if os.path.isdir(run_dir) else run_dir)
        self.model = SuccessClassifier.load(self.path, device)
        with open(self.path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        self._frames: Any = None

    def identity(self) -> dict[str, Any]:
        m = self.model
        return {"labeler": "success", "source": f"success:{os.path.dirname(self.path)}", "model": self.path,
                "sha256": self.sha256, "threshold": m.threshold, "obs": m.config.obs, "camera": m.camera,
                "reward": "1 if P(success | observation after the step) >= threshold else 0"}

    def rewards(self, ds: Dataset, name: str, episode: Episode) -> np.ndarray:
        import torch

        m = self.model
        if m.state_dim != ds.spec.state_dim:
            raise ValueError(f"{ds.path}: the success classifier {self.path} takes states of {m.state_dim} "
                             f"features, this dataset has {ds.spec.state_dim}")
        obs: dict[str, Any] = {"state": torch.as_tensor(episode.next_states)}
        if m.config.uses_image:
            if self._frames is None or self._frames.dataset is not ds:
                from robot_rl.rewards.frames import FrameSource

                size = m.config.image_size
                self._frames = FrameSource(ds, m.camera, (size, size))
            frames = self._frames.episode_frames(name, episode)
            obs[f"image/{m.camera}"] = torch.as_tensor(np.concatenate([frames[1:], frames[-1:]]))
        p = m.probability(obs).cpu().numpy()
        return (p >= m.threshold).astype(np.float32)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()


SOURCE_KINDS = ("reward-model", "clip", "code", "success")


def make_rewarder(source: str, ds: Dataset, device: str = "cpu", **clip_options: Any) -> EpisodeRewarder:
    """``"reward-model:RUN_DIR"``, ``"clip:CHECKPOINT"``, ``"code:FILE.py"`` or ``"success:RUN_DIR"`` -> a
    rewarder."""
    kind, _, arg = source.partition(":")
    if not arg or kind not in SOURCE_KINDS:
        raise ValueError(f"reward source '{source}': expected reward-model:RUN_DIR, clip:CHECKPOINT, code:FILE.py or "
                         "success:RUN_DIR")
    if kind == "reward-model":
        return ModelRewarder(arg, device)
    if kind == "success":
        return SuccessRewarder(arg, device)
    if kind == "clip":
        return ClipRewarder(arg, ds, device=device, **clip_options)
    return CodeRewarder(arg, ds)


@dataclass
class RelabelResult:
    label_id: str
    episodes: int
    computed: int
    """Episodes computed in this run (the rest came from the spool of an interrupted run)."""
    activated: bool
    mean: float
    std: float


def relabel(path: str, rewarder: EpisodeRewarder, label_id: str | None = None, activate: bool = False,
            progress: Progress | None = None) -> RelabelResult:
    """Compute ``rewarder``'s rewards for every episode of ``path`` and store them as ``reward_labels/<label_id>``
    (default ``rewarder.default_id``), replacing an older label of that id; ``activate`` also makes them the
    active ``rewards``. Resumable and crash-safe (module docstring)."""
    label_id = label_id or rewarder.default_id
    check_name("label id", label_id)
    if label_id == GROUND_TRUTH:
        raise ValueError(f"label id '{GROUND_TRUTH}' is reserved for the simulator's reward")
    identity = rewarder.identity()
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    spool = Spool(f"{path}.relabel-{label_id}", digest)
    computed = 0
    with Dataset(path) as ds:
        names = ds.episode_names
        if not names:
            raise DatasetError(f"{path}: no episodes to relabel")
        done = spool.load()
        for i, name in enumerate(names):
            if name not in done:
                episode = ds.load_episode(name)
                values = np.asarray(rewarder.rewards(ds, name, episode), np.float32)
                if values.shape != (episode.length,):
                    raise ValueError(f"{path}: episode {name}: the source gave {list(values.shape)} rewards for "
                                     f"{episode.length} steps")
                bad = np.flatnonzero(~np.isfinite(values))
                if len(bad):
                    raise ValueError(f"{path}: episode {name}: the source gave a non-finite reward at step "
                                     f"{int(bad[0])} ({values[bad[0]]}); nothing was written")
                spool.append(name, values)
                done[name] = values
                computed += 1
            if progress is not None:
                progress("compute", i + 1, len(names))
    provenance = {**identity, "label_id": label_id, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write(path, label_id, {n: done[n] for n in names}, provenance, activate, progress)
    spool.remove()
    allv = np.concatenate([done[n] for n in names])
    return RelabelResult(label_id, len(names), computed, activate, float(allv.mean()), float(allv.std()))


def activate_label(path: str, label_id: str) -> None:
    """Make the stored ``reward_labels/<label_id>`` the active ``rewards`` (one atomic commit)."""
    with Dataset(path) as ds:
        if label_id not in ds.reward_label_ids():
            known = ", ".join(ds.reward_label_ids()) or "none"
            raise DatasetError(f"{path}: no reward label '{label_id}' (labels: {known})")
        values = {n: ds.load_episode(n).reward_labels[label_id][0] for n in ds.episode_names}
    _write(path, label_id, values, None, True, None)


def active_label(path: str) -> str | None:
    """The label id whose values are the active rewards, per ``/data`` attr ``active_reward`` (None: as collected)."""
    with open_hdf5(path, "r") as f:
        value = f[DATA].attrs.get(ACTIVE_ATTR)
    return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))


def _write(path: str, label_id: str, values: dict[str, np.ndarray], provenance: dict[str, Any] | None,
           activate: bool, progress: Progress | None) -> None:
    """One journaled commit: labels (if ``provenance``), then the activation."""
    io = JournaledFile(path)
    try:
        with open_hdf5(path, "r+", fileobj=io) as f:
            data = f[DATA]
            for i, (name, v) in enumerate(values.items()):
                group = data[name]
                if provenance is not None:
                    labels = group.require_group(LABEL_GROUP)
                    if label_id in labels:
                        del labels[label_id]
                    dset = labels.create_dataset(label_id, data=v.astype(np.float32))
                    dset.attrs["provenance"] = json.dumps(provenance)
                if activate:
                    _activate_episode(group, label_id, v)
                if progress is not None:
                    progress("write", i + 1, len(values))
            if activate:
                data.attrs[ACTIVE_ATTR] = label_id
            f.flush()
            io.commit()  # the commit point: before it, a kill leaves the file exactly as it was
    finally:
        io.close()


def _activate_episode(group: h5py.Group, label_id: str, values: np.ndarray) -> None:
    current = np.asarray(group[REWARDS][()], np.float32)
    labels = group.require_group(LABEL_GROUP)
    held = any(np.array_equal(current, np.asarray(labels[k][()]), equal_nan=True) for k in labels)
    if not held and np.isfinite(current).any():
        keep = labels.create_dataset(ORIGINAL if ORIGINAL not in labels else f"{ORIGINAL}_{int(time.time())}",
                                     data=current)
        keep.attrs["provenance"] = json.dumps({"labeler": ORIGINAL, "note": "active rewards before activating "
                                               f"'{label_id}'"})
    group[REWARDS][...] = values.astype(np.float32)


class Spool:
    """Append-only record of computed episode rewards: header (source digest), then per episode
    ``u32 name length, name, u32 steps, float32 values, u32 crc32``; a torn last record is ignored."""

    MAGIC = b"RRLS"

    def __init__(self, path: str, digest: str) -> None:
        self.path = path
        self.digest = digest.encode()

    def load(self) -> dict[str, np.ndarray]:
        """Episodes already computed by an interrupted run of the same source (empty if none, or another source)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raw = b""
        head = self.MAGIC + self.digest
        if not raw.startswith(head):
            with open(self.path, "wb") as f:
                f.write(head)
            return {}
        out: dict[str, np.ndarray] = {}
        at = len(head)
        while at + 4 <= len(raw):
            (n,) = struct.unpack_from("<I", raw, at)
            name_end = at + 4 + n
            if name_end + 4 > len(raw):
                break
            (t,) = struct.unpack_from("<I", raw, name_end)
            end = name_end + 4 + 4 * t
            if end + 4 > len(raw) or struct.unpack_from("<I", raw, end)[0] != zlib.crc32(raw[at:end]):
                break
            out[raw[at + 4:name_end].decode()] = np.frombuffer(raw[name_end + 4:end], np.float32).copy()
            at = end + 4
        with open(self.path, "r+b") as f:
            f.truncate(at)  # drop a torn tail so appends follow whole records
        return out

    def append(self, name: str, values: np.ndarray) -> None:
        key = name.encode()
        body = struct.pack("<I", len(key)) + key + struct.pack("<I", len(values)) + values.astype("<f4").tobytes()
        with open(self.path, "ab") as f:
            f.write(body + struct.pack("<I", zlib.crc32(body)))

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
