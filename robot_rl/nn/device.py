"""Which device a job trains on: ``auto`` is CUDA when present, else the CPU."""

from __future__ import annotations

import torch

DEVICE_HELP = "auto (CUDA when present), cpu or cuda[:i]"


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other name as torch reads it. A name torch
    does not know, or a CUDA device this machine does not have, is a one-line ``ValueError``."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device '{name}' is unknown; expected {DEVICE_HELP}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device '{name}': torch sees no CUDA GPU on this machine; use cpu or auto")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device '{name}': this machine has {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device '{name}': MPS is not available on this machine; use cpu or auto")
    return device
