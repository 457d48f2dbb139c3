"""K updates per call (rl/graphed.py) equal K eager updates; checkpoints stay portable; algorithms plug in.

On the CPU the graph path runs its recorded body without capture: the device-side schedule, the warm-up undo,
the metric sums and the Polyak step are checked here; CUDA capture itself is checked by the gpu-marked tests.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil
from collections.abc import Iterator

import pytest
import torch

from robot_rl.data import TransitionSampler
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint
from robot_rl.rl import algorithms
from robot_rl.rl.agent import optimizer_state
from robot_rl.rl.bc import BC
from robot_rl.rl.calql import CalQL, CalQLConfig
from robot_rl.rl.graphed import UpdateRunner, lr_table
from robot_rl.rl.image_iql import EncoderConfig, ImageIQL
from robot_rl.rl.iql import IQL, IQLConfig
from robot_rl.rl.policy import load_policy
from robot_rl.rl.rlpd import RLPD, RLPDConfig
from robot_rl.rl.train import TrainConfig, train

OBS, ACT = 5, 3


def _data(n: int = 2000, image: int | None = None, mc_return: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    data = {"obs": torch.randn(n, OBS, generator=g), "actions": torch.rand(n, ACT, generator=g) * 2 - 1,
            "rewards": torch.randn(n, generator=g), "next_obs": torch.randn(n, OBS, generator=g),
            "terminals": torch.rand(n, generator=g) < 0.05}
    if mc_return:  # Cal-QL's batches
        data["mc_return"] = torch.randn(n, generator=g)
    if image:
        data["image"] = torch.randint(0, 255, (n, image, image, 3), generator=g, dtype=torch.uint8)
        data["next_image"] = torch.randint(0, 255, (n, image, image, 3), generator=g, dtype=torch.uint8)
    return data


def _pair(make, device: torch.device, data: dict[str, torch.Tensor], path: str, k: int, steps: int):
    """Two copies of one agent: one for eager ``update`` calls, one inside a runner on ``path``."""
    torch.manual_seed(0)
    eager = make().to(device)
    other = copy.deepcopy(eager)
    s_eager = TransitionSampler(data, device, seed=3)
    s_other = TransitionSampler(data, device, seed=3)
    runner = UpdateRunner(other, lambda: s_other.sample(64), [s_other.generator], k, path, schedule_length=steps + 1)
    return eager, s_eager, other, runner


def _assert_same(a: torch.nn.Module, b: torch.nn.Module, exact: bool) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if exact:
            assert torch.equal(p, q), name
        else:
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-5), name


class _DefaultRng:
    """Separate default-generator streams for the two sides of a comparison, both starting from one state."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        start = self._get()
        self.states = {"eager": start, "other": start.clone()}

    def _get(self) -> torch.Tensor:
        return torch.cuda.get_rng_state() if self.cuda else torch.get_rng_state()

    def _set(self, state: torch.Tensor) -> None:
        torch.cuda.set_rng_state(state) if self.cuda else torch.set_rng_state(state)

    @contextlib.contextmanager
    def side(self, name: str) -> Iterator[None]:
        self._set(self.states[name])
        yield
        self.states[name] = self._get()


AGENTS = {
    "iql": lambda: IQL(OBS, ACT, IQLConfig(hidden=(32, 32), steps=40)),
    "iql-dropout": lambda: IQL(OBS, ACT, IQLConfig(hidden=(32, 32), steps=40, actor_dropout=0.1)),
    "bc": lambda: BC(OBS, ACT, IQLConfig(hidden=(32, 32), steps=40)),
    "rlpd": lambda: RLPD(OBS, ACT, RLPDConfig(hidden=(32, 32), critics=3, utd=1)),  # actor noise, subset: default RNG
    "rlpd-utd2": lambda: RLPD(OBS, ACT, RLPDConfig(hidden=(32, 32), critics=3, utd=2, batch_size=32)),
    "calql": lambda: CalQL(OBS, ACT, CalQLConfig(hidden=(32, 32), actions=4)),  # random and policy actions: default RNG
}


