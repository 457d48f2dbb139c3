"""CLIP similarity rewards (VLM-RM) from local weights: frames in, one float reward per frame out.

``ClipReward`` embeds frames and task prompts with an open_clip model whose weights come from a local file the user
names; it never downloads anything (no pretrained tags, no ``hf-hub:`` names, no Hub-hosted tokenizers; the
tokenizer is open_clip's ``SimpleTokenizer`` with its BPE vocabulary bundled in the package). The reward is

- with a baseline prompt (VLM-RM, Rocamonde et al. 2023)::

      R(s) = 1 - 1/2 * ||(x - g) P||^2,    P = alpha * d d^T / ||d||^2 + (1 - alpha) * I,    d = g - b

- without one, the cosine similarity ``R(s) = x . g / ||g||``,

where ``x`` is the L2-normalized image embedding of frame ``s``, ``g`` the mean of the goal prompts' L2-normalized
text embeddings and ``b`` the same mean over the baseline prompts (the means are not renormalized, as in VLM-RM).
``alpha = 0`` gives ``1 - ||x - g||^2 / 2``; ``alpha = 1`` keeps only the component of ``x - g`` along the
baseline-to-goal direction. ``P`` is never formed: ``(x - g) P = alpha ((x - g).d / ||d||^2) d + (1 - alpha)(x - g)``.

Weights: a state dict (``torch.save``), an open_clip training checkpoint (``{"state_dict": ...}``, DDP
``module.`` prefixes stripped), a ``.safetensors`` file, or OpenAI's TorchScript archive. ``model`` must be the
architecture the weights were trained as; open_clip cannot tell GELU from QuickGELU weights, so OpenAI's weights
(and open_clip's ``openai`` tags) need the ``-quickgelu`` variant, e.g. ``ViT-B-32-quickgelu``. Files are read with
``torch.load(weights_only=True)``: tensors only, never pickled code.

Weights are read by ``weights.py``. Preprocessing is the model's own eval transform (open_clip
``image_transform`` from the model's preprocess config: resize with antialiasing, center crop or pad, scale to
[0, 1], normalize), done batched on uint8 tensors on the model's device instead of per-frame PIL. PIL resizes
horizontally then vertically, rounding to uint8 after each pass; the tensor path does the same two passes, so it
matches the PIL transform to within 1 uint8 level per pass (PIL's fixed-point filter weights), on well under 1% of
pixels for bicubic resizes (checked in the tests).

Precision (``precision``, ``robot_rl.rewards.precision``): the image encoder runs in ``fp32``, ``tf32`` or ``bf16``
(autocast; embeddings cast back to float32); the default is ``bf16`` on CUDA and ``fp32`` elsewhere. Text prompts,
preprocessing and the reward formula always run in float32. On ViT-B-32 with random weights, bf16 moves the image
embeddings by < 1e-2 (cosine >= 0.9999) and the rewards by < 1e-2 (checked in the tests); on an H200 it made the
encoder ~4x faster than fp32 (``benchmarks/clip_relabel.md``).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as nnf
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import center_crop_or_pad
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from robot_rl.rewards.clip.weights import (
    ClipRewardError,
    as_prompts,
    build_model,
    check_checkpoint_path,
    check_model_name,
    file_sha256,
    fit_state_dict,
    read_checkpoint,
)
from robot_rl.rewards.precision import Precision, precision_context, resolve_precision

DEFAULT_CACHE_SIZE = 32_768
"""Image embeddings kept (LRU) by default: 64 MiB for a 512-dim model."""

CUDA_DEFAULT_PRECISION: Precision = "tf32"
"""The image encoder's precision on CUDA unless asked otherwise (``fp32`` elsewhere). Measured on an H200 (ViT-B-32,
batch 64, benchmarks/clip_relabel.md): tf32 2.44x fp32 (rewards within 1.4e-5), bf16 1.66x (within 4.2e-4)."""

_HASH_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
_HASH_CHUNK = 64
"""Frames per hashing thread at least."""


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, int | float):
        return int(size), int(size)
    values = [int(s) for s in size]
    return (values[0], values[0]) if len(values) == 1 else (values[-2], values[-1])


class _ImageEncoder:
    """Model, batched tensor preprocessing and the embedding cache; shared by ``ClipReward.with_prompts`` copies."""

    def __init__(self, model: torch.nn.Module, device: torch.device, batch_size: int, cache_size: int,
                 precision: Precision = "fp32") -> None:
        self.model: Any = model  # open_clip's CLIP / CustomTextCLIP / CoCa (untyped package)
        self.device = device
        self.precision: Precision = precision
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.encoded = 0
        self.hits = 0
        cfg = dict(open_clip.get_model_preprocess_cfg(model))
        self.size = _pair(cfg.get("size", 224))
        self.resize_mode = str(cfg.get("resize_mode") or "shortest")
        if self.resize_mode not in ("shortest", "longest", "squash"):
            raise ClipRewardError(f"model: unknown preprocess resize_mode '{self.resize_mode}'")
        bilinear = cfg.get("interpolation") == "bilinear"
        self.interpolation = InterpolationMode.BILINEAR if bilinear else InterpolationMode.BICUBIC
        self.fill = int(cfg.get("fill_color") or 0)
        mean, std = cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN, cfg.get("std") or open_clip.OPENAI_DATASET_STD
        mean, std = (mean,) * 3 if isinstance(mean, float) else mean, (std,) * 3 if isinstance(std, float) else std
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.config = {"size": list(self.size), "resize_mode": self.resize_mode,
                       "interpolation": "bilinear" if bilinear else "bicubic", "fill_color": self.fill,
                       "mean": [float(m) for m in mean], "std": [float(s) for s in std]}

    def _resized_size(self, h: int, w: int) -> tuple[int, int]:
        th, tw = self.size
        if self.resize_mode == "squash":
            return th, tw
        if self.resize_mode == "shortest" and th == tw:  # torchvision Resize(int): short side -> size, long floored
            return (th, int(th * w / h)) if h <= w else (int(th * h / w), th)
        ratios = (h / th, w / tw)  # open_clip ResizeKeepRatio: shortest -> min ratio, longest -> max ratio
        ratio = max(ratios) if self.resize_mode == "longest" else min(ratios)
        return round(h / ratio), round(w / ratio)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` on the device -> float32 ``[B, 3, S, S]``, the model's input."""
        x = frames.permute(0, 3, 1, 2)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        nh, nw = self._resized_size(h, w)
        # ResizeKeepRatio in 'shortest' mode with a non-square size is built without the interpolation setting
        mode = InterpolationMode.BICUBIC if self.resize_mode == "shortest" and self.size[0] != self.size[1] \
            else self.interpolation
        if nw != w:  # as PIL: horizontal pass, round to uint8, then vertical pass
            x = tvf.resize(x, [h, nw], interpolation=mode, antialias=True)
        if nh != h:
            x = tvf.resize(x, [nh, nw], interpolation=mode, antialias=True)
        if (nh, nw) != self.size:
            x = center_crop_or_pad(x, list(self.size), fill=self.fill if self.resize_mode == "longest" else 0)
        return (x.float().div_(255.0) - self.mean) / self.std

    @staticmethod
    def key(frame: np.ndarray) -> bytes:
        """The cache key of one frame: SHA-256 of its shape and bytes."""
        digest = hashlib.sha256(np.asarray(frame.shape, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(frame).data)
        return digest.digest()

    @classmethod
    def keys(cls, frames: np.ndarray) -> list[bytes]:
        """Keys of all frames; many frames are hashed on several threads (hashlib releases the GIL)."""
        workers = min(_HASH_THREADS, len(frames) // _HASH_CHUNK)
        if workers < 2:
            return [cls.key(frame) for frame in frames]
        with ThreadPoolExecutor(workers) as pool:
            parts = pool.map(lambda part: [cls.key(frame) for frame in part], np.array_split(frames, workers))
            return [key for part in parts for key in part]

    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """L2-normalized float32 ``[N, D]`` on the device; each distinct uncached frame is encoded once."""
        keys = self.keys(frames)
        found: dict[bytes, torch.Tensor] = {}
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key in found or key in todo:
                continue
            cached = self.cache.get(key)
            if cached is not None:
                self.cache.move_to_end(key)
                found[key] = cached
                self.hits += 1
            else:
                todo[key] = i
        order = list(todo.items())
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                batch = torch.from_numpy(frames[[i for _, i in chunk]])
                if self.device.type == "cuda":  # pinned + non-blocking: the next batch is gathered while this runs
                    batch = batch.pin_memory().to(self.device, non_blocking=True)
                else:
                    batch = batch.to(self.device)
                pixels = self.preprocess(batch)
                with precision_context(self.precision, self.device):
                    features = self.model.encode_image(pixels)
                emb = nnf.normalize(features.float(), dim=-1)
                self.encoded += len(chunk)
                for (key, _), row in zip(chunk, emb, strict=True):
                    found[key] = row
                    self._remember(key, row)
            return torch.stack([found[k] for k in keys])

    def _remember(self, key: bytes, row: torch.Tensor) -> None:
        if self.cache_size <= 0:
            return
        self.cache[key] = row
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)


class ClipReward:
    """CLIP similarity reward for frames, from local open_clip weights (see the module docstring for the formula).

    ``checkpoint``: path of a local weights file. ``model``: the open_clip architecture it was trained as.
    ``goal``/``baseline``: prompt(s) (their normalized embeddings are averaged). ``alpha`` in [0, 1]: VLM-RM's
    projection strength; unused, and recorded as ``None`` in ``identity()``, without a baseline. ``batch_size``:
    frames per encoder call. ``cache_size``: image embeddings kept by frame content (LRU; 0 turns it off).
    ``precision``: the image encoder's math, ``fp32``, ``tf32`` or ``bf16`` (``None``: ``bf16`` on CUDA, ``fp32``
    elsewhere; see the module docstring).

    Calling it on uint8 ``[N, H, W, 3]`` frames returns float32 ``[N]`` rewards. Loading problems raise
    ``ClipRewardError`` (a ``ValueError``) with a one-line message naming the file and what is wrong.
    """

    def __init__(self, checkpoint: str | os.PathLike[str], model: str = "ViT-B-32", *, goal: str | Sequence[str],
                 baseline: str | Sequence[str] | None = None, alpha: float = 0.5, device: str | torch.device = "cpu",
                 batch_size: int = 64, cache_size: int = DEFAULT_CACHE_SIZE, precision: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"ClipReward: batch_size must be >= 1, got {batch_size}")
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"ClipReward: device '{device}' asked for, but this torch sees no CUDA device")
        resolved = resolve_precision(precision, dev, CUDA_DEFAULT_PRECISION)
        config = check_model_name(model)
        path = check_checkpoint_path(checkpoint)
        size = path.stat().st_size
        sha256 = file_sha256(path)
        state, openai = read_checkpoint(path)
        if openai and not config.get("quick_gelu"):
            variant = f"{model}-quickgelu"
            hint = f"model='{variant}'" if variant in open_clip.list_models() else "a -quickgelu architecture"
            raise ClipRewardError(f"checkpoint {path}: OpenAI's CLIP weights were trained with QuickGELU, which "
                                  f"'{model}' does not use; pass {hint}")
        net = build_model(model)
        # assign: the file's tensors become the parameters (no second copy of the weights in memory)
        net.load_state_dict(fit_state_dict(net, state, path, model), strict=True, assign=True)
        del state
        net.to(dev).eval()
        tokenizer = open_clip.get_tokenizer(model)
        if not isinstance(tokenizer, SimpleTokenizer):  # check_model_name already refuses Hub tokenizers
            raise ClipRewardError(f"model '{model}': tokenizer {type(tokenizer).__name__} is not open_clip's bundled "
                                  f"SimpleTokenizer")
        self.model_name = model
        self.checkpoint = path
        self._checkpoint_info = {"checkpoint": str(path), "checkpoint_bytes": int(size), "checkpoint_sha256": sha256}
        self._tokenizer = tokenizer
        self._encoder = _ImageEncoder(net, dev, int(batch_size), int(cache_size), resolved)
        self._text_cache: dict[str, torch.Tensor] = {}
        self._set_prompts(goal, baseline, alpha)

    # -- prompts ---------------------------------------------------------------------------------------------------

    def _set_prompts(self, goal: str | Sequence[str], baseline: str | Sequence[str] | None, alpha: float) -> None:
        self.goal = as_prompts(goal, "goal")
        self.baseline = None if baseline is None else as_prompts(baseline, "baseline")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"ClipReward: alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._g = self._embed_prompts(self.goal).mean(dim=0)
        self._d: torch.Tensor | None = None
        if self.baseline is not None:
            self._b = self._embed_prompts(self.baseline).mean(dim=0)
            d = self._g - self._b
            if float(d.norm()) < 1e-6:
                raise ValueError("ClipReward: goal and baseline prompts embed to the same point; the projection "
                                 "direction g - b is zero")
            self._d = d

    def _embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        todo = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if todo:
            tokens = self._tokenizer(todo).to(self._encoder.device)
            with torch.inference_mode():
                emb = nnf.normalize(self._encoder.model.encode_text(tokens).float(), dim=-1)
            self._text_cache.update(zip(todo, emb, strict=True))
        return torch.stack([self._text_cache[p] for p in prompts])

    def with_prompts(self, goal: str | Sequence[str], baseline: str | Sequence[str] | None = None,
                     alpha: float = 0.5) -> ClipReward:
        """A reward for other prompts that shares this one's model, checkpoint identity and image-embedding cache
        (frames already embedded are not encoded again)."""
        other = object.__new__(ClipReward)
        other.__dict__.update({k: v for k, v in self.__dict__.items()
                               if k in ("model_name", "checkpoint", "_checkpoint_info", "_tokenizer",
                                        "_encoder", "_text_cache")})
        other._set_prompts(goal, baseline, alpha)
        return other

    # -- embeddings and rewards ------------------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The open_clip model (``CLIP``, ``CustomTextCLIP`` or ``CoCa``; eval mode, on ``device``)."""
        return self._encoder.model

    @property
    def device(self) -> torch.device:
        return self._encoder.device

    @property
    def precision(self) -> Precision:
        """The image encoder's precision: ``fp32``, ``tf32`` or ``bf16``."""
        return self._encoder.precision

    @property
    def batch_size(self) -> int:
        return self._encoder.batch_size

    @property
    def encoded(self) -> int:
        """Frames run through the image encoder so far (cache misses; shared with ``with_prompts`` copies)."""
        return self._encoder.encoded

    @property
    def cache_hits(self) -> int:
        """Distinct frames per call found in the embedding cache so far."""
        return self._encoder.hits

    def clear_cache(self) -> None:
        """Forget the cached image embeddings (the cache is shared with ``with_prompts`` copies)."""
        self._encoder.cache.clear()

    @property
    def goal_embedding(self) -> np.ndarray:
        """``g``: float32 ``[D]``, the mean of the goal prompts' normalized embeddings."""
        return self._g.cpu().numpy().astype(np.float32)

    @property
    def baseline_embedding(self) -> np.ndarray | None:
        """``b``: float32 ``[D]`` (``None`` without a baseline)."""
        return None if self.baseline is None else self._b.cpu().numpy().astype(np.float32)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """The model's input for uint8 ``[N, H, W, 3]`` frames: float32 ``[N, 3, S, S]`` on ``device``."""
        _check_frames(frames)
        return self._encoder.preprocess(torch.from_numpy(np.ascontiguousarray(frames)).to(self.device))

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """``x`` for each frame: float32 ``[N, D]``, L2-normalized (cached by frame content)."""
        _check_frames(frames)
        if len(frames) == 0:
            return np.zeros((0, self._g.shape[0]), dtype=np.float32)
        return self._encoder.embed(frames).cpu().numpy().astype(np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Rewards for uint8 ``[N, H, W, 3]`` frames: float32 ``[N]``."""
        _check_frames(frames)
        if len(frames) == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            x = self._encoder.embed(frames)
            if self._d is None:
                reward = x @ (self._g / self._g.norm())
            else:
                diff = x - self._g
                along = (diff @ self._d) / self._d.dot(self._d)
                projected = self.alpha * along[:, None] * self._d + (1.0 - self.alpha) * diff
                reward = 1.0 - 0.5 * projected.pow(2).sum(dim=-1)
        return reward.cpu().numpy().astype(np.float32)

    def identity(self) -> dict[str, Any]:
        """JSON-serializable provenance of the rewards: model, weights file (path, size, SHA-256), prompts, alpha,
        formula, preprocessing and the image encoder's precision."""
        return {
            "kind": "clip",
            "model": self.model_name,
            **self._checkpoint_info,
            "goal": list(self.goal),
            "baseline": None if self.baseline is None else list(self.baseline),
            "alpha": None if self.baseline is None else self.alpha,
            "formula": "cosine(x, g)" if self.baseline is None else "1 - 0.5*||(x - g) P||^2 (VLM-RM)",
            "preprocess": dict(self._encoder.config),
            "precision": self._encoder.precision,
            "open_clip": str(open_clip.__version__),
        }


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"ClipReward: frames must be a uint8 numpy array [N, H, W, 3], got {dtype} {shape}")
