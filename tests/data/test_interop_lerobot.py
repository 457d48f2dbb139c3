"""LeRobot datasets in and out: v3.0 and v2.1 datasets laid out as LeRobot's code writes them (videos encoded with
PyAV as LeRobot does, see ``lerobot_fixture.py``) import with their frames, tasks, episode bounds, rewards and
decoded camera frames; a relabeled dataset exports back as v3.0 with ``next.reward`` and its provenance."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.data.interop import export_to, import_source
from robot_rl.data.interop.common import physical
from tests.data.fixtures.write_lerobot_fixture import colour
from tests.data.lerobot_fixture import JOINTS, frame_color, write_v21, write_v30


@pytest.fixture(scope="module")
def v30(tmp_path_factory) -> Path:
    return write_v30(tmp_path_factory.mktemp("lerobot") / "so100_pick")


@pytest.fixture(scope="module")
def v21(tmp_path_factory) -> Path:
    return write_v21(tmp_path_factory.mktemp("lerobot") / "pusht")


def _frames(root: Path, name: str) -> dict[str, np.ndarray]:
    table = pq.read_table(sorted((root / "data").glob("*/*.parquet"))[0] if name == "*" else root / name)
    return {c: np.asarray(table.column(c).to_pylist()) for c in table.column_names}


def test_v30_import_keeps_frames_tasks_bounds_and_decodes_the_video(v30: Path, tmp_path: Path) -> None:
    out = tmp_path / "so100.h5"
    report = import_source(f"lerobot:{v30}", str(out))
    assert (report.episodes, report.steps) == (3, 24)
    src = _frames(v30, "data/chunk-000/file-000.parquet")
    with Dataset(out) as ds:
        spec = ds.spec
        assert spec.name == "lerobot/so100_follower" and spec.control_hz == 10 and spec.cameras == ("top",)
        assert [s.name for s in spec.state_slices] == ["state"] and spec.action.names == tuple(JOINTS)
        assert ds.task_text == "pick up the cube"
        assert [ds.episode_length(n) for n in ds.episode_names] == [7, 9, 8]
        ep = ds.load_episode("demo_1", images=True)
        rows = slice(7, 16)
        assert ep.attrs["task"] == "put the cube in the bowl" and ep.attrs["source_episode"] == 1
        np.testing.assert_allclose(ep.states, src["observation.state"][rows], rtol=1e-6)
        np.testing.assert_allclose(physical(ep.actions, spec), src["action"][rows], rtol=1e-5, atol=1e-4)
        assert np.abs(ep.actions).max() <= 1 + 1e-6
        np.testing.assert_array_equal(ep.next_states[:-1], ep.states[1:])
        want = np.stack([frame_color(7 + j) for j in range(9)]).astype(int)
        assert ep.images["top"].shape == (9, 64, 64, 3)
        assert np.abs(ep.images["top"].astype(int) - want).max() <= 8  # AV1 at crf 30; frames 23 levels apart
        assert np.isnan(ep.rewards).all() and not ep.reward_labels


def test_v21_import_keeps_rewards_dones_successes_and_resizes(v21: Path, tmp_path: Path) -> None:
    out = tmp_path / "pusht.h5"
    import_source(f"lerobot:{v21}", str(out), image_size=(32, 32))
    src = _frames(v21, "data/chunk-000/episode_000001.parquet")
    with Dataset(out) as ds:
        assert ds.task_text == "Push the T-shaped block onto the T-shaped target."
        assert ds.spec.action.names == tuple(JOINTS)  # names given as {"motors": [...]}
        ep = ds.load_episode("demo_1", images=True)
        np.testing.assert_allclose(ep.rewards, src["next.reward"], rtol=1e-6)
        np.testing.assert_array_equal(ep.reward_labels["ground_truth"][0], ep.rewards)
        np.testing.assert_array_equal(ep.terminals, src["next.done"])
        np.testing.assert_array_equal(ep.successes, src["next.success"])
        assert ep.images["image"].shape == (8, 32, 32, 3)
        want = np.stack([frame_color(1000 + j)[:32, :32] for j in range(8)]).astype(int)
        assert np.abs(ep.images["image"].astype(int) - want).max() <= 8


def test_lerobot_to_robot_rl_relabel_and_back(v21: Path, tmp_path: Path, capsys) -> None:
    h5 = tmp_path / "pusht.h5"
    assert main(["import", f"lerobot:{v21}", "--out", str(h5)]) == 0
    assert main(["label", str(h5), "--pairs", "20", "--segment-length", "4"]) == 0
    assert main(["train-reward", str(h5), "--out", str(tmp_path / "rm"), "--steps", "5", "--set", "hidden=[16]"]) == 0
    assert main(["relabel", str(h5), "--source", f"reward-model:{tmp_path / 'rm'}", "--activate"]) == 0
    back = tmp_path / "pusht_relabeled"
    assert main(["export", str(h5), "--to", f"lerobot:{back}", "--camera-format", "png"]) == 0
    info = json.loads((back / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_frames"] == 14 and info["fps"] == 10
    reward = info["features"]["next.reward"]
    assert reward["info"]["robot_rl_label"] == "reward_model" and reward["info"]["provenance"]["labeler"]
    assert info["features"]["observation.images.image"]["dtype"] == "image" and info["video_path"] is None
    frames = _frames(back, "data/chunk-000/file-000.parquet")
    episodes = pq.read_table(back / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(0, 6), (6, 14)]
    assert pq.ParquetFile(back / "data/chunk-000/file-000.parquet").metadata.num_row_groups == 2
    tasks = pd.read_parquet(back / "meta/tasks.parquet")  # as LeRobot's load_tasks reads it
    assert tasks.iloc[int(frames["task_index"][0])].name == "Push the T-shaped block onto the T-shaped target."
    stats = json.loads((back / "meta/stats.json").read_text())
    assert set(stats["action"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    with Dataset(h5) as ds:
        ep = ds.load_episode("demo_1", images=True)
        np.testing.assert_allclose(frames["next.reward"][6:], ep.rewards, rtol=1e-6)
        src = _frames(v21, "data/chunk-000/episode_000001.parquet")
        np.testing.assert_allclose(frames["action"][6:], src["action"], rtol=1e-5, atol=1e-4)
        png = frames["observation.images.image"][6]["bytes"]
        decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(decoded, ep.images["image"][0])
    again = tmp_path / "again.h5"
    import_source(f"lerobot:{back}", str(again))
    with Dataset(h5) as a, Dataset(again) as b:
        assert a.spec == b.spec
        ea, eb = a.load_episode("demo_1", images=True), b.load_episode("demo_1", images=True)
        np.testing.assert_array_equal(ea.states, eb.states)
        np.testing.assert_allclose(ea.actions, eb.actions, atol=1e-6)
        np.testing.assert_array_equal(ea.rewards, eb.rewards)
        np.testing.assert_array_equal(ea.images["image"], eb.images["image"])
        assert eb.reward_labels["reward_model"][1] == ea.reward_labels["reward_model"][1]


def _one_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("robot-rl "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", ["missing", "file", "no_info", "v20", "no_video"])
def test_bad_lerobot_inputs_are_one_line_errors(v30: Path, tmp_path: Path, capsys, case: str) -> None:
    root = tmp_path / "ds"
    needle = str(root)
    if case == "file":
        root.write_text("x")
        needle = "not a directory"
    elif case == "no_info":
        (root / "data").mkdir(parents=True)
        needle = "no meta/info.json"
    elif case == "v20":
        (root / "meta").mkdir(parents=True)
        (root / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.0", "features": {}}))
        needle = "codebase_version 'v2.0'"
    elif case == "no_video":
        root = write_v30(tmp_path / "ds", lengths=(3,), tasks=("t",))
        (root / "videos/observation.images.top/chunk-000/file-000.mp4").unlink()
        needle = "no such video file"
    assert main(["import", f"lerobot:{root}", "--out", str(tmp_path / "o.h5")]) == 2
    _one_line(capsys.readouterr().err, needle)
    assert not (tmp_path / "o.h5").exists()


def test_cameras_export_as_video_back_to_back_and_import_again(v21: Path, tmp_path: Path) -> None:
    h5 = tmp_path / "pusht.h5"
    import_source(f"lerobot:{v21}", str(h5))
    out = tmp_path / "video"
    export_to(str(h5), f"lerobot:{out}")
    info = json.loads((out / "meta/info.json").read_text())
    feature = info["features"]["observation.images.image"]
    assert feature["dtype"] == "video" and feature["info"]["video.codec"] == "av1"
    assert "observation.images.image" not in pq.read_schema(out / "data/chunk-000/file-000.parquet").names
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    spans = [(e["videos/observation.images.image/from_timestamp"], e["videos/observation.images.image/to_timestamp"])
             for e in episodes]
    assert spans == [(0.0, 0.6), (0.6, 1.4)]
    again = tmp_path / "again.h5"
    import_source(f"lerobot:{out}", str(again))
    with Dataset(h5) as a, Dataset(again) as b:
        for name in a.episode_names:
            ia = a.load_episode(name, images=True).images["image"]
            ib = b.load_episode(name, images=True).images["image"]
            assert ia.shape == ib.shape and np.abs(ia.astype(int) - ib.astype(int)).max() <= 8


FIXTURE = Path(__file__).parent / "fixtures" / "lerobot_v30_so100"
"""Written by LeRobot 0.6.1's own ``LeRobotDataset`` (see ``fixtures/write_lerobot_fixture.py`` for the command)."""


