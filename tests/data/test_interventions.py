"""``interventions``: the optional per-step teleop flag (``robot_rl.data.layout.INTERVENTIONS``): written, read back,
validated, counted by ``robot-rl inspect``; files without it read as before."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import DatasetError, DatasetWriter
from robot_rl.data.layout import INTERVENTIONS
from robot_rl.data.reader import Dataset
from tests.data.synthetic import make_episode, make_spec


def _write(path: Path, flags: list[np.ndarray | None]) -> None:
    with DatasetWriter(path, make_spec(), source="test") as w:
        for i, f in enumerate(flags):
            ep = make_episode(i, length=None if f is None else len(f), cameras=())
            ep.interventions = f
            w.add_episode(ep)


def test_interventions_round_trip_and_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "robot.h5"
    a = np.zeros(12, bool)
    a[3:7] = True
    _write(path, [a, None, np.zeros(6, bool)])
    with Dataset(path) as ds:
        first, second, third = (ds.load_episode(n) for n in ds.episode_names)
        np.testing.assert_array_equal(first.interventions, a)
        assert first.interventions.dtype == bool and first.num_interventions == 4
        assert second.interventions is None and second.num_interventions == 0
        assert ds.intervention_counts() == {"demo_0": 4, "demo_1": 0, "demo_2": 0}
    with h5py.File(path) as f:
        assert f[f"data/demo_0/{INTERVENTIONS}"].dtype == np.uint8
    assert main(["inspect", str(path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "interventions: 4 steps in 1 of 3 episodes" in out


def test_files_without_interventions_read_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.h5"
    _write(path, [None, None])
    with Dataset(path) as ds:
        assert ds.intervention_counts() is None
        assert all(ds.load_episode(n).interventions is None for n in ds.episode_names)
    assert main(["inspect", str(path), "--no-plot"]) == 0
    assert "interventions" not in capsys.readouterr().out


def test_bad_interventions_are_refused_in_one_line(tmp_path: Path) -> None:
    ep = make_episode(0, length=5, cameras=())
    ep.interventions = np.zeros(4, bool)
    with pytest.raises(DatasetError, match=r"key 'interventions': expected bool \[5\], got bool \[4\]"):
        ep.validate()
    path = tmp_path / "bad.h5"
    _write(path, [np.zeros(5, bool)])
    with h5py.File(path, "a") as f:
        del f[f"data/demo_0/{INTERVENTIONS}"]
        f[f"data/demo_0/{INTERVENTIONS}"] = np.zeros(5, np.float32)
    with pytest.raises(DatasetError, match=r"demo_0.*key 'interventions': expected uint8 \[5\], got float32 \[5\]"):
        Dataset(path).load_episode("demo_0")
