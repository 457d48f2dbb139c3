"""``robot-rl relabel robomimic:FILE`` / ``minari:DATASET_ID``: the foreign file keeps its layout and gains
``reward_labels/<id>`` (``--replace-rewards``: also its ``rewards``, the original kept); its own loader still opens
it; a kill -9 at any moment leaves the file byte for byte as it was and the rerun resumes; bad input is one line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.data.interop import InteropError, import_source
from robot_rl.data.interop.inplace import fingerprint, write_labels
from tests.data.robomimic_fixture import LOWDIM, write_robomimic

DISTANCE = """
import torch

def compute_reward(obs, action):
    dist = torch.linalg.norm(obs["state"], dim=-1)
    return -dist, {"distance": dist}
"""


def _code(tmp_path: Path, text: str = DISTANCE, name: str = "reward.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _next_states(group: h5py.Group) -> np.ndarray:
    """robomimic's next_obs keys end to end, in the order the import lays them out (name order)."""
    return np.concatenate([group[f"next_obs/{k}"][()].reshape(len(group["actions"]), -1) for k in sorted(LOWDIM)],
                          axis=1)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_robomimic_gains_a_label_beside_its_own_rewards(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5")
    with h5py.File(src, "r") as f:
        before = {n: (f[f"data/{n}/rewards"][()], _next_states(f[f"data/{n}"])) for n in f["data"]}
        attrs = dict(f["data"].attrs)
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{_code(tmp_path)}", "--id", "dist"]) == 0
    with h5py.File(src, "r") as f:
        assert dict(f["data"].attrs) == attrs  # rewards untouched: no reward_provenance
        for name, (rewards, nxt) in before.items():
            group = f[f"data/{name}"]
            np.testing.assert_array_equal(group["rewards"][()], rewards)
            label = group["reward_labels/dist"]
            np.testing.assert_allclose(label[()], -np.linalg.norm(nxt, axis=1), rtol=1e-5)
            prov = json.loads(label.attrs["provenance"])
            assert prov["labeler"] == "code" and prov["label_id"] == "dist" and len(prov["sha256"]) == 64
            assert list(group["reward_labels"]) == ["dist"]
            assert sorted(group) == ["actions", "dones", "next_obs", "obs", "reward_labels", "rewards", "states"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift.hdf5", "reward.py"]  # no stage, spool, lock
    out = tmp_path / "lift.h5"
    import_source(f"robomimic:{src}", str(out))  # the import reads the label back
    with Dataset(out) as ds:
        assert ds.reward_label_ids() == ["dist", "ground_truth"]


def test_robomimic_replace_rewards_keeps_the_original_once(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5", images=False)
    with h5py.File(src, "r") as f:
        before = {n: (f[f"data/{n}/rewards"][()], _next_states(f[f"data/{n}"])) for n in f["data"]}
    code = _code(tmp_path)
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{code}", "--replace-rewards"]) == 0
    neg = _code(tmp_path, DISTANCE.replace("return -dist", "return dist"), "pos.py")
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{neg}", "--id", "pos", "--replace-rewards"]) == 0
    with h5py.File(src, "r") as f:
        assert json.loads(f["data"].attrs["reward_provenance"])["label"] == "pos"
        for name, (rewards, nxt) in before.items():
            group = f[f"data/{name}"]
            # what robomimic's SequenceDataset loads for dataset_keys "rewards": the new label, same dtype and shape
            assert group["rewards"].dtype == rewards.dtype and group["rewards"].shape == rewards.shape
            np.testing.assert_allclose(group["rewards"][()], np.linalg.norm(nxt, axis=1), rtol=1e-5)
            np.testing.assert_array_equal(group["reward_labels/ground_truth"][()], rewards.astype(np.float32))
            np.testing.assert_allclose(group["reward_labels/code"][()], -np.linalg.norm(nxt, axis=1), rtol=1e-5)
    pos_half = _code(tmp_path, DISTANCE.replace("return -dist", "return dist / 2"), "pos_half.py")
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{pos_half}", "--id", "pos"]) == 0
    with h5py.File(src, "r") as f:  # rewards that hold label 'pos' follow it, with or without --replace-rewards
        group = f["data/demo_1"]
        np.testing.assert_allclose(group["rewards"][()], np.linalg.norm(_next_states(group), axis=1) / 2, rtol=1e-5)
        np.testing.assert_allclose(group["reward_labels/pos"][()], group["rewards"][()], rtol=1e-6)
    out = tmp_path / "lift.h5"
    import_source(f"robomimic:{src}", str(out))
    with Dataset(out) as ds:
        assert ds.reward_label_ids() == ["code", "ground_truth", "pos"]
        ep = ds.load_episode(ds.episode_names[0])
        np.testing.assert_array_equal(ep.reward_labels["ground_truth"][0], before["demo_1"][0].astype(np.float32))
        np.testing.assert_allclose(ep.rewards, ep.reward_labels["pos"][0])


_CHILD = """
import os, sys, time
import robot_rl.data.interop.inplace as inplace
from robot_rl.cli.main import main

real = os.replace
def replace(a, b):
    if str(a).endswith(inplace.NEW_SUFFIX) and os.environ.get("HOLD_REPLACE"):
        print("replace", flush=True)
        time.sleep(30)  # the new file is complete, the old one not yet replaced: the test kills the process here
    real(a, b)
os.replace = replace
sys.exit(main(["relabel", "robomimic:" + sys.argv[1], "--source", "code:" + sys.argv[2], "--replace-rewards"]))
"""


def _run_until(src: Path, code: Path, line: str, hold: bool) -> None:
    env = {**os.environ, "HOLD_REPLACE": "1" if hold else "", "MUJOCO_GL": "egl"}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    got = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if not got or got.startswith(line):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert got.startswith(line), got


def test_kill_9_leaves_the_file_as_it_was_and_the_rerun_resumes(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5", demos=4, images=False)
    sha = _sha(src)
    slow = _code(tmp_path, "import time\n" + DISTANCE.replace("    dist =", "    time.sleep(0.3)\n    dist ="))
    spool = Path(f"{src}.relabel-code")
    _run_until(src, slow, "replace", hold=True)  # everything written into the copy, the file not yet replaced
    assert _sha(src) == sha and spool.exists()
    with h5py.File(src, "r") as f:
        assert "reward_labels" not in f["data/demo_1"]
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{slow}", "--replace-rewards"]) == 0
    assert not spool.exists() and not Path(f"{src}.relabel-new").exists()
    with h5py.File(src, "r") as f:
        group = f["data/demo_1"]
        np.testing.assert_allclose(group["rewards"][()], -np.linalg.norm(_next_states(group), axis=1), rtol=1e-5)


def test_a_killed_compute_resumes_from_the_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5", demos=4, images=False)
    sha = _sha(src)
    flaky = _code(tmp_path, "import os, time\n" + DISTANCE.replace(
        "    dist =", "    time.sleep(0.3)\n    dist ="))
    child = _CHILD.replace('"--replace-rewards"]', '"--replace-rewards", "--id", "d"]')
    proc = subprocess.Popen([sys.executable, "-c", child, str(src), str(flaky)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
    spool = Path(f"{src}.relabel-d")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not spool.exists() or spool.stat().st_size < 200):
        time.sleep(0.05)  # at least one episode's record in the spool
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _sha(src) == sha and spool.stat().st_size >= 200
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{flaky}", "--id", "d"]) == 0
    assert "2 from an interrupted run" in " ".join(capsys.readouterr().err.split())
    assert not spool.exists()


def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _code(tmp_path)
    assert main(["relabel", f"lerobot:{tmp_path}", "--source", f"code:{code}"]) == 2
    line = _one_line(capsys)
    assert "through import and export" in line and "robot-rl import" in line
    plain = tmp_path / "plain.hdf5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    sha = _sha(plain)
    assert main(["relabel", f"robomimic:{plain}", "--source", f"code:{code}"]) == 2
    assert "not a robomimic HDF5 file" in _one_line(capsys) and _sha(plain) == sha
    assert main(["relabel", f"robomimic:{tmp_path / 'none.hdf5'}", "--source", f"code:{code}"]) == 2
    assert "no such file" in _one_line(capsys)
    src = write_robomimic(tmp_path / "lift.hdf5", images=False)
    sha = _sha(src)
    broken = _code(tmp_path, "def compute_reward(obs, action):\n    raise RuntimeError('boom')\n", "broken.py")
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{broken}"]) == 2
    _one_line(capsys)
    assert main(["relabel", f"robomimic:{src}", "--source", f"code:{code}", "--activate-label", "x"]) == 2
    assert "--activate-label" in _one_line(capsys)
    assert _sha(src) == sha
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.py", "lift.hdf5", "plain.hdf5", "reward.py"]
    assert main(["relabel", str(src), "--source", f"code:{code}", "--replace-rewards"]) == 2
    assert "--replace-rewards" in _one_line(capsys)
    assert main(["relabel", str(src), "--source", f"code:{code}"]) == 2  # a robomimic file named without its scheme
    assert f"looks like a robomimic file: robot-rl import robomimic:{src}" in _one_line(capsys)


def test_a_file_changed_meanwhile_is_refused(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5", images=False)
    expect = fingerprint(str(src))
    with h5py.File(src, "a") as f:
        f["data"].attrs["touched"] = 1
    sha = _sha(src)
    with pytest.raises(InteropError, match="changed by someone else"):
        write_labels(str(src), {"data/demo_1": np.zeros(12)}, "x", {}, replace=False, provenance_group="data",
                     source="robomimic:x", expect=expect)
    assert _sha(src) == sha and not Path(f"{src}.relabel-new").exists()


# ---- Minari -----------------------------------------------------------------------------------------------------

minari = pytest.importorskip("minari")


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    env = minari.DataCollector(gym.make("InvertedPendulum-v5", max_episode_steps=15))
    for ep in range(3):
        env.reset(seed=ep)
        while not any(env.step(env.action_space.sample())[2:4]):
            pass
    env.create_dataset("mujoco/invertedpendulum/random-v0", algorithm_name="random", author="test",
                       author_email="t@example.com", code_permalink="https://example.com", description="random")
    env.close()
    yield root


def test_minari_replace_rewards_is_what_load_dataset_returns(minari_root: Path, tmp_path: Path) -> None:
    dataset_id = "mujoco/invertedpendulum/random-v0"
    before = list(minari.load_dataset(dataset_id).iterate_episodes())
    code = _code(tmp_path)
    assert main(["relabel", f"minari:{dataset_id}", "--source", f"code:{code}"]) == 0
    for ep, old in zip(minari.load_dataset(dataset_id).iterate_episodes(), before, strict=True):
        np.testing.assert_array_equal(ep.rewards, old.rewards)  # a label only: Minari's rewards as they were
    assert main(["relabel", f"minari:{dataset_id}", "--source", f"code:{code}", "--replace-rewards"]) == 0
    back = minari.load_dataset(dataset_id)
    assert back.total_episodes == 3 and back.total_steps == sum(len(e.actions) for e in before)
    for ep, old in zip(back.iterate_episodes(), before, strict=True):
        assert ep.rewards.dtype == (old.rewards.dtype if old.rewards.dtype.kind == "f" else np.float64)
        np.testing.assert_allclose(ep.rewards, -np.linalg.norm(old.observations[1:], axis=1), rtol=1e-5)
        np.testing.assert_array_equal(ep.observations, old.observations)
        np.testing.assert_array_equal(ep.actions, old.actions)
        np.testing.assert_array_equal(ep.terminations, old.terminations)
    main_file = minari_root / dataset_id / "data" / "main_data.hdf5"
    with h5py.File(main_file, "r") as f:
        assert sorted(f) == ["episode_0", "episode_1", "episode_2"]  # Minari counts the root's keys as episodes
        assert json.loads(f.attrs["reward_provenance"])["label"] == "code"
        np.testing.assert_array_equal(f["episode_0/reward_labels/ground_truth"][()],
                                      before[0].rewards.astype(np.float32))
    assert sorted(p.name for p in main_file.parent.iterdir()) == ["main_data.hdf5", "metadata.json"]
    out = tmp_path / "pend.h5"
    import_source(f"minari:{dataset_id}", str(out))
    with Dataset(out) as ds:
        assert ds.reward_label_ids() == ["code", "ground_truth"]
        ep = ds.load_episode(ds.episode_names[0])
        np.testing.assert_array_equal(ep.reward_labels["ground_truth"][0], before[0].rewards.astype(np.float32))
        np.testing.assert_allclose(ep.rewards, ep.reward_labels["code"][0], rtol=1e-6)


def test_minari_unknown_id_is_one_line(minari_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["relabel", "minari:mujoco/hopper/expert-v0", "--source", f"code:{_code(tmp_path)}"]) == 2
    assert "no such dataset" in _one_line(capsys)


def test_minari_arrow_storage_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gym.make("InvertedPendulum-v5", max_episode_steps=5), data_format="arrow")
    env.reset(seed=0)
    while not any(env.step(env.action_space.sample())[2:4]):
        pass
    env.create_dataset("mujoco/invertedpendulum/arrow-v0", algorithm_name="random", author="test",
                       author_email="t@example.com", code_permalink="https://example.com", description="arrow")
    env.close()
    folder = tmp_path / "minari" / "mujoco" / "invertedpendulum" / "arrow-v0"
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert main(["relabel", "minari:mujoco/invertedpendulum/arrow-v0", "--source", f"code:{_code(tmp_path)}"]) == 2
    assert "stored as arrow" in _one_line(capsys)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
