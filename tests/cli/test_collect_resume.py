"""``robot-rl collect --resume``: continues the seed sequence, fills the file to ``--episodes`` in total, and
handles the 0-episode / 0-byte files that a failed run leaves with one-line messages that name CLI flags."""

import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset, DatasetWriter
from robot_rl.envs import make_env

TASK = "metaworld/drawer-open-v3"


def _collect(out, episodes, *extra):
    return main(["collect", "--task", TASK, "--episodes", str(episodes), "--episode-length", "20",
                 "--out", str(out), *extra])


def _empty_dataset(out):
    """What a collect that failed before its first episode leaves: a valid file with 0 episodes."""
    env = make_env(TASK, num_envs=1, episode_length=20)
    try:
        DatasetWriter(out, env.spec, source="test").close()
    finally:
        env.close()


def test_resume_continues_seeds_and_fills_to_total(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert _collect(out, 2) == 0
    capsys.readouterr()
    assert _collect(out, 4, "--resume") == 0
    err = capsys.readouterr().err
    assert "2 of 4" in err and "adding 2" in err
    with Dataset(out) as ds:
        assert ds.num_episodes == 4  # filled to 4 in total, not 2 + 4
        seeds = [ds.episode_seed(n) for n in ds.episode_names]
        eps = [ds.load_episode(n) for n in ds.episode_names]
    assert seeds[2] > max(seeds[:2])  # the new episodes continue the seed sequence
    for new in eps[2:]:
        for old in eps[:2]:
            assert not np.array_equal(new.states, old.states)
            assert not np.array_equal(new.actions, old.actions)


def test_resume_with_enough_episodes_writes_nothing(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert _collect(out, 2) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert _collect(out, 2, "--resume") == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already has 2" in err
    assert out.read_bytes() == before


def test_explicit_seed_that_repeats_stored_episodes_is_refused(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert _collect(out, 1) == 0
    capsys.readouterr()
    assert _collect(out, 2, "--resume", "--seed", "0") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--seed 0 would record again" in err and "seed >= 1" in err
    assert _collect(out, 2, "--resume", "--seed", "7") == 0
    with Dataset(out) as ds:
        assert [ds.episode_seed(n) for n in ds.episode_names] == [0, 7]


def test_rerun_on_leftover_empty_file_names_the_flag(tmp_path, capsys):
    out = tmp_path / "d.h5"
    _empty_dataset(out)
    assert _collect(out, 2) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and "resume=True" not in err
    assert _collect(out, 2, "--resume") == 0
    with Dataset(out) as ds:
        assert ds.num_episodes == 2


def test_resume_on_zero_byte_file_starts_cleanly(tmp_path, capsys):
    out = tmp_path / "d.h5"
    out.write_bytes(b"")
    assert _collect(out, 1) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "0 bytes" in err and "--resume" in err
    assert _collect(out, 1, "--resume", "--image-every", "10", "--image-size", "16") == 0
    with Dataset(out) as ds:
        assert ds.num_episodes == 1


def test_inspect_empty_dataset_is_one_line(tmp_path, capsys):
    out = tmp_path / "d.h5"
    _empty_dataset(out)
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr()
    lines = (text.out + text.err).strip().splitlines()
    assert len(lines) == 1 and "0 episodes" in lines[0] and "--resume" in lines[0]
    assert "zero-size" not in lines[0]


def test_resume_seed_skips_every_stored_env_seed():
    from robot_rl.data.collect import resume_seed

    assert resume_seed([], None, 2) == 0
    assert resume_seed([0, 1, None, 1], None, 2) == 2  # two envs recorded with seeds 0 and 1
    assert resume_seed([0, 1], 5, 2) == 5
    with pytest.raises(ValueError, match="env seed"):
        resume_seed([0, 1], 1, 2)  # env 0 would reuse seed 1
