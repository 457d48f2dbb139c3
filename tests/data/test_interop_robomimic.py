"""robomimic HDF5 in and out: an h5py-written file in robomimic's documented layout imports with its keys as named
state slices, its next_obs, rewards, dones, simulator states, images and masks, and exports back identical."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.data.interop import InteropError, export_to, import_source
from tests.data.robomimic_fixture import ENV_ARGS, IMAGE, LOWDIM, write_robomimic


def _tree(path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
        for name in f["data"]:
            for k, v in f["data"][name].attrs.items():
                out[f"data/{name}@{k}"] = v
        out["env_args"] = json.loads(f["data"].attrs["env_args"])
    return out


def test_import_maps_keys_onto_named_state_slices(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5")
    calls: list[tuple[int, int]] = []
    report = import_source(f"robomimic:{src}", str(tmp_path / "lift.h5"), on_progress=lambda *a: calls.append(a))
    assert (report.episodes, report.steps) == (3, 12 + 15 + 18)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert any("no task sentence" in n for n in report.notes)
    with Dataset(tmp_path / "lift.h5") as ds, h5py.File(src, "r") as f:
        spec = ds.spec
        assert spec.name == "robomimic/Lift" and spec.state_dim == sum(LOWDIM.values())
        assert [s.name for s in spec.state_slices] == sorted(LOWDIM)
        assert spec.cameras == (IMAGE,) and spec.sim_state_dim == 32
        assert json.loads(spec.extras["robomimic_env_args"]) == ENV_ARGS
        assert ds.source == f"robomimic:{src}"
        assert ds.train_names == ["demo_0", "demo_1"] and ds.valid_names == ["demo_2"]
        ep = ds.load_episode("demo_1", images=True)
        g = f["data/demo_2"]
        eef = spec.state_slice("robot0_eef_pos")
        np.testing.assert_allclose(ep.states[:, eef], g["obs/robot0_eef_pos"][()], rtol=1e-6)
        np.testing.assert_allclose(ep.next_states[:, eef], g["next_obs/robot0_eef_pos"][()], rtol=1e-6)
        np.testing.assert_allclose(ep.actions, g["actions"][()], rtol=1e-6)
        np.testing.assert_array_equal(ep.rewards, g["rewards"][()])
        np.testing.assert_array_equal(ep.reward_labels["ground_truth"][0], g["rewards"][()])
        np.testing.assert_array_equal(ep.terminals, g["dones"][()].astype(bool))
        np.testing.assert_array_equal(ep.sim_states, g["states"][()])
        np.testing.assert_array_equal(ep.images[IMAGE], g[f"obs/{IMAGE}"][()])
        assert ep.attrs["source_demo"] == "demo_2" and "<mujoco" in ep.attrs["model_file"]


def test_round_trip_robomimic_robot_rl_robomimic_is_identical(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5", action_scale=3.0)  # actions outside [-1, 1]: normalized, restored
    import_source(f"robomimic:{src}", str(tmp_path / "lift.h5"))
    with Dataset(tmp_path / "lift.h5") as ds:
        acts = ds.transitions()["actions"]
        assert acts.min() >= -1 - 1e-6 and acts.max() <= 1 + 1e-6
    back = tmp_path / "back.hdf5"
    export_to(str(tmp_path / "lift.h5"), f"robomimic:{back}")
    before, after = _tree(src), _tree(back)
    assert after["env_args"] == before["env_args"]
    for key, value in before.items():
        assert key in after, key
        if key.endswith("/next_obs/" + IMAGE):  # no frame after the last step is kept: it repeats
            np.testing.assert_array_equal(after[key][:-1], value[:-1])  # type: ignore[index]
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            np.testing.assert_allclose(after[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(value), err_msg=key)
    # and back again: the stored EnvSpec makes the second import exact
    import_source(f"robomimic:{back}", str(tmp_path / "again.h5"))
    with Dataset(tmp_path / "lift.h5") as a, Dataset(tmp_path / "again.h5") as b:
        assert a.spec == b.spec and a.train_names == b.train_names
        for name in a.episode_names:
            ea, eb = a.load_episode(name), b.load_episode(name)
            np.testing.assert_array_equal(ea.states, eb.states)
            np.testing.assert_array_equal(ea.actions, eb.actions)


def test_without_next_obs_the_next_state_is_the_following_step(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "isaac.hdf5", demos=1, next_obs=False, images=False)
    report = import_source(f"robomimic:{src}", str(tmp_path / "isaac.h5"))
    assert any("next_obs" in n for n in report.notes)
    with Dataset(tmp_path / "isaac.h5") as ds:
        ep = ds.load_episode("demo_0")
        np.testing.assert_array_equal(ep.next_states[:-1], ep.states[1:])
        assert ep.attrs["next_obs_from_shift"]


def test_an_isaac_lab_recording_imports(tmp_path: Path) -> None:
    """Isaac Lab's recorder: no rewards, dones or next_obs; scene states as nested groups; a success attr."""
    src = tmp_path / "isaac.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(src, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Isaac-Stack-Cube-Franka-IK-Rel-v0", "type": 2})
        data.attrs["total"] = 20
        for i, ok in enumerate((True, False)):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"], g.attrs["success"] = 10, ok
            g.create_dataset("actions", data=rng.uniform(-1, 1, (10, 7)).astype(np.float32))
            g.create_dataset("obs/joint_pos", data=rng.normal(size=(10, 9)).astype(np.float32))
            g.create_dataset("obs/eef_pos", data=rng.normal(size=(10, 3)).astype(np.float32))
            g.create_dataset("states/articulation/robot/joint_position", data=rng.normal(size=(10, 9)))
            g.create_dataset("initial_state/articulation/robot/joint_position", data=rng.normal(size=(1, 9)))
    report = import_source(f"robomimic:{src}", str(tmp_path / "isaac.h5"))
    assert any("scene states" in n for n in report.notes)
    with Dataset(tmp_path / "isaac.h5") as ds:
        assert ds.spec.name == "robomimic/Isaac-Stack-Cube-Franka-IK-Rel-v0" and ds.spec.state_dim == 12
        assert [s[3] for s in ds.episode_summaries()] == [True, False]
        ep = ds.load_episode("demo_0")
        assert np.isnan(ep.rewards).all() and ep.sim_states is None and ep.dones[-1] and not ep.terminals.any()


