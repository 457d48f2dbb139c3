"""ClipReward on the real ViT-B-32 architecture with random weights, loaded from a local checkpoint file: shapes, the
VLM-RM formula against numpy, batching, the embedding cache, preprocessing against open_clip's own PIL transform,
provenance, refusals with one-line messages, and no network access."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from robot_rl.rewards.clip import ClipReward, ClipRewardError

GOAL = ["a robot arm opening a drawer", "an open drawer"]
BASELINE = "a robot arm"


def _refuse_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("ClipReward tried to reach the network")


def forbid_network(mp: pytest.MonkeyPatch) -> None:
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setattr(socket.socket, "connect", _refuse_network)
    mp.setattr(socket.socket, "connect_ex", _refuse_network)
    mp.setattr(socket, "create_connection", _refuse_network)
    mp.setattr(socket, "getaddrinfo", _refuse_network)


def frames(n: int, seed: int = 0, h: int = 64, w: int = 64) -> np.ndarray:
    """Random uint8 frames with some smooth structure (so resizing has something to interpolate)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    for k in range(n):
        if k % 2:
            wave = (np.sin(xx / (3.0 + k) + yy / 5.0) + 1) * 127.5
            out[k] = np.stack([wave, wave[::-1], wave.T[:h, :w] if h == w else wave], axis=-1).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path_factory.mktemp("clip") / "vit_b_32_random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def reward(checkpoint: Path) -> Iterator[ClipReward]:
    """Built, and used by every test that takes it, with sockets refused and HF_HUB_OFFLINE=1."""
    with pytest.MonkeyPatch.context() as mp:
        forbid_network(mp)
        yield ClipReward(checkpoint, "ViT-B-32", goal=GOAL, baseline=BASELINE, alpha=0.5, batch_size=2)


