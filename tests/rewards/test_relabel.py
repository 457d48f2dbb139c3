from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data import Dataset
from robot_rl.rewards.code_reward import CodeReward, RewardCodeError
from robot_rl.rewards.relabel import ORIGINAL, activate_label, active_label, make_rewarder, relabel
from tests.rewards.conftest import SPEC

DISTANCE = """
import torch

def compute_reward(obs, action):
    dist = torch.linalg.norm(obs["state"], dim=-1)
    return -dist, {"distance": dist}
"""


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data.h5"
    shutil.copy(src, dst)
    return dst


def _code(tmp_path: Path, text: str, name: str = "reward.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_code_source_writes_labels_with_provenance_and_leaves_rewards(reach_dataset: Path, tmp_path: Path) -> None:
    data = _copy(reach_dataset, tmp_path)
    with Dataset(data) as ds:
        before = {n: ds.load_episode(n) for n in ds.episode_names}
        rewarder = make_rewarder(f"code:{_code(tmp_path, DISTANCE)}", ds)
    result = relabel(str(data), rewarder)
    rewarder.close()
    assert result.label_id == "code" and result.episodes == len(before) and result.computed == len(before)
    with Dataset(data) as ds:
        assert ds.reward_label_ids() == ["code", "ground_truth"]
        for name, old in before.items():
            ep = ds.load_episode(name)
            values, provenance = ep.reward_labels["code"]
            np.testing.assert_allclose(values, -np.linalg.norm(old.next_states, axis=1), rtol=1e-6)
            np.testing.assert_array_equal(ep.rewards, old.rewards)  # not activated
            assert provenance["labeler"] == "code" and len(provenance["sha256"]) == 64
    assert active_label(str(data)) is None
    assert not Path(f"{data}.relabel-code").exists()  # spool removed after the commit


def test_activation_keeps_old_rewards_that_no_label_holds(reach_dataset: Path, tmp_path: Path) -> None:
    data = _copy(reach_dataset, tmp_path)
    with Dataset(data) as ds:
        truth = {n: ds.load_episode(n).rewards for n in ds.episode_names}
    rewarder = CodeRewarderFor(data, _code(tmp_path, DISTANCE))
    relabel(str(data), rewarder, label_id="dist", activate=True)
    rewarder.close()
    with Dataset(data) as ds:
        for name in ds.episode_names:
            ep = ds.load_episode(name)
            np.testing.assert_array_equal(ep.rewards, ep.reward_labels["dist"][0])
            np.testing.assert_array_equal(ep.reward_labels["ground_truth"][0], truth[name])
            assert ORIGINAL not in ep.reward_labels  # the old active rewards were ground truth: already kept
    assert active_label(str(data)) == "dist"
    activate_label(str(data), "ground_truth")
    with Dataset(data) as ds:
        name = ds.episode_names[0]
        np.testing.assert_array_equal(ds.load_episode(name).rewards, truth[name])
    assert active_label(str(data)) == "ground_truth"


def CodeRewarderFor(data: Path, code: Path):  # noqa: N802 - reads like a constructor
    with Dataset(data) as ds:
        return make_rewarder(f"code:{code}", ds)


def test_a_non_finite_reward_names_the_episode_and_writes_nothing(reach_dataset: Path, tmp_path: Path) -> None:
    data = _copy(reach_dataset, tmp_path)
    nan_code = _code(tmp_path, DISTANCE.replace("return -dist", "return torch.log(dist - 0.3)"))
    rewarder = CodeRewarderFor(data, nan_code)
    with pytest.raises(ValueError, match=r"episode demo_\d+: the source gave a non-finite reward at step"):
        relabel(str(data), rewarder)
    rewarder.close()
    with Dataset(data) as ds:
        assert ds.reward_label_ids() == ["ground_truth"]


def test_bad_reward_code_gives_one_line_errors(tmp_path: Path) -> None:
    states, actions = np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)
    cases = {
        "def compute_reward(obs, action:\n": "failed to load: SyntaxError",
        "x = 1\n": "defines no function compute_reward",
        "def compute_reward(obs, action):\n    return obs['nope'], {}\n": "compute_reward raised KeyError at line 2",
        "def compute_reward(obs, action):\n    return obs['state'], {}\n": "reward of shape [4, 2], expected [4]",
        "import time\ndef compute_reward(obs, action):\n    time.sleep(30)\n": "did not return within 1 s",
        "import os\ndef compute_reward(obs, action):\n    os._exit(3)\n": "the reward process died",
    }
    for i, (text, message) in enumerate(cases.items()):
        with CodeReward(str(_code(tmp_path, text, f"r{i}.py")), SPEC, timeout=1.0) as code:
            with pytest.raises(RewardCodeError, match=re.escape(message)) as e:
                code(states, actions)
            assert "\n" not in str(e.value)


