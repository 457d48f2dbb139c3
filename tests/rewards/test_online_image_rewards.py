"""Online rewards from frames: an image reward model and CLIP label new transitions from the camera the
environment renders for them (``camera_input``), the frame before the step for the reward model and the frame
after it for CLIP, as relabeling reads them; a reset row's frame is the one the step ended in."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.core.reward_protocols import camera_input
from robot_rl.data import Dataset
from robot_rl.envs import make_env
from robot_rl.rewards.sources import ClipSource, LearnedReward, resolve_reward_source

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "drawer-open-tiny.h5"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("online-image")
    data = tmp / "drawer.h5"
    shutil.copy(SAMPLE, data)
    assert main(["label", str(data), "--pairs", "20", "--segment-length", "2"]) == 0
    run = tmp / "img-reward"
    assert main(["train-reward", str(data), "--out", str(run), "--obs", "image", "--steps", "5",
                 "--set", "image_size=32", "--set", "conv_strides=[2, 2, 1, 1]", "--set", "batch_size=8"]) == 0
    return data, run


def _step(camera: str, size: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], object]:
    env = make_env("metaworld/drawer-open-v3", num_envs=2, cameras=(camera,), image_size=(size, size))
    try:
        obs, _ = env.reset(seed=3)
        action = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (2, env.spec.action.dim)), dtype=torch.float32)
        res = env.step(action)
        frame = env.render(res.info["sim_state"][:1], camera, size, size)
    finally:
        env.close()
    return obs, action, dict(res.obs), (res, frame)


def test_an_image_reward_model_labels_online_from_the_frame_before_the_step(image_run: tuple[Path, Path]) -> None:
    data, run = image_run
    source = resolve_reward_source(f"reward-model:{run}", str(data))
    assert isinstance(source, LearnedReward)
    need = camera_input(source)
    assert need is not None and need[1] == 32
    with Dataset(data) as ds:
        assert need[0] in ds.spec.cameras
    obs, action, next_obs, (res, frame) = _step(*need)
    r = source(obs, action, next_obs, torch.zeros(2))
    expected = source.model.reward(obs["state"], action, obs[f"image/{need[0]}"])
    torch.testing.assert_close(r, expected)
    # the frame the env renders after a step is the one relabeling renders from that step's stored sim state
    np.testing.assert_array_equal(np.asarray(frame)[0], res.obs[f"image/{need[0]}"][0].numpy())
    # a state-only env is a one-line error naming the camera, not a silent state-only reward
    with pytest.raises(ValueError, match=f"reads frames of camera '{need[0]}'"):
        source({"state": obs["state"]}, action, next_obs, torch.zeros(2))


def test_a_state_reward_model_needs_no_camera(tmp_path: Path) -> None:
    from tests.rewards.conftest import write_reach

    data = write_reach(tmp_path / "reach.h5", episodes=8)
    assert main(["label", str(data), "--pairs", "20", "--segment-length", "10"]) == 0
    assert main(["train-reward", str(data), "--out", str(tmp_path / "r"), "--steps", "5", "--set",
                 "hidden=[16]"]) == 0
    assert camera_input(resolve_reward_source(f"reward-model:{tmp_path / 'r'}", str(data))) is None


def test_clip_labels_online_from_the_frame_after_the_step_and_follows_a_clip_relabel(tmp_path: Path) -> None:
    import open_clip

    data = tmp_path / "drawer.h5"
    shutil.copy(SAMPLE, data)
    checkpoint = tmp_path / "clip.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-S-32-alt", pretrained=None).state_dict(), checkpoint)  # random weights
    assert main(["relabel", str(data), "--source", f"clip:{checkpoint}", "--clip-model", "ViT-S-32-alt",
                 "--baseline", "a robot arm", "--image-size", "64", "--activate"]) == 0
    source = resolve_reward_source("dataset", str(data))  # fine-tuning on the CLIP rewards: CLIP, same settings
    assert isinstance(source, ClipSource) and camera_input(source) == (source.camera, 64)
    assert source.clip.model_name == "ViT-S-32-alt" and source.clip.baseline == ["a robot arm"]
    obs, action, next_obs, _ = _step(source.camera, 64)
    r = source(obs, action, next_obs, torch.zeros(2))
    frames = next_obs[f"image/{source.camera}"].numpy()
    np.testing.assert_allclose(r.numpy(), source.clip(frames), rtol=1e-6)
    assert r.shape == (2,) and torch.isfinite(r).all()