def test_an_imported_file_is_labeled_trained_on_and_relabeled(tmp_path: Path, capsys) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5", demos=4, images=False)
    out = tmp_path / "lift.h5"
    assert main(["import", f"robomimic:{src}", "--out", str(out), "--task", "lift the cube"]) == 0
    assert main(["inspect", str(out), "--no-plot"]) == 0
    assert "robomimic/Lift" in capsys.readouterr().out
    assert main(["label", str(out), "--pairs", "20", "--segment-length", "5"]) == 0
    assert main(["train-reward", str(out), "--out", str(tmp_path / "rm"), "--steps", "5",
                 "--set", "hidden=[16]"]) == 0
    assert main(["relabel", str(out), "--source", f"reward-model:{tmp_path / 'rm'}", "--activate"]) == 0
    back = tmp_path / "relabeled.hdf5"
    assert main(["export", str(out), "--to", f"robomimic:{back}"]) == 0
    with h5py.File(back, "r") as f, Dataset(out) as ds:
        assert json.loads(f["data"].attrs["reward_provenance"])["label"] == "reward_model"
        assert ds.task_text == "lift the cube" and ds.spec.task_text == "lift the cube"
        np.testing.assert_allclose(f["data/demo_1/rewards"][()], ds.load_episode("demo_0").rewards)
        assert "reward_model" in f["data/demo_1/reward_labels"]


def _one_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("robot-rl "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", ["missing", "not_hdf5", "no_data", "no_demos", "scheme", "no_target", "obs_key"])
def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys, case: str) -> None:
    src = tmp_path / "in.hdf5"
    needle = str(src)
    extra: list[str] = []
    if case == "not_hdf5":
        src.write_text("hello")
    elif case == "no_data":
        with h5py.File(src, "w") as f:
            f.create_group("demos")
        needle = "no /data group"
    elif case == "no_demos":
        with h5py.File(src, "w") as f:
            f.create_group("data/demo_0/obs")
        needle = "'actions'"
    elif case == "obs_key":
        write_robomimic(src, demos=1, images=False)
        extra, needle = ["--obs-keys", "robot0_eef_pos,joint_pos"], "obs/joint_pos"
    source = f"robomimic:{src}"
    if case == "scheme":
        source, needle = f"rlds:{src}", "unknown source"
    elif case == "no_target":
        source, needle = "robomimic:", "nothing after"
    assert main(["import", source, "--out", str(tmp_path / "o.h5"), *extra]) == 2
    _one_line(capsys.readouterr().err, needle)
    assert not (tmp_path / "o.h5").exists()


def test_export_refuses_an_existing_destination(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5", demos=1, images=False)
    import_source(f"robomimic:{src}", str(tmp_path / "lift.h5"))
    with pytest.raises(InteropError, match="already exists"):
        export_to(str(tmp_path / "lift.h5"), f"robomimic:{src}")


def test_writer_keeps_given_masks_and_refuses_unwritten_names(tmp_path: Path) -> None:
    from robot_rl.data import DatasetError, DatasetWriter
    from tests.data.synthetic import make_episode, make_spec

    spec = make_spec()
    with DatasetWriter(tmp_path / "m.h5", spec, source="test") as w:
        names = [w.add_episode(make_episode(i, length=5)) for i in range(3)]
        with pytest.raises(DatasetError, match="mask 'valid': episode demo_7 was not written"):
            w.set_masks({"train": names[:1], "valid": ["demo_7"]})
        with pytest.raises(DatasetError, match="valid missing"):
            w.set_masks({"train": names})
        w.set_masks({"train": names[1:], "valid": names[:1], "20_percent": names[:1]})
    with Dataset(tmp_path / "m.h5") as ds:
        assert ds.train_names == names[1:] and ds.valid_names == names[:1]
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert [n.decode() for n in f["mask/20_percent"][()]] == names[:1]