def test_reward_code_sees_no_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    spy = "import os, torch\ndef compute_reward(obs, action):\n" \
          "    n = len(action)\n    return torch.full((n,), float('OPENAI_API_KEY' in os.environ)), {}\n"
    with CodeReward(str(_code(tmp_path, spy)), SPEC) as code:
        reward, _ = code(np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32))
    assert reward.tolist() == [0.0, 0.0, 0.0]


_CHILD = """
import sys, time
from robot_rl.data import Dataset
from robot_rl.rewards.relabel import make_rewarder, relabel

def progress(phase, done, total):
    print(phase, done, flush=True)
    if phase == "write" and done == total:
        time.sleep(30)  # everything written, nothing committed: the test kills the process here

with Dataset(sys.argv[1]) as ds:
    rewarder = make_rewarder("code:" + sys.argv[2], ds)
relabel(sys.argv[1], rewarder, activate=True, progress=progress)
"""


def _run_until(data: Path, code: Path, line: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(data), str(code)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if not got or got.startswith(line):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert got.startswith(line), got


@pytest.mark.filterwarnings("ignore:.*a writer was killed while committing")
def test_kill_9_leaves_old_rewards_intact_and_the_rerun_resumes(reach_dataset: Path, tmp_path: Path) -> None:
    data = _copy(reach_dataset, tmp_path)
    with Dataset(data) as ds:
        names = ds.episode_names
        old = {n: ds.load_episode(n).rewards for n in names}
    slow = _code(tmp_path, "import time\n" + DISTANCE.replace("    dist =", "    time.sleep(0.2)\n    dist ="))

    def intact() -> None:
        with Dataset(data) as ds:
            assert ds.reward_label_ids() == ["ground_truth"]
            for n in names:
                np.testing.assert_array_equal(ds.load_episode(n).rewards, old[n])

    _run_until(data, slow, "compute 5")  # killed while computing
    intact()
    _run_until(data, slow, f"write {len(names)}")  # killed after writing everything, before the commit
    intact()
    with Dataset(data) as ds:
        rewarder = make_rewarder(f"code:{slow}", ds)
    result = relabel(str(data), rewarder, activate=True)
    rewarder.close()
    assert result.computed == 0  # everything came from the spool of the killed runs
    with Dataset(data) as ds:
        ep = ds.load_episode(names[0])
        np.testing.assert_allclose(ep.rewards, -np.linalg.norm(ep.next_states, axis=1), rtol=1e-6)


class _FailsAt:
    """A source that gives -step rewards and raises at episode ``fail`` (or ``interrupt``: KeyboardInterrupt)."""

    default_id = "flaky"

    def __init__(self, fail: int, interrupt: bool = False) -> None:
        self.fail, self.interrupt, self.calls = fail, interrupt, 0

    def identity(self) -> dict[str, object]:
        return {"labeler": "flaky"}

    def rewards(self, ds: Dataset, name: str, episode: object) -> np.ndarray:
        self.calls += 1
        if self.calls > self.fail:
            raise KeyboardInterrupt if self.interrupt else RuntimeError("the source broke")
        return -np.arange(ds.episode_length(name), dtype=np.float32)

    def close(self) -> None:
        pass


def test_a_failed_relabel_leaves_no_spool_but_an_interrupted_one_keeps_it(reach_dataset: Path, tmp_path: Path) -> None:
    data = _copy(reach_dataset, tmp_path)
    spool = Path(f"{data}.relabel-flaky")
    with pytest.raises(RuntimeError, match="the source broke"):
        relabel(str(data), _FailsAt(2))
    assert not spool.exists()  # two episodes were spooled, then removed with the failure
    with pytest.raises(KeyboardInterrupt):
        relabel(str(data), _FailsAt(2, interrupt=True))
    assert spool.stat().st_size > 0  # Ctrl-C: kept for the rerun
    with Dataset(data) as ds:
        episodes = len(ds.episode_names)
    assert relabel(str(data), _FailsAt(10**6)).computed == episodes - 2
    assert not spool.exists()