def _run_compare(device: torch.device, name: str, path: str, k: int, n_calls: list[int], exact: bool,
                 image: int | None = None) -> None:
    steps = sum(n_calls)
    make = AGENTS.get(name) or (lambda: ImageIQL(OBS, ACT, image or 16, IQLConfig(hidden=(32, 32), steps=steps),
                                                 EncoderConfig(feature_dim=8, channels=4)))
    eager, s_eager, other, runner = _pair(make, device, _data(image=image, mc_return=name == "calql"), path,
                                             k, steps)
    sums_eager: dict[str, torch.Tensor] = {}
    sums_other: dict[str, torch.Tensor] = {}
    rng = _DefaultRng(device)  # dropout and augmentation draw from the default generator: one stream per side
    for n in n_calls:
        with rng.side("eager"):
            for _ in range(n):
                for key, value in eager.update(s_eager.sample(64)).items():
                    sums_eager[key] = sums_eager.get(key, 0) + value
        with rng.side("other"):
            for key, value in runner.run(n).items():
                sums_other[key] = sums_other.get(key, 0) + value
        _assert_same(eager, other, exact)
        assert eager.scheduler.last_epoch == other.scheduler.last_epoch
        for group_e, group_o in zip(eager.optimizer.param_groups, other.optimizer.param_groups, strict=True):
            assert float(group_e["lr"]) == pytest.approx(float(group_o["lr"]), rel=1e-6)
    for key in sums_eager:
        assert torch.allclose(sums_eager[key], sums_other[key], rtol=1e-4, atol=1e-5), key


@pytest.mark.parametrize("name", ["iql", "iql-dropout", "bc", "rlpd-utd2", "calql"])
def test_eager_runner_is_bit_identical_to_update_calls(name):
    _run_compare(torch.device("cpu"), name, "eager", 1, [1, 5, 3], exact=True)


@pytest.mark.parametrize("name", ["iql", "iql-dropout", "bc", "rlpd", "calql"])
def test_graph_body_on_cpu_equals_eager_updates(name):
    """The body the graph records (device-side schedule, warm-up undone, remainder graph) equals eager updates."""
    _run_compare(torch.device("cpu"), name, "cuda-graph", 4, [8, 3, 4, 1], exact=False)


def test_graph_body_on_cpu_equals_eager_for_image_iql():
    _run_compare(torch.device("cpu"), "image", "cuda-graph", 2, [4, 1], exact=False, image=16)


def test_lr_table_follows_the_scheduler():
    agent = IQL(OBS, ACT, IQLConfig(hidden=(8,), steps=10))
    table = lr_table(agent.scheduler, 13, torch.device("cpu"))
    for n in range(13):
        for g, group in enumerate(agent.optimizer.param_groups):
            assert table[g, n].item() == pytest.approx(group["lr"], rel=1e-6), (n, g)
        agent.optimizer.step()
        agent.scheduler.step()
    assert table[2, 10].item() == 0.0 and table[0, 12].item() == pytest.approx(3e-4)


def test_checkpoint_state_of_a_graphed_optimizer_is_portable():
    agent = IQL(OBS, ACT, IQLConfig(hidden=(8,), steps=10))
    sampler = TransitionSampler(_data(200), "cpu", seed=0)
    runner = UpdateRunner(agent, lambda: sampler.sample(16), [sampler.generator], 2, "cuda-graph", 11)
    runner.run(3)
    assert isinstance(agent.optimizer.param_groups[0]["lr"], torch.Tensor)
    state = optimizer_state(agent.optimizer)
    assert all(isinstance(g["lr"], float) and not g["capturable"] for g in state["param_groups"])
    fresh = IQL(OBS, ACT, IQLConfig(hidden=(8,), steps=10))
    fresh.optimizer.load_state_dict(state)
    fresh.scheduler.load_state_dict(agent.scheduler.state_dict())
    assert fresh.scheduler.last_epoch == 3
    assert fresh.optimizer.param_groups[2]["lr"] == pytest.approx(float(agent.optimizer.param_groups[2]["lr"]))


class _MedianBC(BC):
    """A toy learner for the registry test: BC with an L1 likelihood surrogate (one file in real life)."""

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mean, _ = self.actor(batch["obs"])
        return {"actor_loss": (mean - batch["actions"]).abs().mean()}


