"""Which device a job trains on: ``auto`` is CUDA when present, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other name as torch reads it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
