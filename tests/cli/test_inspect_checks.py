"""``robot-rl inspect`` on datasets a new user meets: NaN rewards warned about, no success signal shown as n/a,
an episode deleted by hand while still listed in /mask named in one line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset, DatasetError, DatasetWriter, Episode, rewrite_masks
from tests.rewards.conftest import SPEC, write_reach
from tests.rl.conftest import write_bandit


def test_nan_rewards_in_a_labeled_dataset_are_warned_about(tmp_path: Path, capsys) -> None:
    data = write_bandit(tmp_path / "nan.h5", episodes=8, nan_episode=5)
    assert main(["inspect", str(data), "--no-plot"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "warning: 1 of 8 episodes have NaN or inf rewards (demo_5)" in out and "relabel" in out
    clean = write_bandit(tmp_path / "clean.h5", episodes=8)
    assert main(["inspect", str(clean), "--no-plot"]) == 0
    assert "warning:" not in capsys.readouterr().out


def test_unlabeled_dataset_is_not_warned_and_success_without_signal_is_na(tmp_path: Path, capsys) -> None:
    data = tmp_path / "unlabeled.h5"
    with DatasetWriter(data, SPEC, source="rosbag:x") as w:  # as import-bag writes it: rewards NaN, no successes
        for _ in range(3):
            s = np.zeros((6, 2), np.float32)
            w.add_episode(Episode(states=s[:-1], actions=np.zeros((5, 2), np.float32),
                                  rewards=np.full(5, np.nan, np.float32), next_states=s[1:],
                                  terminals=np.zeros(5, bool), dones=np.eye(5, dtype=bool)[-1]))
    assert main(["inspect", str(data), "--png", str(tmp_path / "u.png")]) == 0
    out = capsys.readouterr().out
    assert "unlabeled" in out and "warning:" not in out, out
    assert "success: n/a (no episode stores per-step successes" in out and "0%" not in out
    reach = write_reach(tmp_path / "reach.h5", episodes=4)  # rewards, but no success signal either
    assert main(["inspect", str(reach), "--no-plot"]) == 0
    assert "success: n/a" in capsys.readouterr().out


def test_episode_deleted_but_listed_in_the_mask_is_named(tmp_path: Path, capsys) -> None:
    data = write_reach(tmp_path / "reach.h5", episodes=6)
    with h5py.File(data, "r+") as f:
        del f["data/demo_3"]
    with pytest.raises(DatasetError, match=r"/mask/\w+ lists episode\(s\) demo_3 that /data no longer holds") as e:
        Dataset(data)
    assert "\n" not in str(e.value) and "rewrite_masks" in str(e.value)
    assert main(["inspect", str(data), "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "demo_3" in err and str(data) in err
    assert rewrite_masks(data) == ["demo_0", "demo_1", "demo_2", "demo_4", "demo_5"]
    with Dataset(data) as ds:
        assert sorted(ds.train_names + ds.valid_names) == ds.episode_names and ds.num_episodes == 5