def test_a_new_algorithm_is_one_class_and_one_registry_line(bandit_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(algorithms.ALGORITHMS, "median-bc", algorithms.Algorithm("L1 behaviour cloning", _MedianBC))
    cfg = TrainConfig(dataset=str(bandit_dataset), algo="median-bc", steps=400, log_every=100, checkpoint_every=400,
                      iql=IQLConfig(hidden=(32, 32), batch_size=64))
    agent, _, _ = train(cfg, tmp_path / "run")
    assert isinstance(agent, _MedianBC)
    losses = [json.loads(line)["actor_loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0], losses
    payload, _ = load_checkpoint(tmp_path / "run")
    assert payload["algo"] == "median-bc"
    policy = load_policy(tmp_path / "run")
    assert policy({"state": torch.zeros(3, 2)}).shape == (3, 2)
    with pytest.raises(ValueError, match="unknown algo 'nope'.*median-bc"):
        TrainConfig(dataset="x.h5", algo="nope")


def test_train_resume_stays_bit_identical_across_call_boundaries(bandit_dataset, tmp_path):
    """Log and checkpoint boundaries cut calls short; a run resumed from its step-70 checkpoint matches one
    straight run."""
    base = TrainConfig(dataset=str(bandit_dataset), steps=120, log_every=50, checkpoint_every=70, updates_per_call=8,
                       iql=IQLConfig(hidden=(32, 32), batch_size=64))
    a, _, _ = train(base, tmp_path / "a")
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint_paths(tmp_path / "a")[0], tmp_path / "b" / "checkpoints")
    b, _, _ = train(base, tmp_path / "b", resume=True)
    _assert_same(a, b, exact=True)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CUDA-graph capture)")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["iql", "iql-dropout", "bc", "rlpd", "calql"])
def test_cuda_graph_updates_equal_eager_updates(name):
    _run_compare(torch.device("cuda"), name, "cuda-graph", 8, [16, 5, 8, 1], exact=False)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_updates_equal_eager_for_image_iql():
    _run_compare(torch.device("cuda"), "image", "cuda-graph", 4, [8, 3], exact=False, image=24)


@pytest.mark.gpu
@needs_cuda
def test_cuda_train_graphed_matches_eager_and_resumes(bandit_dataset, tmp_path):
    base = TrainConfig(dataset=str(bandit_dataset), steps=300, log_every=100, checkpoint_every=150, device="cuda",
                       updates_per_call=16)
    graphed, _, _ = train(base, tmp_path / "g")
    eager, _, _ = train(dataclasses.replace(base, cuda_graphs=False), tmp_path / "e")
    _assert_same(graphed, eager, exact=False)
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint_paths(tmp_path / "g")[0], tmp_path / "r" / "checkpoints")
    cut, _, _ = train(base, tmp_path / "r", resume=True)
    _assert_same(graphed, cut, exact=False)


def _replay_compare(device: torch.device, path: str) -> None:
    """Fine-tuning's mixed batches (offline + a growing online replay) through the runner equal eager updates:
    the replay's fill is read on the device, so a graph keeps sampling what has been added since its capture."""
    from robot_rl.rl.finetune import OnlineReplay, mixed_batch

    torch.manual_seed(0)
    eager = AGENTS["iql"]().to(device)
    other = copy.deepcopy(eager)
    data = _data(400)
    sides = []
    for _ in range(2):
        offline = TransitionSampler(data, device, seed=5)
        replay = OnlineReplay(1000, OBS, ACT, device, seed=6)
        sides.append((offline, replay))
    (off_e, rep_e), (off_o, rep_o) = sides
    runner = UpdateRunner(other, lambda: mixed_batch(off_o, rep_o, 64, 48), [off_o.generator, rep_o.generator], 4,
                          path, schedule_length=41)
    new = _data(60)
    for start in (0, 20, 40):  # add transitions, then update: as finetune does each env step
        chunk = {k: v[start:start + 20].to(device) for k, v in new.items() if k in rep_e.data}
        rep_e.add(chunk)
        rep_o.add(chunk)
        for _ in range(9):
            eager.update(mixed_batch(off_e, rep_e, 64, 48))
        runner.run(9)
        _assert_same(eager, other, exact=False)


def test_graph_body_with_a_growing_replay_on_cpu():
    _replay_compare(torch.device("cpu"), "cuda-graph")


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_with_a_growing_replay():
    _replay_compare(torch.device("cuda"), "cuda-graph")
