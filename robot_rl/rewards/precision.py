"""Numeric precision of reward inference (CLIP image encoding, reward-model rewards): one setting, three values.

- ``fp32``: exact float32 math (on CUDA, TF32 is turned off for matmuls and cuDNN convolutions inside the context).
- ``tf32``: on CUDA, float32 matmuls and convolutions run on TF32 tensor cores (10-bit mantissa inputs, float32
  accumulation). The CPU has no TF32: there it is ``fp32``.
- ``bf16``: ``torch.autocast`` to bfloat16 around the forward (float32 matmuls it leaves run in TF32 on CUDA); the
  outputs are cast back to float32.

``None`` (or ``"auto"``) picks the caller's CUDA default on CUDA and ``fp32`` elsewhere. ``precision_context`` sets
the TF32 switches only inside the ``with`` block and restores them afterwards (they are process-wide torch flags),
so no caller ever flips them permanently.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Literal, cast

import torch

Precision = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "tf32", "bf16")

__all__ = ["PRECISIONS", "Precision", "precision_context", "resolve_precision", "tf32_flags"]


def resolve_precision(precision: str | None, device: str | torch.device, cuda_default: Precision) -> Precision:
    """``precision`` checked, or for ``None`` / ``"auto"``: ``cuda_default`` on a CUDA device, ``fp32`` elsewhere."""
    if precision is None or precision == "auto":
        return cuda_default if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (or auto), got {precision!r}")
    return cast(Precision, precision)


def tf32_flags() -> tuple[str, str]:
    """The current TF32 settings of CUDA matmuls and cuDNN convolutions, as torch's ``fp32_precision`` strings
    (``"tf32"``, ``"ieee"`` or ``"none"``: inherit); older torch: ``"tf32"`` / ``"ieee"`` from ``allow_tf32``."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "conv"):
        return str(matmul.fp32_precision), str(conv.conv.fp32_precision)
    return ("tf32" if matmul.allow_tf32 else "ieee"), ("tf32" if conv.allow_tf32 else "ieee")


def _set_tf32_flags(flags: tuple[str, str]) -> None:
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "conv"):
        # torch >= 2.9: the new API only (reading the legacy allow_tf32 after mixing both APIs raises)
        matmul.fp32_precision, conv.conv.fp32_precision = flags
    else:  # pragma: no cover - older torch
        matmul.allow_tf32, conv.allow_tf32 = (flags[0] == "tf32"), (flags[1] == "tf32")


@contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    saved = tf32_flags()
    value = "tf32" if enabled else "ieee"
    _set_tf32_flags((value, value))
    try:
        yield
    finally:
        _set_tf32_flags(saved)


@contextmanager
def precision_context(precision: Precision, device: str | torch.device) -> Iterator[None]:
    """Run the forward inside at ``precision`` on ``device``: the TF32 switches (CUDA only; restored on exit) and,
    for ``bf16``, ``torch.autocast(device.type, torch.bfloat16)``. Callers cast the outputs to float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    with ExitStack() as stack:
        if dev.type == "cuda":
            stack.enter_context(_tf32(precision != "fp32"))
        if precision == "bf16":
            stack.enter_context(torch.autocast(dev.type, dtype=torch.bfloat16))
        yield
