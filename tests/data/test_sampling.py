"""Samplers: shapes, dtypes, device, segments inside episodes, determinism."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from robot_rl.data import Dataset, DatasetWriter, SegmentSampler, TransitionSampler
from tests.data.synthetic import ACTION_DIM, STATE_DIM, make_episode, make_spec

LENGTHS = [12, 3, 25, 7, 30, 5]


@functools.cache
def episode(index: int):
    return make_episode(index, length=LENGTHS[index], cameras=())


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "d.h5"
    with DatasetWriter(path, make_spec(), source="test") as w:
        for seed, length in enumerate(LENGTHS):
            w.add_episode(make_episode(seed, length=length, cameras=()))
    with Dataset(path) as ds:
        yield ds


def test_transition_sampler(dataset):
    tr = dataset.transitions()
    sampler = TransitionSampler(tr, device="cpu", seed=3)
    assert len(sampler) == sum(LENGTHS)
    batch = sampler.sample(64)
    assert batch["states"].shape == (64, STATE_DIM) and batch["states"].dtype == torch.float32
    assert batch["actions"].shape == (64, ACTION_DIM) and batch["rewards"].shape == (64,)
    assert batch["terminals"].dtype == torch.bool and batch["episode_index"].dtype == torch.int64
    assert all(v.device.type == "cpu" for v in batch.values())
    for row in range(64):  # every row is one real transition
        e, t = int(batch["episode_index"][row]), int(batch["step_index"][row])
        np.testing.assert_array_equal(batch["next_states"][row].numpy(), episode(e).next_states[t])
    again = TransitionSampler(tr, device="cpu", seed=3).sample(64)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    other = TransitionSampler(tr, device="cpu", seed=4).sample(64)
    assert not torch.equal(batch["step_index"], other["step_index"])
    with pytest.raises(ValueError, match="one common length"):
        TransitionSampler({"a": np.zeros(3), "b": np.zeros(4)})


def check_segments(seg, batch: int, length: int) -> None:
    assert seg.states.shape == (batch, length, STATE_DIM) and seg.states.dtype == torch.float32
    assert seg.actions.shape == (batch, length, ACTION_DIM) and seg.rewards.shape == (batch, length)
    assert seg.episode_index.shape == (batch,) and seg.start.shape == (batch,)
    assert seg.step_index.shape == (batch, length) and seg.flat_index.shape == (batch, length)
    steps = seg.start[:, None] + torch.arange(length)
    assert torch.equal(seg.step_index, steps)
    ends = torch.as_tensor(LENGTHS)[seg.episode_index]
    assert bool((seg.start >= 0).all()) and bool((seg.start + length <= ends).all())  # never crosses an episode end
    for row in range(batch):
        e, s = int(seg.episode_index[row]), int(seg.start[row])
        ep = episode(e)
        np.testing.assert_array_equal(seg.states[row].numpy(), ep.states[s:s + length])
        np.testing.assert_array_equal(seg.rewards[row].numpy(), ep.rewards[s:s + length])


def test_segment_sampler_from_dataset(dataset):
    sampler = SegmentSampler(dataset, length=10, device="cpu", seed=0)
    assert sampler.names == dataset.episode_names
    assert sampler.num_starts == sum(t - 10 + 1 for t in LENGTHS if t >= 10)
    seg = sampler.sample(200)
    check_segments(seg, 200, 10)
    assert set(seg.episode_index.tolist()) == {0, 2, 4}  # the episodes with at least 10 steps
    first, second = sampler.sample_pairs(300)
    check_segments(first, 300, 10)
    check_segments(second, 300, 10)
    assert bool((first.flat_index[:, 0] != second.flat_index[:, 0]).all())


def test_segment_sampler_inputs_and_determinism(dataset):
    episodes = [{"states": e.states, "actions": e.actions, "rewards": e.rewards}
                for e in map(episode, range(len(LENGTHS)))]
    from_list = SegmentSampler(episodes, length=4, seed=7).sample_pairs(50)
    from_flat = SegmentSampler(dataset.transitions(), length=4, seed=7).sample_pairs(50)
    from_ds = SegmentSampler(dataset, length=4, seed=7).sample_pairs(50)
    for a, b, c in zip(from_list, from_flat, from_ds, strict=True):
        check_segments(a, 50, 4)
        for field in ("states", "actions", "rewards", "episode_index", "start", "flat_index"):
            assert torch.equal(getattr(a, field), getattr(b, field))
            assert torch.equal(getattr(a, field), getattr(c, field))
    different = SegmentSampler(episodes, length=4, seed=8).sample(50)
    assert not torch.equal(different.flat_index, from_list[0].flat_index)
    one = SegmentSampler(episodes, length=1, seed=0).sample(10)
    check_segments(one, 10, 1)
    with pytest.raises(ValueError, match="no episode has 31 consecutive steps"):
        SegmentSampler(episodes, length=31)
    names = ["demo_4", "demo_0"]
    subset = SegmentSampler(dataset, length=12, names=names, reward_key="ground_truth").sample(20)
    assert set(subset.episode_index.tolist()) <= {0, 1}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_samplers_on_cuda(dataset):
    batch = TransitionSampler(dataset.transitions(), device="cuda", seed=0).sample(256)
    assert all(v.is_cuda for v in batch.values())
    first, second = SegmentSampler(dataset, length=5, device="cuda", seed=0).sample_pairs(64)
    assert first.states.is_cuda and second.step_index.is_cuda and first.states.shape == (64, 5, STATE_DIM)
