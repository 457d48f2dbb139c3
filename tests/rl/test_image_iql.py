"""Image observations for IQL / BC: the shared encoder, augmentation, frames from datasets, train/resume/act."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import robot_rl.rl.image_iql as image_iql
from robot_rl.cli.main import main
from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.data import Dataset, DatasetError, DatasetWriter, Episode
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint
from robot_rl.nn.networks import ConvEncoder
from robot_rl.rl.image_data import DatasetFrames, next_frame_rows, step_frames
from robot_rl.rl.image_iql import EncoderConfig, ImageBC, ImageIQL
from robot_rl.rl.iql import IQL, IQLConfig
from robot_rl.rl.policy import load_policy
from robot_rl.rl.train import TrainConfig, train
from tests.rl.conftest import best_action

SIZE = 24
SMALL = IQLConfig(hidden=(32, 32), batch_size=32)
ENCODER = EncoderConfig(feature_dim=16, channels=8)
SPEC = EnvSpec(name="toy/pixel-v0", observations={"state": ArraySpec((2,)), "image/cam": ArraySpec((SIZE, SIZE, 3))},
               action=ActionSpec(2, "ee_delta", scale=(1.0, 1.0), offset=(0.0, 0.0)), max_episode_steps=4,
               cameras=("cam",))


def draw(states: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 ``[T, size, size, 3]``: a bright 3x3 square whose position encodes the state in [-1, 1]^2."""
    images = np.zeros((len(states), size, size, 3), dtype=np.uint8)
    pos = np.round((np.clip(states, -1, 1) + 1) / 2 * (size - 3)).astype(int)
    for i, (x, y) in enumerate(pos):
        images[i, y:y + 3, x:x + 3] = 255
    return images


def write_pixels(path: Path, episodes: int = 40, length: int = 4, seed: int = 0, good: float = 0.3) -> Path:
    """The conftest bandit (a fraction ``good`` of best actions, the rest random; reward = closeness to the best
    action), with a frame of camera ``cam`` at every step."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, SPEC, source="test", image_compression=None) as w:
        for _ in range(episodes):
            s = rng.uniform(-1, 1, (length + 1, 2)).astype(np.float32)
            is_good = rng.random(length) < good
            a = np.where(is_good[:, None], best_action(s[:-1]), rng.uniform(-1, 1, (length, 2))).astype(np.float32)
            r = (1.0 - np.linalg.norm(a - best_action(s[:-1]), axis=1)).astype(np.float32)
            dones = np.zeros(length, bool)
            dones[-1] = True
            w.add_episode(Episode(states=s[:-1], actions=a, rewards=r, next_states=s[1:], terminals=dones.copy(),
                                  dones=dones, images={"cam": draw(s[:-1])}))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Small convs run several times faster on one thread than on two cores that other work shares."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pixel_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pixels(tmp_path_factory.mktemp("pixels") / "pixels.h5")


@pytest.fixture(scope="module")
def metaworld_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 episodes of 6 steps, frames of camera ``corner`` (32x32) stored every 3rd step, sim states every step."""
    out = tmp_path_factory.mktemp("mw") / "mw.h5"
    assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "2", "--num-envs", "1",
                 "--episode-length", "6", "--camera", "corner", "--image-every", "3", "--image-size", "32",
                 "--out", str(out)]) == 0
    return out


def batch(n: int = 8, size: int = SIZE, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, 2, generator=g), "next_obs": torch.randn(n, 2, generator=g),
            "actions": torch.rand(n, 2, generator=g) * 2 - 1, "rewards": torch.randn(n, generator=g),
            "terminals": torch.rand(n, generator=g) < 0.2,
            "image": torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g),
            "next_image": torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)}


def config(dataset: Path, **kw) -> TrainConfig:
    base = dict(dataset=str(dataset), obs="image", steps=40, log_every=10, checkpoint_every=20, device="cpu",
                threads=1, iql=SMALL, encoder=ENCODER)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("use_state", [True, False])
