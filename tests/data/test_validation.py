"""A bad file gives one line that names the file, the episode and the key; never a raw h5py traceback."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from robot_rl.data import Dataset, DatasetError, DatasetWriter, Episode
from tests.data.synthetic import make_episode, make_spec


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "d.h5"
    with DatasetWriter(path, make_spec(), source="test") as w:
        for seed in range(3):
            w.add_episode(make_episode(seed, length=12))
    return path


def open_error(path) -> str:
    with pytest.raises(DatasetError) as info:
        Dataset(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


def test_missing_file_directory_empty_and_text(tmp_path):
    assert open_error(tmp_path / "absent.h5").endswith("no such file")
    assert "is a directory" in open_error(tmp_path)
    (tmp_path / "empty.h5").write_bytes(b"")
    assert "empty file" in open_error(tmp_path / "empty.h5")
    (tmp_path / "notes.txt").write_text("episode 1: it went well\n" * 100)
    assert "not an HDF5 file" in open_error(tmp_path / "notes.txt")


def test_truncated_file(good, tmp_path):
    data = good.read_bytes()
    for size in (1, 8, 100, 1000, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{size}.h5"
        cut.write_bytes(data[:size])
        msg = open_error(cut)
        assert "truncated" in msg or "not an HDF5 file" in msg or "corrupt" in msg, msg


def test_random_corruption_never_leaks_a_raw_error(good, tmp_path):
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    for trial in range(40):
        bad = bytearray(data)
        at, n = int(rng.integers(0, len(data) - 32)), int(rng.integers(1, 32))
        bad[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        path = tmp_path / f"corrupt{trial}.h5"
        path.write_bytes(bytes(bad))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Dataset(path) as ds:
                    for name in ds.episode_names:
                        ds.load_episode(name, images=True)
        except DatasetError as e:  # anything else fails the test
            assert "\n" not in str(e) and str(path) in str(e)


def mutate(path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


def replace(f: h5py.File, key: str, value: np.ndarray) -> None:
    del f[key]
    f[key] = value


@pytest.mark.parametrize("change, expect", [
    (lambda f: f.move("data", "episodes"), "no /data group"),
    (lambda f: f["data"].attrs.__setitem__("format_version", 99), "/data attr 'format_version': expected 1, got 99"),
    (lambda f: f["data"].attrs.__delitem__("format_version"), "/data attr 'format_version': missing"),
    (lambda f: f["data"].attrs.__setitem__("env_spec", "{not json"), "/data attr 'env_spec': not a valid EnvSpec"),
    (lambda f: f["data"].attrs.__setitem__("env_spec", '{"name": "x"}'), "/data attr 'env_spec': not a valid EnvSpec"),
])
def test_bad_file_header(good, change, expect):
    mutate(good, change)
    assert expect in open_error(good)


@pytest.mark.parametrize("change, expect", [
    (lambda g: g.__delitem__("actions"), "key 'actions': missing"),
    (lambda g: g.__delitem__("obs"), "key 'obs/state': missing"),
    (lambda g: replace(g, "actions", g["actions"][()].astype(np.float64)),
     "key 'actions': expected float32 [12, 2], got float64 [12, 2]"),
    (lambda g: replace(g, "rewards", g["rewards"][:-1]), "key 'rewards': expected float32 [12], got float32 [11]"),
    (lambda g: replace(g, "next_obs/state", g["next_obs/state"][:, :3]),
     "key 'next_obs/state': expected float32 [12, 4], got float32 [12, 3]"),
    (lambda g: replace(g, "dones", g["dones"][()].astype(bool)), "key 'dones': expected uint8 [12], got bool [12]"),
    (lambda g: replace(g, "sim_state", g["sim_state"][()].astype(np.float32)),
     "key 'sim_state': expected float64 [12, 5], got float32 [12, 5]"),
    (lambda g: replace(g, "obs/image/front", np.zeros((5, 16, 16, 3), np.uint8)),  # no attr 'every': every step
     "key 'obs/image/front': expected uint8 [12, ?, ?, 3], got uint8 [5, 16, 16, 3]"),
    (lambda g: g["obs/image/front"].attrs.__setitem__("every", 2),
     "key 'obs/image/front': expected uint8 [6, ?, ?, 3], got uint8 [4, 16, 16, 3]"),
    (lambda g: g["obs/image/front"].attrs.__setitem__("every", 0), "key 'obs/image/front': attr 'every'"),
    (lambda g: replace(g, "reward_labels/ground_truth", np.zeros(12)),
     "key 'reward_labels/ground_truth': expected float32 [12], got float64 [12]"),
    (lambda g: g["reward_labels/ground_truth"].attrs.__setitem__("provenance", "{oops"),
     "key 'reward_labels/ground_truth': attr 'provenance': not valid JSON"),
    (lambda g: g["obs/state"].__setitem__((3, 1), np.nan), "key 'obs/state': 1 non-finite values (NaN/inf), first at "
                                                           "step 3"),
    (lambda g: g["actions"].__setitem__((7, 0), np.inf), "key 'actions': 1 non-finite values"),
    (lambda g: g["next_obs/state"].__setitem__(slice(5, 7), np.nan), "key 'next_obs/state': 8 non-finite"),
    (lambda g: g.attrs.__setitem__("num_samples", 0), "attr 'num_samples': expected an int >= 1, got 0"),
])
def test_bad_episode(good, change, expect):
    mutate(good, lambda f: change(f["data/demo_1"]))
    msg = open_error(good)
    assert msg == f"{good}: episode demo_1: {expect}" or msg.startswith(f"{good}: episode demo_1: {expect}"), msg


def test_rewards_may_be_nan(good):
    mutate(good, lambda f: f["data/demo_1/rewards"].__setitem__(slice(None), np.nan))
    with Dataset(good) as ds:
        assert np.isnan(ds.episode_summaries()[1][2])


def test_episode_validate_messages():
    ep = make_episode(0, length=6)
    ep.validate(make_spec())
    cases: list[tuple[str, object, str]] = [
        ("states", ep.states.astype(np.float64), "key 'states': expected float32 [6, 4], got float64 [6, 4]"),
        ("actions", ep.actions[:5], "key 'actions': expected float32 [6, 2], got float32 [5, 2]"),
        ("rewards", list(ep.rewards), "key 'rewards': expected a numpy array, got list"),
        ("terminals", ep.terminals.astype(np.uint8), "key 'terminals': expected bool [6], got uint8 [6]"),
        ("image_every", 2, "key 'images[front]': expected uint8 [3, ?, ?, 3], got uint8 [2, 16, 16, 3]"),
        ("seed", "7", "key 'seed': expected an int or None, got str"),
        ("attrs", {"num_samples": 3}, "attr 'num_samples': reserved"),
        ("images", {"front/left": ep.images["front"]}, "camera 'front/left': use letters"),
    ]
    for field, value, expect in cases:
        bad = Episode(**{**vars(ep), field: value})
        with pytest.raises(DatasetError) as info:
            bad.validate()
        assert str(info.value).startswith(expect), (field, str(info.value))
    nan_states = ep.states.copy()
    nan_states[2, 0] = np.nan
    with pytest.raises(DatasetError, match="key 'states': 1 non-finite values .* first at step 2"):
        Episode(**{**vars(ep), "states": nan_states}).validate()
    terminal_not_done = ep.terminals.copy()
    terminal_not_done[0] = True
    with pytest.raises(DatasetError, match="key 'terminals': step 0 is terminal but not done"):
        Episode(**{**vars(ep), "terminals": terminal_not_done}).validate()
    wrong_dim = make_episode(0, length=6)
    wrong_dim.privileged = np.zeros((6, 9), np.float32)
    with pytest.raises(DatasetError, match=r"key 'privileged': expected float32 \[6, 3\], got float32 \[6, 9\]"):
        wrong_dim.validate(make_spec())

