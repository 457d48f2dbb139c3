"""The user's first commands: collect a dataset, inspect it, and get one-line errors for bad input."""

import h5py
import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset


def test_collect_then_inspect(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "3", "--num-envs", "2",
                 "--image-every", "50", "--image-size", "32", "--out", str(out)]) == 0
    with Dataset(out) as ds:
        assert ds.num_episodes == 3
        assert ds.spec.name == "metaworld/drawer-open-v3" and ds.task_text
        ep = ds.load_episode(ds.episode_names[0], images=True)
        assert ep.length == ds.spec.max_episode_steps
        assert ep.sim_states.shape == (ep.length, ds.spec.sim_state_dim)
        camera, frames = next(iter(ep.images.items()))
        assert frames.shape == (-(-ep.length // 50), 32, 32, 3) and frames.std() > 0
        assert ep.attrs["behaviour"] in {"expert", "expert_then_random", "wrong_goal", "random"}
        np.testing.assert_array_equal(ep.rewards, ep.reward_labels["ground_truth"][0])
    png = tmp_path / "d.png"
    assert main(["inspect", str(out), "--png", str(png), "--frames", "3"]) == 0
    text = capsys.readouterr().out
    assert "by behaviour" in text and "obs/state" in text and "sim_state" in text
    assert png.stat().st_size > 10_000


def test_same_seed_same_dataset(tmp_path):
    for name in ("a", "b"):
        assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "2", "--episode-length", "30",
                     "--seed", "5", "--out", str(tmp_path / f"{name}.h5")]) == 0
    with Dataset(tmp_path / "a.h5") as a, Dataset(tmp_path / "b.h5") as b:
        ta, tb = a.transitions(), b.transitions()
        for k in ("states", "actions", "rewards"):
            np.testing.assert_array_equal(ta[k], tb[k])


def test_resume_appends_episodes(tmp_path):
    out = tmp_path / "d.h5"
    args = ["collect", "--task", "metaworld/drawer-close-v3", "--episodes", "2", "--episode-length", "20",
            "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 2  # refuses to overwrite
    args[args.index("--episodes") + 1] = "4"  # with --resume: 4 in total
    assert main([*args, "--resume", "--seed", "1"]) == 0
    with Dataset(out) as ds:
        assert ds.num_episodes == 4


def test_unknown_task_lists_valid_names(tmp_path, capsys):
    assert main(["collect", "--task", "metaworld/drawer-opn-v3", "--episodes", "1", "--out",
                 str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "drawer-open-v3" in err and "gym/Hopper-v5" in err


def test_gym_task_needs_random_preset(tmp_path, capsys):
    assert main(["collect", "--task", "gym/Hopper-v5", "--episodes", "1", "--out", str(tmp_path / "h.h5")]) == 2
    assert "--preset random" in capsys.readouterr().err
    assert main(["collect", "--task", "gym/Hopper-v5", "--preset", "random", "--episodes", "2",
                 "--episode-length", "40", "--out", str(tmp_path / "h.h5")]) == 0


@pytest.mark.parametrize("damage", ["truncate", "not_hdf5", "missing_actions"])
def test_inspect_bad_file_is_one_line(tmp_path, capsys, damage):
    out = tmp_path / "d.h5"
    assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "2", "--episode-length", "20",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    if damage == "truncate":
        data = out.read_bytes()
        out.write_bytes(data[: len(data) // 2])
    elif damage == "not_hdf5":
        out.write_text("hello")
    else:
        with h5py.File(out, "a") as f:
            del f["data/demo_1/actions"]
    assert main(["inspect", str(out), "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(out) in err
    if damage == "missing_actions":
        assert "demo_1" in err and "actions" in err