def test_shapes_and_metrics_match_state_iql(use_state):
    torch.manual_seed(0)
    agent = ImageIQL(2, 2, SIZE, SMALL, ENCODER, use_state=use_state)
    assert agent.encoder.out_dim == ENCODER.feature_dim + (2 if use_state else 0)
    assert agent.encoder(batch()["image"], batch()["obs"]).shape == (8, agent.encoder.out_dim)
    metrics = agent.update(batch())
    state_metrics = IQL(2, 2, SMALL).update({k: v for k, v in batch().items() if "image" not in k})
    assert metrics.keys() == state_metrics.keys()
    assert all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in metrics.values())
    bc = ImageBC(2, 2, SIZE, SMALL, ENCODER, use_state=use_state)
    assert set(bc.update(batch())) == {"actor_loss"}


def test_one_encoder_is_shared_by_critics_value_and_actor():
    agent = ImageIQL(2, 2, SIZE, SMALL, ENCODER)
    encoders = [m for m in agent.modules() if isinstance(m, ConvEncoder)]
    assert encoders == [agent.encoder.conv, agent.target_encoder.conv]  # the online one and its Polyak copy
    assert not any(p.requires_grad for p in agent.target_encoder.parameters())
    optimized = [id(p) for group in agent.optimizer.param_groups for p in group["params"]]
    assert len(optimized) == len(set(optimized))
    assert {id(p) for p in agent.encoder.parameters()} <= set(optimized)
    # the heads take encoder features, not images
    assert agent.actor.net[0].in_features == agent.value.net[0].in_features == agent.encoder.out_dim


def test_actor_loss_does_not_reach_the_encoder_but_value_and_critic_losses_do():
    torch.manual_seed(0)
    agent = ImageIQL(2, 2, SIZE, SMALL, ENCODER)
    out = agent.losses(batch())
    out["actor_loss"].backward(retain_graph=True)
    assert all(p.grad is None for p in agent.encoder.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())
    for key in ("value_loss", "critic_loss"):
        agent.zero_grad()
        out[key].backward(retain_graph=True)
        assert agent.encoder.conv.conv[0].weight.grad.abs().sum() > 0, key
    before = [p.clone() for p in agent.target_encoder.parameters()]
    agent.update(batch())
    moved = [not torch.equal(a, b) for a, b in zip(before, agent.target_encoder.parameters(), strict=True)]
    assert all(moved)  # Polyak-averaged towards the online encoder


def test_random_shift_in_training_only(pixel_dataset, tmp_path, monkeypatch):
    torch.manual_seed(0)
    agent = ImageIQL(2, 2, SIZE, SMALL, ENCODER)
    b = batch()
    agent.train()
    assert agent.losses(b)["critic_loss"] != agent.losses(b)["critic_loss"]  # fresh shifts each call
    agent.eval()
    assert agent.losses(b)["critic_loss"] == agent.losses(b)["critic_loss"]
    train(config(pixel_dataset, steps=10, checkpoint_every=10), tmp_path)
    policy = load_policy(tmp_path)

    def no_shift(*args, **kwargs):
        raise AssertionError("acting must not augment")

    monkeypatch.setattr(image_iql, "random_shift", no_shift)
    obs = {"state": torch.zeros(3, 2), "image/cam": torch.from_numpy(draw(np.zeros((3, 2))))}
    assert torch.equal(policy(obs), policy(obs))


