"""A robomimic HDF5 file written with h5py in robomimic's documented layout ("Dataset Structure" in robomimic's
docs, as its ``dataset_states_to_obs.py`` writes it): ``data`` attrs ``total`` and ``env_args`` (JSON),
``data/demo_<i>`` attrs ``num_samples`` and ``model_file``, ``obs/<key>``, ``next_obs/<key>``, ``actions``,
``rewards``, ``dones``, ``states``, and ``mask/<name>`` as bytes. Demos start at ``demo_1``, as in robomimic's
own ``ph`` datasets; masks include ``20_percent`` beside ``train``/``valid``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

LOWDIM = {"object": 10, "robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2}
IMAGE = "agentview_image"
ENV_ARGS = {"env_name": "Lift", "type": 1,
            "env_kwargs": {"has_renderer": False, "robots": ["Panda"], "controller_configs": {"type": "OSC_POSE"},
                           "control_freq": 20, "reward_shaping": False}}


def write_robomimic(path: Path, demos: int = 3, *, next_obs: bool = True, action_scale: float = 1.0,
                    images: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    names = [f"demo_{i + 1}" for i in range(demos)]
    total = 0
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i, name in enumerate(names):
            t = 12 + 3 * i
            total += t
            g = data.create_group(name)
            g.attrs["num_samples"] = t
            g.attrs["model_file"] = "<mujoco model=\"base\"><worldbody/></mujoco>"
            for key, dim in LOWDIM.items():
                seq = rng.normal(size=(t + 1, dim))
                g.create_dataset(f"obs/{key}", data=seq[:-1])  # robomimic stores float64 obs
                if next_obs:
                    g.create_dataset(f"next_obs/{key}", data=seq[1:])
            if images:
                frames = rng.integers(0, 255, size=(t + 1, 8, 8, 3), dtype=np.uint8)
                g.create_dataset(f"obs/{IMAGE}", data=frames[:-1])
                if next_obs:
                    g.create_dataset(f"next_obs/{IMAGE}", data=frames[1:])
            g.create_dataset("actions", data=rng.uniform(-1, 1, size=(t, 7)) * action_scale)
            rewards = np.zeros(t)
            rewards[-1] = 1.0
            dones = np.zeros(t, dtype=np.int64)
            dones[-1] = 1
            g.create_dataset("rewards", data=rewards)
            g.create_dataset("dones", data=dones)
            g.create_dataset("states", data=rng.normal(size=(t, 32)))
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(ENV_ARGS)
        f.create_dataset("mask/train", data=np.array([n.encode() for n in names[:-1]]))
        f.create_dataset("mask/valid", data=np.array([names[-1].encode()]))
        f.create_dataset("mask/20_percent", data=np.array([names[0].encode()]))
    return path
