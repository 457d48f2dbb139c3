"""Write episodes, read them back: content, robomimic layout, masks, summaries, transitions."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from robot_rl.core import EnvSpec
from robot_rl.data import FORMAT_VERSION, Dataset, DatasetError, DatasetWriter, Episode, open_dataset
from tests.data.synthetic import ACTION_DIM, SIM_DIM, STATE_DIM, assert_same_episode, make_episode, make_spec


@pytest.fixture
def written(tmp_path):
    """A dataset of 12 episodes (seeds 0..11; demo_4 unlabeled), with every optional key."""
    path = tmp_path / "d.h5"
    episodes = [make_episode(s, labeled=s != 4) for s in range(12)]
    with DatasetWriter(path, make_spec(), source="test", image_compression="lzf") as w:
        names = [w.add_episode(ep) for ep in episodes]
    assert names == [f"demo_{i}" for i in range(12)]
    return path, episodes


def test_round_trip_content(written):
    path, episodes = written
    with Dataset(path) as ds:
        assert ds.episode_names == [f"demo_{i}" for i in range(12)]  # numeric order: demo_10 after demo_9
        assert ds.num_episodes == 12 and ds.num_transitions == sum(e.length for e in episodes)
        assert ds.spec == make_spec() and ds.task_text == "reach the goal" and ds.source == "test"
        assert ds.notes == []
        for name, want in zip(ds.episode_names, episodes, strict=True):
            assert_same_episode(ds.load_episode(name, images=True), want)
            no_images = ds.load_episode(name)
            assert no_images.images == {} and no_images.sim_states is not None


def test_robomimic_layout(written):
    path, episodes = written
    with h5py.File(path, "r") as f:
        assert set(f) == {"data", "mask"}
        attrs = f["data"].attrs
        assert attrs["format_version"] == FORMAT_VERSION and attrs["source"] == "test"
        assert attrs["task_text"] == "reach the goal" and attrs["total"] == sum(e.length for e in episodes)
        assert EnvSpec.from_json(attrs["env_spec"]) == make_spec()
        demo = f["data/demo_3"]
        t = episodes[3].length
        assert demo.attrs["num_samples"] == t and demo.attrs["seed"] == 3
        assert bool(demo.attrs["success"]) == episodes[3].success
        expect = {
            "obs/state": ("float32", (t, STATE_DIM)), "next_obs/state": ("float32", (t, STATE_DIM)),
            "actions": ("float32", (t, ACTION_DIM)), "rewards": ("float32", (t,)), "dones": ("uint8", (t,)),
            "terminals": ("uint8", (t,)), "successes": ("uint8", (t,)), "sim_state": ("float64", (t, SIM_DIM)),
            "obs/privileged": ("float32", (t, 3)), "obs/image/front": ("uint8", (math.ceil(t / 3), 16, 16, 3)),
            "reward_labels/ground_truth": ("float32", (t,)),
        }
        for key, (dtype, shape) in expect.items():
            assert demo[key].dtype == np.dtype(dtype) and demo[key].shape == shape, key
        image = demo["obs/image/front"]
        assert image.chunks == (1, 16, 16, 3) and image.compression == "lzf" and image.attrs["every"] == 3
        assert '"labeler": "ground_truth"' in demo["reward_labels/ground_truth"].attrs["provenance"]
        assert f["mask/train"].dtype.kind == "S" and f["mask/valid"].dtype.kind == "S"
        train = [n.decode() for n in f["mask/train"][()]]
        valid = [n.decode() for n in f["mask/valid"][()]]
    assert valid == ["demo_9"] and sorted(train + valid) == sorted(f"demo_{i}" for i in range(12))


def test_masks_summaries_and_describe(written):
    path, episodes = written
    with open_dataset(path) as ds:
        assert ds.valid_names == ["demo_9"] and "demo_9" not in ds.train_names and len(ds.train_names) == 11
        summaries = ds.episode_summaries()
        assert [s[0] for s in summaries] == ds.episode_names
        for (_name, length, ret, success), ep in zip(summaries, episodes, strict=True):
            assert length == ep.length and success == ep.success
            if ep.seed == 4:
                assert math.isnan(ret)
            else:
                assert ret == pytest.approx(float(ep.rewards.sum()), rel=1e-5)
        table = {key: (dtype, shape) for key, dtype, shape in ds.describe()}
        assert table["obs/state"] == ("float32", f"[T, {STATE_DIM}]")
        assert table["obs/image/front"] == ("uint8", "[ceil(T/3), 16, 16, 3]")
        assert table["reward_labels/ground_truth"] == ("float32", "[T] (in 11 of 12 episodes)")
        assert ds.reward_label_ids() == ["ground_truth"]
        assert "12 episodes" in repr(ds)


def test_transitions(written):
    path, episodes = written
    with Dataset(path) as ds:
        tr = ds.transitions()
        n = ds.num_transitions
        assert tr["states"].shape == (n, STATE_DIM) and tr["states"].dtype == np.float32
        assert tr["actions"].shape == (n, ACTION_DIM) and tr["rewards"].dtype == np.float32
        assert tr["terminals"].dtype == np.bool_ and tr["dones"].dtype == np.bool_
        assert tr["episode_index"].dtype == np.int64 and tr["step_index"].dtype == np.int64
        for row in (0, n // 2, n - 1):
            ep = episodes[tr["episode_index"][row]]
            step = tr["step_index"][row]
            np.testing.assert_array_equal(tr["next_states"][row], ep.next_states[step])
            assert tr["dones"][row] == ep.dones[step] and tr["terminals"][row] == ep.terminals[step]
        subset = ds.transitions(["demo_2", "demo_0"], reward_key="ground_truth")
        assert len(subset["states"]) == episodes[2].length + episodes[0].length
        assert subset["episode_index"][0] == 0 and subset["episode_index"][-1] == 1
        np.testing.assert_array_equal(subset["rewards"][: episodes[2].length], episodes[2].rewards)
        with pytest.raises(DatasetError, match="episode demo_4: key 'reward_labels/ground_truth': missing"):
            ds.transitions(reward_key="reward_labels/ground_truth")
        with pytest.raises(DatasetError, match="no episode 'demo_99'"):
            ds.load_episode("demo_99")
        empty = ds.transitions([])
        assert empty["states"].shape == (0, STATE_DIM) and empty["terminals"].dtype == np.bool_


def test_minimal_episode_round_trip(tmp_path):
    """Only required keys; episode success from attrs; no images, labels, sim state."""
    ep = make_episode(7, length=3)
    ep = Episode(states=ep.states, actions=ep.actions, rewards=ep.rewards, next_states=ep.next_states,
                 terminals=ep.terminals, dones=ep.dones, attrs={"success": True})
    with DatasetWriter(tmp_path / "m.h5", make_spec(), source="minimal", task_text="other text") as w:
        w.add_episode(ep)
    with Dataset(tmp_path / "m.h5") as ds:
        got = ds.load_episode("demo_0", images=True)
        assert got.success and got.seed is None and got.successes is None and got.images == {}
        assert got.sim_states is None and got.privileged is None and got.reward_labels == {}
        assert ds.task_text == "other text" and ds.train_names == ["demo_0"] and ds.valid_names == []
        assert {k for k, _, _ in ds.describe()} == {"obs/state", "next_obs/state", "actions", "rewards", "dones",
                                                    "terminals"}


def test_writer_rejects_bad_episode_and_continues(tmp_path):
    path = tmp_path / "d.h5"
    with DatasetWriter(path, make_spec(), source="test") as w:
        bad = make_episode(1)
        bad.actions = bad.actions.astype(np.float64)
        with pytest.raises(DatasetError, match=r"new episode demo_0: key 'actions': expected float32 \[\d+, 2\], got "
                                               r"float64"):
            w.add_episode(bad)
        odd_attr = make_episode(2)
        odd_attr.attrs["config"] = {"nested": "dict"}
        with pytest.raises(DatasetError, match="attr 'config': cannot store dict"):
            w.add_episode(odd_attr)
        assert w.add_episode(make_episode(3)) == "demo_0"
    with Dataset(path) as ds:
        assert ds.episode_names == ["demo_0"] and ds.load_episode("demo_0").seed == 3


def test_lzf_gzip_and_no_compression(tmp_path):
    for compression in ("gzip", "lzf", None):
        path = tmp_path / f"{compression}.h5"
        with DatasetWriter(path, make_spec(), source="test", image_compression=compression) as w:
            w.add_episode(make_episode(0))
        with Dataset(path) as ds:
            assert_same_episode(ds.load_episode("demo_0", images=True), make_episode(0))
    with pytest.raises(ValueError, match="image_compression"):
        DatasetWriter(tmp_path / "x.h5", make_spec(), source="test", image_compression="zstd")


def test_durable_writer_and_add_after_close(tmp_path):
    path = tmp_path / "d.h5"
    writer = DatasetWriter(path, make_spec(), source="test", durable=True)
    assert writer.add_episode(make_episode(0)) == "demo_0"
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(DatasetError, match="writer is closed"):
        writer.add_episode(make_episode(1))
    with DatasetWriter(path, make_spec(), source="test", resume=True) as w:
        assert w.names == ["demo_0"] and w.add_episode(make_episode(1)) == "demo_1"
    with Dataset(path) as ds:
        assert ds.episode_names == ["demo_0", "demo_1"] and ds.notes == []