def test_image_iql_trains_checkpoints_resumes_and_acts(pixel_dataset, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    agent_a, data, _ = train(config(pixel_dataset), straight)
    assert isinstance(agent_a, ImageIQL) and data.frames.shape == (160, SIZE, SIZE, 3)
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint_paths(straight)[0], resumed / "checkpoints")  # killed right after step 20
    agent_b, _, _ = train(config(pixel_dataset), resumed, resume=True)
    for (name, a), (_, b) in zip(agent_a.state_dict().items(), agent_b.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    saved = yaml.safe_load((straight / "config.yaml").read_text())
    assert (saved["obs"], saved["camera"], saved["image_size"]) == ("image", "cam", SIZE)  # resolved from the data
    assert load_checkpoint(straight)[0]["config"]["image_size"] == SIZE
    policy = load_policy(straight)
    assert (policy.camera, policy.image_size) == ("cam", SIZE)
    for (name, p), q in zip(policy.encoder.state_dict().items(), agent_a.encoder.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    states = np.random.default_rng(1).uniform(-1, 1, (5, 2)).astype(np.float32)
    action = policy({"state": torch.from_numpy(states), "image/cam": torch.from_numpy(draw(states))})
    assert action.shape == (5, 2) and action.abs().max() <= 1
    with pytest.raises(ValueError, match=r"needs obs\['image/cam'\] uint8 \[N, 24, 24, 3\], got none"):
        policy({"state": torch.from_numpy(states)})


def test_image_only_bc_learns_the_action_from_pixels(tmp_path):
    # Expert data: the action is a function of the bright square's position, so pixels alone must do.
    ds = write_pixels(tmp_path / "expert.h5", episodes=100, good=1.0)
    cfg = config(ds, algo="bc", obs="image_only", steps=300, log_every=100, checkpoint_every=300,
                 iql=dataclasses.replace(SMALL, batch_size=64, hidden=(64, 64), cosine_actor_schedule=False))
    agent, _, _ = train(cfg, tmp_path / "bc")
    assert isinstance(agent, ImageBC) and not agent.encoder.use_state
    policy = load_policy(tmp_path / "bc")
    states = np.random.default_rng(2).uniform(-1, 1, (256, 2)).astype(np.float32)
    act = policy({"state": torch.zeros(256, 2), "image/cam": torch.from_numpy(draw(states))}).numpy()
    err = np.linalg.norm(act - best_action(states), axis=1).mean()
    baseline = np.linalg.norm(best_action(states), axis=1).mean()  # acting 0 everywhere
    assert err < 0.5 * baseline, (err, baseline)


def test_next_frame_rows_stay_inside_each_episode():
    rows = next_frame_rows(np.array([0, 0, 0, 1, 1, 2]))
    np.testing.assert_array_equal(rows, [1, 2, 2, 4, 4, 5])


def test_stored_frames_of_the_wrong_size_without_sim_states_say_what(pixel_dataset):
    with Dataset(pixel_dataset) as ds, pytest.raises(DatasetError, match=r"demo_0: .*32x32 frame of camera 'cam'.*"
                                                                         r"stores 24x24 frames.*no sim_state"):
        step_frames(ds, image_size=32)


def test_frames_rendered_from_sim_states_match_stored_and_live_frames(metaworld_dataset):
    calls = []
    with Dataset(metaworld_dataset) as ds:
        got = step_frames(ds, progress=lambda done, total: calls.append((done, total)))  # stored every 3rd: render
        eps = [ds.load_episode(n, images=True) for n in ds.episode_names]
    assert (got.camera, got.image_size, got.rendered) == ("corner", 64, 12) and got.frames.shape == (12, 64, 64, 3)
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    with Dataset(metaworld_dataset) as ds:
        small = step_frames(ds, image_size=32)  # at the stored size: stored every 3rd step, the rest rendered
        source = DatasetFrames(ds, size=(32, 32))
        rerendered = [source.render(ep.sim_states[::3]) for ep in eps]
        source.close()
    assert small.rendered == 8
    for e, ep in enumerate(eps):  # rendered frames at the stored steps are the stored frames
        np.testing.assert_array_equal(small.frames[e * 6:(e + 1) * 6:3], ep.images["corner"])
        np.testing.assert_array_equal(rerendered[e], ep.images["corner"])
    # ... and what the env shows a policy at act time
    from robot_rl.envs import make_env

    env = make_env("metaworld/drawer-open-v3", cameras=("corner",), image_size=(32, 32), episode_length=6)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(info["sim_state"], "corner", 32, 32).numpy(), obs["image/corner"].numpy())
    env.close()


def test_train_cli_on_images_then_eval_makes_the_env_with_the_camera(metaworld_dataset, tmp_path, monkeypatch):
    import robot_rl.envs as envs

    made = []
    real = envs.make_env

    def short_env(name, **kw):
        made.append(kw)
        return real(name, **{**kw, "episode_length": 4})

    monkeypatch.setattr(envs, "make_env", short_env)
    out = tmp_path / "run"
    small = ["iql.batch_size=8", "iql.hidden=[16]", "log_every=2", "encoder.channels=4", "threads=1"]
    assert main(["train", "--dataset", str(metaworld_dataset), "--obs", "image", "--image-size", "32", "--steps", "4",
                 "--out", str(out), "--device", "cpu", "--eval-episodes", "1",
                 *[arg for kv in small for arg in ("--set", kv)]]) == 0
    assert made[-1]["cameras"] == ("corner",) and made[-1]["image_size"] == (32, 32)
    assert (out / "eval.json").exists()