def test_a_dataset_written_by_lerobot_itself_imports(tmp_path: Path) -> None:
    out = tmp_path / "so100.h5"
    report = import_source(f"lerobot:{FIXTURE}", str(out))
    assert (report.episodes, report.steps) == (3, 21)
    with Dataset(out) as ds:
        assert ds.spec.control_hz == 10 and ds.spec.cameras == ("front",)
        for e, name in enumerate(ds.episode_names):
            ep = ds.load_episode(name, images=True)
            t = ep.length
            assert t == (6, 8, 7)[e]
            np.testing.assert_array_equal(ep.states[:, 0], 10 * e + np.arange(t))
            np.testing.assert_allclose(ep.rewards, np.arange(t) / t, rtol=1e-6)
            assert ep.terminals.tolist() == [False] * (t - 1) + [True]
            assert ep.attrs["task"] == ("put the cube in the bowl" if e == 1 else "pick up the cube")
            want = np.array([colour(e, j) for j in range(t)])
            assert np.abs(ep.images["front"][:, 16, 16].astype(int) - want).max() <= 8


def test_lerobot_written_dataset_relabeled_and_exported_back_as_video(tmp_path: Path) -> None:
    from robot_rl.data import write_reward_labels

    h5 = tmp_path / "so100.h5"
    import_source(f"lerobot:{FIXTURE}", str(h5))
    with Dataset(h5) as ds:
        values = {n: -np.arange(ds.episode_length(n), dtype=np.float32) for n in ds.episode_names}
    write_reward_labels(str(h5), "code", values, {"labeler": "code", "sha256": "ab12"}, activate=True)
    out = tmp_path / "back"
    export_to(str(h5), f"lerobot:{out}")
    frames = _frames(out, "data/chunk-000/file-000.parquet")
    np.testing.assert_array_equal(frames["next.reward"], np.concatenate(list(values.values())))
    src = _frames(FIXTURE, "data/chunk-000/file-000.parquet")
    np.testing.assert_allclose(frames["action"], src["action"], rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(frames["observation.state"], src["observation.state"])
    np.testing.assert_array_equal(frames["task_index"], src["task_index"])
    again = tmp_path / "again.h5"
    import_source(f"lerobot:{out}", str(again))
    with Dataset(h5) as a, Dataset(again) as b:
        for name in a.episode_names:
            ea, eb = a.load_episode(name, images=True), b.load_episode(name, images=True)
            np.testing.assert_array_equal(ea.rewards, eb.rewards)
            assert eb.reward_labels["code"][1] == {"labeler": "code", "sha256": "ab12"}
            assert np.abs(ea.images["front"].astype(int) - eb.images["front"].astype(int)).max() <= 8


LEROBOT_PYTHON = os.environ.get("ROBOT_RL_LEROBOT_PYTHON", "/tmp/lerobot-env/venv/bin/python")
_OPEN = """
import json, sys
from lerobot.datasets import LeRobotDataset
ds = LeRobotDataset("robot_rl/export", root=sys.argv[1])
items = [ds[i] for i in range(len(ds))]
print(json.dumps({"frames": ds.num_frames, "episodes": ds.num_episodes, "tasks": [it["task"] for it in items],
                  "rewards": [float(it["next.reward"]) for it in items],
                  "image": list(items[0]["observation.images.front"].shape),
                  "info": ds.meta.features["next.reward"].get("info")}))
"""


@pytest.mark.skipif(not os.path.exists(LEROBOT_PYTHON),
                    reason="needs lerobot in its own environment (ROBOT_RL_LEROBOT_PYTHON; see fixtures/"
                           "write_lerobot_fixture.py)")
def test_lerobots_own_loader_opens_a_relabeled_export(tmp_path: Path) -> None:
    from robot_rl.data import write_reward_labels

    h5 = tmp_path / "so100.h5"
    import_source(f"lerobot:{FIXTURE}", str(h5))
    with Dataset(h5) as ds:
        values = {n: np.linspace(0, 1, ds.episode_length(n)).astype(np.float32) for n in ds.episode_names}
    write_reward_labels(str(h5), "reward_model", values, {"labeler": "reward_model", "model": "rm.pt"}, activate=True)
    out = tmp_path / "export"
    export_to(str(h5), f"lerobot:{out}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(tmp_path / "hf")}
    run = subprocess.run([LEROBOT_PYTHON, "-c", _OPEN, str(out)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert (got["frames"], got["episodes"]) == (21, 3)
    assert got["tasks"][6] == "put the cube in the bowl" and got["image"] == [3, 32, 32]
    np.testing.assert_allclose(got["rewards"], np.concatenate(list(values.values())), rtol=1e-6)
    assert got["info"]["robot_rl_label"] == "reward_model" and got["info"]["provenance"]["model"] == "rm.pt"