def one_line(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and len(message) < 400, message
    return message


# -- rewards -------------------------------------------------------------------------------------------------------


def test_shapes_and_dtypes(reward: ClipReward) -> None:
    f = frames(2)
    r = reward(f)
    assert r.shape == (2,) and r.dtype == np.float32 and np.isfinite(r).all()
    x = reward.embed_images(f)
    assert x.shape == (2, 512) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert reward(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        reward(f.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        reward(f[0])


def test_goal_and_baseline_are_means_of_normalized_text_embeddings(reward: ClipReward) -> None:
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.inference_mode():
        emb = reward.model.encode_text(tokenizer([*GOAL, BASELINE]))
    emb = (emb / emb.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(reward.goal_embedding, emb[:2].mean(0), atol=1e-5)
    assert reward.baseline_embedding is not None
    np.testing.assert_allclose(reward.baseline_embedding, emb[2], atol=1e-5)


def vlm_rm(x: np.ndarray, g: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """R = 1 - 1/2 ||(x - g) P||^2, P = alpha d d^T / ||d||^2 + (1 - alpha) I, d = g - b; in float64."""
    x, g, b = (v.astype(np.float64) for v in (x, g, b))
    d = g - b
    proj = alpha * np.outer(d, d) / (d @ d) + (1 - alpha) * np.eye(len(d))
    return 1 - 0.5 * np.sum(((x - g) @ proj) ** 2, axis=1)


def test_projection_matches_numpy(reward: ClipReward) -> None:
    f = frames(2)
    x = reward.embed_images(f)
    g, b = reward.goal_embedding, reward.baseline_embedding
    assert b is not None
    np.testing.assert_allclose(reward(f), vlm_rm(x, g, b, 0.5), atol=1e-5)
    for alpha in (0.0, 0.25, 1.0):
        np.testing.assert_allclose(reward.with_prompts(GOAL, BASELINE, alpha)(f), vlm_rm(x, g, b, alpha), atol=1e-5)


def test_alpha_zero_is_the_unprojected_distance(reward: ClipReward) -> None:
    f = frames(2)
    x, g = reward.embed_images(f).astype(np.float64), reward.goal_embedding.astype(np.float64)
    r0 = reward.with_prompts(GOAL, BASELINE, alpha=0.0)(f)
    np.testing.assert_allclose(r0, 1 - 0.5 * np.sum((x - g) ** 2, axis=1), atol=1e-5)


def test_without_baseline_is_cosine_similarity(reward: ClipReward) -> None:
    f = frames(2)
    plain = reward.with_prompts(GOAL)
    x, g = reward.embed_images(f).astype(np.float64), plain.goal_embedding.astype(np.float64)
    np.testing.assert_allclose(plain(f), x @ g / np.linalg.norm(g), atol=1e-5)
    assert plain.baseline_embedding is None and plain.identity()["alpha"] is None


def test_bad_prompts_and_alpha_are_refused(reward: ClipReward) -> None:
    with pytest.raises(ValueError, match="alpha"):
        reward.with_prompts(GOAL, BASELINE, alpha=1.5)
    with pytest.raises(ValueError, match="goal"):
        reward.with_prompts([])
    with pytest.raises(ValueError, match="same point"):
        reward.with_prompts("a drawer", "a drawer")


def test_batched_equals_one_at_a_time(reward: ClipReward) -> None:
    f = frames(3, seed=1)  # batch_size 2: one batch of 2, one of 1
    reward.clear_cache()
    before = reward.encoded
    batched = reward(f)
    assert reward.encoded - before == 3
    reward.clear_cache()
    single = np.concatenate([reward(f[i:i + 1]) for i in range(len(f))])
    assert reward.encoded - before == 6
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_repeated_frames_are_encoded_once(reward: ClipReward, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    encode = reward.model.encode_image

    def counting(images: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(int(images.shape[0]))
        return encode(images, *args, **kwargs)

    monkeypatch.setattr(reward.model, "encode_image", counting)
    reward.clear_cache()
    a, b = frames(2, seed=2)
    still = np.stack([a, b, a, a, b])  # a robot standing still repeats frames
    before = reward.encoded
    r = reward(still)
    assert sum(seen) == 2 and reward.encoded - before == 2
    assert r[0] == r[2] == r[3] and r[1] == r[4] and r[0] != r[1]
    np.testing.assert_array_equal(reward(np.stack([b, a])), r[[1, 0]])  # cached: nothing new encoded
    reward.with_prompts("a closed drawer")(still)  # other prompts share the image cache
    assert sum(seen) == 2


def test_preprocessing_matches_open_clip_pil_transform(reward: ClipReward) -> None:
    cfg = PreprocessCfg(**reward.model.visual.preprocess_cfg)
    pil_transform = image_transform_v2(cfg, is_train=False)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    for h, w in ((64, 64), (48, 80), (250, 230)):  # upsample, non-square (crop), downsample
        f = frames(4, seed=h, h=h, w=w)
        ours = reward.preprocess(f)
        theirs = torch.stack([pil_transform(Image.fromarray(frame)) for frame in f])
        assert ours.shape == theirs.shape == (4, 3, 224, 224) and ours.dtype == torch.float32
        levels = ((ours - theirs).abs() * std * 255).round()  # difference in uint8 levels
        assert levels.max() <= 2, (h, w, levels.max())
        assert (levels > 0).float().mean() < 0.02, (h, w, (levels > 0).float().mean())


# -- provenance ----------------------------------------------------------------------------------------------------


def test_identity(reward: ClipReward, checkpoint: Path) -> None:
    ident = reward.identity()
    assert json.loads(json.dumps(ident)) == ident
    assert ident["model"] == "ViT-B-32" and ident["checkpoint"] == str(checkpoint.resolve())
    assert ident["checkpoint_bytes"] == checkpoint.stat().st_size
    assert ident["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert ident["goal"] == GOAL and ident["baseline"] == [BASELINE] and ident["alpha"] == 0.5
    assert ident["preprocess"]["size"] == [224, 224]
    other = reward.with_prompts("a closed drawer", BASELINE, alpha=0.3).identity()
    assert other["checkpoint_sha256"] == ident["checkpoint_sha256"] and other["alpha"] == 0.3


# -- no network ----------------------------------------------------------------------------------------------------


def test_no_network(reward: ClipReward) -> None:
    """``reward`` was built with sockets refused; here text and images are encoded under the same refusal."""
    with pytest.MonkeyPatch.context() as mp:
        forbid_network(mp)
        with pytest.raises(AssertionError, match="network"):
            socket.create_connection(("127.0.0.1", 9))
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        other = reward.with_prompts(["a new prompt never embedded before"], "another one")
        assert other(frames(1, seed=9)).shape == (1,)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the bundled BPE vocabulary, a file inside the package
    assert isinstance(tokenizer, SimpleTokenizer)
    assert Path(open_clip.tokenizer.default_bpe()).is_file()
    assert Path(open_clip.tokenizer.default_bpe()).is_relative_to(Path(open_clip.__file__).parent)


# -- refusals ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "local-dir:/tmp"])
def test_remote_model_names_are_refused(name: str, checkpoint: Path) -> None:
    with pytest.raises(ClipRewardError) as e:
        ClipReward(checkpoint, name, goal="x")
    assert "never downloads" in one_line(e)


def test_hub_tokenizer_models_are_refused(checkpoint: Path) -> None:
    with pytest.raises(ClipRewardError) as e:
        ClipReward(checkpoint, "ViT-B-16-SigLIP", goal="x")
    assert "Hugging Face" in one_line(e)
    with pytest.raises(ClipRewardError, match="not an open_clip architecture"):
        ClipReward(checkpoint, "ViT-Nonexistent", goal="x")


@pytest.mark.parametrize("name", ["hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "openai", "/no/such/clip.pt"])
def test_missing_or_remote_checkpoints_are_refused(name: str) -> None:
    with pytest.raises(ClipRewardError) as e:
        ClipReward(name, goal="x")
    message = one_line(e)
    assert name in message and ("no such file" in message or "remote" in message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(checkpoint: Path) -> None:
    with pytest.raises(ValueError) as e:
        ClipReward(checkpoint, goal="x", device="cuda")
    assert "no CUDA device" in one_line(e)


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ClipRewardError) as e:
        ClipReward(path, goal="x")
    message = one_line(e)
    assert str(path) in message and "corrupt" in message


class NotAWeight:
    pass


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"thing": NotAWeight()}, path)
    with pytest.raises(ClipRewardError) as e:
        ClipReward(path, goal="x")
    assert str(path) in one_line(e) and "NotAWeight" in one_line(e)


def test_checkpoint_of_another_architecture_is_refused(checkpoint: Path) -> None:
    with pytest.raises(ClipRewardError) as e:  # ViT-B-32 weights for the ViT-S-32-alt architecture
        ClipReward(checkpoint, "ViT-S-32-alt", goal="x")
    message = one_line(e)
    assert str(checkpoint.resolve()) in message and "not a ViT-S-32-alt checkpoint" in message
    assert "unexpected keys" in message and "shape mismatches" in message


class OpenAIRelease(torch.nn.Module):
    """Stands in for OpenAI's TorchScript release file, whose state dict carries ``input_resolution``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("input_resolution", torch.tensor(224))
        self.proj = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@pytest.mark.filterwarnings("ignore:`torch.jit")  # TorchScript is deprecated; OpenAI's release files use it
def test_openai_release_needs_quickgelu(tmp_path: Path) -> None:
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(OpenAIRelease()), str(path))
    with pytest.raises(ClipRewardError) as e:
        ClipReward(path, "ViT-B-32", goal="x")
    assert "QuickGELU" in one_line(e) and "model='ViT-B-32-quickgelu'" in one_line(e)


# -- other checkpoint formats (small model) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return open_clip.create_model("ViT-S-32-alt", pretrained=None).state_dict()


@pytest.mark.parametrize("fmt", ["training", "safetensors"])
def test_training_checkpoint_and_safetensors_load(fmt: str, small_state: dict[str, torch.Tensor],
                                                  tmp_path: Path) -> None:
    if fmt == "training":  # open_clip's training checkpoint: epoch, optimizer, DDP "module." prefixes
        path = tmp_path / "epoch_1.pt"
        torch.save({"epoch": 1, "name": "run", "state_dict": {f"module.{k}": v for k, v in small_state.items()}},
                   path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in small_state.items()}, path)
    r = ClipReward(path, "ViT-S-32-alt", goal="a drawer")
    loaded = r.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in small_state.items())
    assert r(frames(1)).shape == (1,)


# -- precision ---------------------------------------------------------------------------------------------------------

BF16_EMBEDDING_TOL = 1e-2
"""Max |bf16 - fp32| of a normalized image embedding's entries (measured on this model: 1.4e-3)."""
BF16_REWARD_TOL = 5e-3
"""Max |bf16 - fp32| of a reward (measured on this model: 3e-4)."""


def test_bf16_matches_fp32_within_the_stated_tolerance(checkpoint: Path) -> None:
    """bf16 autocast against exact fp32, on CPU autocast: embeddings and rewards agree within the
    tolerances above, and every two frames whose fp32 rewards differ by more than 1e-3 (3x the measured bf16 error)
    keep their order."""
    batch = frames(8, seed=3, h=96, w=96)
    exact = ClipReward(checkpoint, "ViT-B-32", goal=GOAL, baseline=BASELINE, precision="fp32", batch_size=8)
    fast = ClipReward(checkpoint, "ViT-B-32", goal=GOAL, baseline=BASELINE, precision="bf16", batch_size=8)
    assert exact.precision == "fp32" and fast.precision == "bf16" and fast.identity()["precision"] == "bf16"
    e32, e16 = exact.embed_images(batch), fast.embed_images(batch)
    assert e16.dtype == np.float32 and np.abs(e16 - e32).max() < BF16_EMBEDDING_TOL
    assert (e16 * e32).sum(axis=1).min() > 0.999
    assert 0 < np.abs(e16 - e32).max()  # bf16 really ran: not bit-identical
    r32, r16 = exact(batch), fast(batch)
    assert r16.dtype == np.float32 and np.abs(r16 - r32).max() < BF16_REWARD_TOL
    gap = r32[:, None] - r32[None, :]
    clear = np.abs(gap) > 1e-3
    assert clear.sum() >= 20  # most of the 56 ordered pairs: the case is a real ranking test
    assert (np.sign(r16[:, None] - r16[None, :])[clear] == np.sign(gap)[clear]).all()
    assert (np.argsort(-r16)[:3] == np.argsort(-r32)[:3]).all()


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("tf32", torch.float32),
                                              ("bf16", torch.bfloat16)])
def test_precision_reaches_the_image_encoder(reward: ClipReward, precision: str, dtype: torch.dtype) -> None:
    """The dtype the vision tower computes in, seen from inside; embeddings come back float32 either way. On the CPU
    ``tf32`` is plain fp32 (TF32 is a CUDA switch)."""
    seen: list[tuple[torch.dtype, bool]] = []
    hook = reward.model.visual.register_forward_hook(
        lambda module, args, output: seen.append((output.dtype, torch.is_autocast_enabled("cpu"))))
    other = reward.with_prompts(GOAL, BASELINE)
    encoder = other._encoder
    saved = encoder.precision
    try:
        encoder.precision = precision  # type: ignore[assignment]
        other.clear_cache()
        emb = other.embed_images(frames(2, seed=11))
    finally:
        encoder.precision = saved
        hook.remove()
        other.clear_cache()
    assert seen == [(dtype, precision == "bf16")]
    assert emb.dtype == np.float32 and not torch.is_autocast_enabled("cpu")


def test_precision_defaults_and_refusals(checkpoint: Path, reward: ClipReward) -> None:
    from robot_rl.rewards.clip.reward import CUDA_DEFAULT_PRECISION
    from robot_rl.rewards.precision import resolve_precision

    assert reward.precision == "fp32" and reward.identity()["precision"] == "fp32"  # CPU default: exact
    assert CUDA_DEFAULT_PRECISION == "tf32" and resolve_precision(None, "cuda", CUDA_DEFAULT_PRECISION) == "tf32"
    assert resolve_precision("auto", "cpu", "bf16") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16"):
        ClipReward(checkpoint, "ViT-B-32", goal="x", precision="fp16")
