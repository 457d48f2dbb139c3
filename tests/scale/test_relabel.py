"""``relabel --ray-address``: on a two-node loopback cluster the labels equal a single-process relabel's, also
when a worker is SIGKILLed mid-shard (Ray restarts it, the shard resumes from its spool) and when the driver is
SIGKILLed (the dataset is untouched; the rerun merges the shard spools and finishes)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.rewards.relabel import make_rewarder
from robot_rl.scale.relabel import SourceSpec, relabel_on_ray
from tests.rewards.conftest import write_reach

pytestmark = pytest.mark.slow

SLOW_DISTANCE = """
import time
import torch

def compute_reward(obs, action):
    time.sleep(0.2)  # slow enough that a kill lands mid-run
    dist = torch.linalg.norm(obs["state"], dim=-1)
    return -dist, {"distance": dist}
"""
HEADER = 4 + 64  # spool magic + source digest


def _labels(path: Path, label: str = "code") -> dict[str, np.ndarray]:
    with Dataset(path) as ds:
        return {n: ds.load_episode(n).reward_labels[label][0] for n in ds.episode_names}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """(the unlabeled dataset, the reward code, the labels of a single-process relabel)."""
    root = tmp_path_factory.mktemp("relabel")
    data = write_reach(root / "data.h5", episodes=12, length=20)
    code = root / "reward.py"
    code.write_text(SLOW_DISTANCE)
    single = root / "single.h5"
    shutil.copy(data, single)
    assert main(["relabel", str(single), "--source", f"code:{code}"]) == 0
    return data, code, _labels(single)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # merged and removed meanwhile
        return 0


def _kill_when(pattern: str, pid_of: Callable[[], int], killed: list[int]) -> threading.Thread:
    """SIGKILL ``pid_of()`` once a spool matching ``pattern`` holds a record (a record is ~100 bytes here)."""
    def run() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if any(_size(p) > HEADER + 50 for p in glob.glob(pattern)):
                pid = pid_of()
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_killed_worker_is_restarted_and_the_labels_equal_a_single_process_run(reference, ray_cluster, tmp_path):
    data, code, want = reference
    path = tmp_path / "d.h5"
    shutil.copy(data, path)
    killed: list[int] = []
    threads: list[threading.Thread] = []

    def on_workers(pids: list[int]) -> None:
        assert len(pids) == 2  # one actor per node
        threads.append(_kill_when(f"{path}.relabel-code.shard-*", lambda: pids[0], killed))

    with Dataset(path) as ds:
        rewarder = make_rewarder(f"code:{code}", ds)
    try:
        result = relabel_on_ray(str(path), rewarder, SourceSpec(f"code:{code}"), ray_cluster.address,
                                shard_episodes=2, on_workers=on_workers)
    finally:
        rewarder.close()
    threads[0].join(timeout=1)
    assert killed, "the worker was not killed while the relabel ran"
    assert result.episodes == result.computed == 12
    got = _labels(path)
    assert list(got) == list(want)  # every episode once, none lost or added
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert not glob.glob(f"{path}.relabel-*")  # spools gone after the commit


def test_a_killed_driver_leaves_the_dataset_as_it_was_and_the_rerun_finishes(reference, ray_cluster, tmp_path,
                                                                             capsys):
    data, code, want = reference
    path = tmp_path / "d.h5"
    shutil.copy(data, path)
    argv = [sys.executable, "-m", "robot_rl.cli.main", "relabel", str(path), "--source", f"code:{code}",
            "--ray-address", ray_cluster.address]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed: list[int] = []
    _kill_when(f"{path}.relabel-code", lambda: driver.pid, killed).join(timeout=300)
    driver.wait(timeout=60)
    assert killed == [driver.pid] and driver.returncode == -signal.SIGKILL
    with Dataset(path) as ds:  # untouched: readable, no label yet
        assert "code" not in ds.reward_label_ids()
    capsys.readouterr()
    assert main(["relabel", str(path), "--source", f"code:{code}", "--ray-address", ray_cluster.address]) == 0
    assert "from an interrupted run" in " ".join(capsys.readouterr().err.split())
    got = _labels(path)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert not glob.glob(f"{path}.relabel-*")


def test_ray_flags_are_checked(tmp_path, capsys):
    data = write_reach(tmp_path / "d.h5", episodes=2, length=5)
    assert main(["relabel", str(data), "--source", "code:x.py", "--ray-workers", "2"]) == 2
    assert "--ray-workers needs --ray-address" in capsys.readouterr().err
