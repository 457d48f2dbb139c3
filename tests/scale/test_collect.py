"""``collect --ray-address``: env slots split over the two nodes of a loopback Ray cluster give the same dataset,
episode for episode and in the same order, as a single-process collect with the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.scale.collect import split_slots

pytestmark = pytest.mark.slow


def test_split_slots_is_contiguous_and_even() -> None:
    assert split_slots(5, 2) == [(0, 3), (3, 2)]
    assert split_slots(2, 4) == [(0, 1), (1, 1)]
    assert split_slots(3, 1) == [(0, 3)]


def test_collect_on_ray_equals_single_process(tmp_path, ray_cluster) -> None:
    args = ["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "5", "--num-envs", "3",
            "--episode-length", "25", "--seed", "3", "--preset", "suboptimal"]
    assert main([*args, "--out", str(tmp_path / "one.h5")]) == 0
    assert main([*args, "--out", str(tmp_path / "ray.h5"), "--ray-address", ray_cluster.address]) == 0
    with Dataset(tmp_path / "one.h5") as one, Dataset(tmp_path / "ray.h5") as ray:
        assert one.episode_names == ray.episode_names and len(one.episode_names) == 5
        seeds = []
        for name in one.episode_names:
            a, b = one.load_episode(name), ray.load_episode(name)
            for key in ("states", "actions", "rewards", "next_states", "dones", "sim_states"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=f"{name} {key}")
            assert a.seed == b.seed and a.attrs["episode_in_env"] == b.attrs["episode_in_env"]
            assert a.attrs["behaviour"] == b.attrs["behaviour"]
            seeds.append((a.seed, a.attrs["episode_in_env"]))
        assert seeds == [(3, 0), (4, 0), (5, 0), (3, 1), (4, 1)]  # slot 2 runs on the other node than slots 0-1


def test_a_killed_worker_replays_its_slots_and_nothing_is_lost_or_doubled(tmp_path, ray_cluster) -> None:
    import os
    import signal

    from robot_rl.data import DatasetWriter
    from robot_rl.scale.collect import CollectJob, RayCollector

    args = ["collect", "--task", "metaworld/drawer-close-v3", "--episodes", "6", "--num-envs", "2",
            "--episode-length", "20", "--seed", "7", "--preset", "random"]
    assert main([*args, "--out", str(tmp_path / "one.h5")]) == 0
    collector = RayCollector(ray_cluster.address, CollectJob("metaworld/drawer-close-v3", "random", 7, None, 20), 2)
    killed: list[int] = []

    def kill_once(name: str, ep) -> None:  # after the first round: the next one meets a dead worker
        if not killed:
            killed.append(collector.pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    try:
        with DatasetWriter(tmp_path / "ray.h5", collector.spec, source="test") as w:
            collector.collect(w, 6, on_episode=kill_once)
        assert collector.pids()[0] != killed[0]  # restarted
    finally:
        collector.close()
    with Dataset(tmp_path / "one.h5") as one, Dataset(tmp_path / "ray.h5") as ray:
        assert ray.episode_names == one.episode_names
        for name in one.episode_names:
            np.testing.assert_array_equal(one.load_episode(name).states, ray.load_episode(name).states)
            assert one.load_episode(name).seed == ray.load_episode(name).seed
