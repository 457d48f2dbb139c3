"""Weights of a CLIP reward (``reward.py``) from a local file: the architecture by name, the checkpoint read with
``torch.load(weights_only=True)`` (or safetensors, or OpenAI's TorchScript archive) and fitted to it, with one-line
``ClipRewardError``s. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch

_SCHEMAS = ("hf-hub:", "local-dir:")
_SHA_CHUNK = 1 << 22


class ClipRewardError(ValueError):
    """A model or checkpoint ``ClipReward`` cannot use; the one-line message names the file and what is wrong."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_SHA_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def first_line(text: str, limit: int = 160) -> str:
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def as_prompts(value: str | Sequence[str], what: str) -> list[str]:
    prompts = [value] if isinstance(value, str) else list(value)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"ClipReward: {what} must be a non-empty prompt or a non-empty list of non-empty prompts")
    return prompts


def check_model_name(model: str) -> dict[str, Any]:
    """The built-in open_clip config of ``model``; refuses other names, and configs that would reach the network."""
    if model.startswith(_SCHEMAS):
        raise ClipRewardError(f"model '{model}': remote/schema model names are refused (ClipReward never downloads); "
                              f"name a built-in open_clip architecture such as 'ViT-B-32' and pass local weights")
    config = open_clip.get_model_config(model)
    if config is None:
        raise ClipRewardError(f"model '{model}': not an open_clip architecture (see open_clip.list_models())")
    text_cfg = config.get("text_cfg", {})
    hub_keys = [k for k in ("hf_model_name", "hf_tokenizer_name") if text_cfg.get(k)]
    if hub_keys or "siglip" in model.lower():
        raise ClipRewardError(f"model '{model}': its text tower or tokenizer comes from the Hugging Face Hub or the "
                              f"web ({', '.join(hub_keys) or 'SigLIP tokenizer'}), which ClipReward never downloads; "
                              f"use an architecture with open_clip's bundled tokenizer (e.g. ViT-B-32, ViT-L-14)")
    return dict(config)


def check_checkpoint_path(checkpoint: str | os.PathLike[str]) -> Path:
    text = os.fspath(checkpoint)
    if text.startswith(_SCHEMAS):
        raise ClipRewardError(f"checkpoint '{text}': remote names are refused (ClipReward never downloads); "
                              f"give the path of a local weights file")
    path = Path(text).expanduser()
    if not path.exists():
        raise ClipRewardError(f"checkpoint '{text}': no such file (ClipReward never downloads weights: pretrained "
                              f"tags such as 'openai' are not paths; give the path of a local weights file)")
    if not path.is_file():
        raise ClipRewardError(f"checkpoint '{text}': not a file")
    return path.resolve()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def _load_error_reason(e: Exception) -> str:
    text = str(e)
    if found := re.search(r"Unsupported global: GLOBAL (\S+)", text):
        return f"it pickles Python objects ({found.group(1)}), not only tensors; ClipReward loads weights only"
    if "WeightsUnpickler error:" in text:
        return f"unreadable ({first_line(text.split('WeightsUnpickler error:', 1)[1], 100)})"
    return f"unreadable ({type(e).__name__}: {first_line(text, 100)})"


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The file's state dict (tensors by name), with open_clip's unwrapping, and whether it is OpenAI's release
    format (a TorchScript archive with ``input_resolution``); one-line errors naming the file."""
    openai = False
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            with warnings.catch_warnings():  # torch.jit.load's deprecation notice (Future- or DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*torch.jit.load")
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
            openai = "input_resolution" in obj
            for key in ("input_resolution", "context_length", "vocab_size"):
                obj.pop(key, None)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for a bad file; all mean "unreadable"
        raise ClipRewardError(f"checkpoint {path}: not a weights file or corrupt: {_load_error_reason(e)}") from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ClipRewardError(f"checkpoint {path}: holds a {type(obj).__name__}, not a state dict of tensors")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ClipRewardError(f"checkpoint {path}: holds no tensors (keys: {', '.join(map(str, list(obj)[:5]))})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, openai


def fit_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path,
                    name: str) -> dict[str, torch.Tensor]:
    """open_clip's format conversions (as in ``open_clip.load_checkpoint``, without its silent positional-embedding
    resizing), then a key and shape check against ``model`` with a one-line error."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    expected = model.state_dict()
    for key in ("logit_scale", "logit_bias"):
        if key in state and key in expected and state[key].shape != expected[key].shape \
                and state[key].numel() == expected[key].numel():
            state[key] = state[key].reshape(expected[key].shape)
    if "logit_bias" in expected and "logit_bias" not in state:
        state["logit_bias"] = torch.zeros_like(expected["logit_bias"])
    position_ids = "text.transformer.embeddings.position_ids"  # dropped by newer transformers versions
    if position_ids in state and position_ids not in expected:
        del state[position_ids]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = [f"{len(missing)} missing keys ({some(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected keys ({some(unexpected)})" if unexpected else "",
                 (f"{len(mismatched)} shape mismatches ({mismatched[0]}: file {list(state[mismatched[0]].shape)}, "
                  f"model {list(expected[mismatched[0]].shape)}{', ...' if len(mismatched) > 1 else ''})")
                 if mismatched else ""]
        raise ClipRewardError(f"checkpoint {path}: not a {name} checkpoint: {'; '.join(p for p in parts if p)}; "
                              f"pass the architecture it was trained as (model=...)")
    # the model's dtypes (OpenAI's files are fp16), as load_state_dict(assign=True) would keep the file's
    return {k: v.to(expected[k].dtype) for k, v in state.items()}


class _NoRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def build_model(name: str) -> torch.nn.Module:
    """The architecture with random weights (open_clip downloads nothing when ``pretrained`` is ``None`` and the
    tower flags are off); silences open_clip's "initialized randomly" warning, as the weights are loaded next."""
    quiet = _NoRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        model = open_clip.create_model(name, pretrained=None, pretrained_image=False, pretrained_text=False)
    except Exception as e:  # e.g. a timm tower without timm installed
        raise ClipRewardError(f"model '{name}': cannot build it ({type(e).__name__}: {first_line(str(e))})") from e
    finally:
        root.removeFilter(quiet)
    return model
